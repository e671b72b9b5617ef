"""The local Lambda runtime on its own: worker processes, Lambda's error contract, concurrency, logs
and shutdown (no AWS involved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from modelops_local.lambda_runtime import (
    FunctionSpec,
    LambdaRuntime,
    LambdaThrottledError,
    UnknownFunctionError,
)

pytestmark = pytest.mark.timeout(60)

CODE = """
import json, os, sys, time
import helper

STARTED = time.time()

def handler(event, context):
    print("handling", json.dumps(event))
    if event.get("raise"):
        raise KeyError(event["raise"])
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("unserialisable"):
        return {"when": object()}
    if event.get("nan"):
        return {"feature": float("nan")}
    return {
        "pid": os.getpid(),
        "path": sys.path[:2],
        "cwd": os.getcwd(),
        "env": {k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_TIMEOUT", "LAMBDA_TASK_ROOT")},
        "helper": helper.VALUE,
        "context": [context.function_name, context.memory_limit_in_mb, context.invoked_function_arn],
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
    }
"""


def make_function(
    root: Path, name: str, code: str = CODE, *, handler: str = "app.handler", timeout: float = 5
) -> FunctionSpec:
    code_dir, layer = root / name / "code", root / name / "layer" / "python"
    code_dir.mkdir(parents=True)
    layer.mkdir(parents=True)
    (code_dir / "app.py").write_text(textwrap.dedent(code))
    (layer / "helper.py").write_text("VALUE = 'from the layer'\n")
    return FunctionSpec(
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        code_dir=code_dir,
        handler=handler,
        environment={"GREETING": "hi", "AWS_ENDPOINT_URL": "http://template-must-not-win"},
        timeout=timeout,
        memory_mb=256,
        layer_dirs=(layer,),
    )


@pytest.fixture
def runtime(tmp_path):
    rt = LambdaRuntime(
        tmp_path / "state", {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, max_workers=2, queue_timeout=10
    )
    yield rt
    rt.shutdown()


def test_a_function_runs_in_its_own_process_with_lambdas_layout(runtime, tmp_path):
    # Given a function with a layer and template environment
    spec = make_function(tmp_path, "fn")
    runtime.register(spec)
    # When it is invoked by ARN
    result = runtime.invoke(spec.arn + ":$LATEST", json.dumps({"a": 1}))
    body = result.json()
    # Then it ran in another process, code folder first then the layer on sys.path, in its code folder
    assert result.function_error is None and body["pid"] != os.getpid()
    assert body["path"] == [str(spec.code_dir), str(spec.layer_dirs[0])] and body["cwd"] == str(spec.code_dir)
    assert body["helper"] == "from the layer"
    # And with the template environment, Lambda's variables, and the runtime's AWS endpoint winning
    assert body["env"] == {
        "GREETING": "hi",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "5",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
    }
    assert body["context"] == ["fn", 256, spec.arn] and 0 < body["remaining_ms"] <= 5000
    assert body["request_id"] == result.request_id and result.init_duration is not None


def test_handler_errors_follow_lambdas_error_document(runtime, tmp_path):
    spec = make_function(tmp_path, "fn")
    runtime.register(spec)
    result = runtime.invoke("fn", '{"raise": "label"}')
    document = result.json()
    assert result.function_error == "Unhandled" and result.error_type == "KeyError"
    assert document["errorMessage"] == "'label'" and document["requestId"] == result.request_id
    assert any("app.py" in frame for frame in document["stackTrace"])
    assert not any("lambda_worker" in frame for frame in document["stackTrace"])
    # And the worker stays warm after a handled error
    assert runtime.invoke("fn", "{}").function_error is None
    assert len(runtime.metrics()["fn"].init_durations) == 1


def test_unserialisable_results_are_marshal_errors(runtime, tmp_path):
    runtime.register(make_function(tmp_path, "fn"))
    result = runtime.invoke("fn", '{"unserialisable": true}')
    assert (
        result.error_type == "Runtime.MarshalError"
        and "Unable to marshal response" in result.json()["errorMessage"]
    )
    # NaN is not JSON (Step Functions refuses a payload with it): refused too, and named
    result = runtime.invoke("fn", '{"nan": true}')
    assert result.error_type == "Runtime.MarshalError" and "NaN" in result.json()["errorMessage"]


@pytest.mark.parametrize(
    ("code", "handler", "error_type", "message"),
    [
        (
            "import not_installed_anywhere\n",
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app'",
        ),
        ("x = 1\n", "app.handler", "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'app'"),
        ("raise ValueError('bad config')\n", "app.handler", "ValueError", "bad config"),
        ("def handler(e, c):\n  return 1\n", "handler", "Runtime.MalformedHandlerName", "Bad handler"),
    ],
)
def test_init_failures_are_reported_and_retried(runtime, tmp_path, code, handler, error_type, message):
    # Given a function whose module cannot be initialised
    runtime.register(make_function(tmp_path, "broken", code, handler=handler))
    # When it is invoked twice
    results = [runtime.invoke("broken", "{}") for _ in range(2)]
    # Then each invocation reports the init error (init is retried, as Lambda does)
    assert [r.error_type for r in results] == [error_type, error_type]
    assert message in results[0].json()["errorMessage"]


def test_a_worker_that_exits_is_reported_and_replaced(runtime, tmp_path):
    runtime.register(make_function(tmp_path, "fn"))
    crashed = runtime.invoke("fn", '{"exit": 3}')
    assert crashed.error_type == "Runtime.ExitError" and "exit status 3" in crashed.json()["errorMessage"]
    assert runtime.invoke("fn", "{}").function_error is None


def test_concurrent_invocations_use_up_to_max_workers_and_queue_the_rest(runtime, tmp_path):
    # Given a function limited to two workers
    runtime.register(make_function(tmp_path, "fn"))
    results: list = []
    # When three invocations arrive at once
    threads = [
        threading.Thread(target=lambda: results.append(runtime.invoke("fn", '{"sleep": 0.4}')))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    # Then all complete, on at most two worker processes
    assert len(results) == 3 and all(r.function_error is None for r in results)
    assert len(runtime.metrics()["fn"].init_durations) == 2


def test_a_throttled_asynchronous_event_is_retried_not_dropped(tmp_path):
    # Given a function with one worker, busy for two seconds, and a short queue wait
    rt = LambdaRuntime(tmp_path / "state", max_workers=1, queue_timeout=0.2, throttle_retry_max_delay=0.5)
    try:
        rt.register(make_function(tmp_path, "fn"))
        busy = threading.Thread(target=rt.invoke, args=("fn", '{"sleep": 2}'))
        busy.start()
        deadline = time.monotonic() + 10
        while not rt.metrics()["fn"].init_durations:
            assert time.monotonic() < deadline, "the first invocation never started"
            time.sleep(0.02)
        # When an asynchronous (Event) invocation arrives and is throttled
        future = rt.invoke_async("fn", "{}")
        # Then, as Lambda does, the event is kept and retried until a worker is free
        result = future.result(timeout=15)
        busy.join(10)
        assert result.function_error is None
        assert rt.metrics()["fn"].throttles >= 1 and rt.metrics()["fn"].invocations == 2
    finally:
        rt.shutdown()


def test_invocations_beyond_the_queue_wait_are_throttled(tmp_path):
    # Given a function with one worker, busy for two seconds
    rt = LambdaRuntime(tmp_path / "state", max_workers=1, queue_timeout=0.2)
    try:
        rt.register(make_function(tmp_path, "fn"))
        busy = threading.Thread(target=rt.invoke, args=("fn", '{"sleep": 2}'))
        busy.start()
        deadline = time.monotonic() + 10
        while not rt.metrics()["fn"].init_durations:  # the worker is up and running the first call
            assert time.monotonic() < deadline, "the first invocation never started"
            time.sleep(0.02)
        # When another invocation cannot get a worker within the queue wait
        # Then it is throttled, as Lambda's TooManyRequestsException
        with pytest.raises(LambdaThrottledError, match="TooManyRequestsException"):
            rt.invoke("fn", "{}")
        busy.join(10)
        assert rt.metrics()["fn"].throttles == 1
    finally:
        rt.shutdown()


def test_logs_go_to_the_functions_log_file(runtime, tmp_path):
    runtime.register(make_function(tmp_path, "fn"))
    result = runtime.invoke("fn", '{"note": "visible"}')
    log = runtime.log_path("fn").read_text()
    assert f"START RequestId: {result.request_id}" in log
    assert 'handling {"note": "visible"}' in log
    assert f"REPORT RequestId: {result.request_id}" in log


def test_async_invocations_run_in_the_background(runtime, tmp_path):
    runtime.register(make_function(tmp_path, "fn"))
    future = runtime.invoke_async("fn", '{"sleep": 0.2}')
    assert runtime.wait_idle(10)
    assert future.result().function_error is None
    assert [r.invocation_type for r in runtime.history()] == ["Event"]


def test_unknown_functions_and_bad_payloads_are_refused(runtime, tmp_path):
    with pytest.raises(UnknownFunctionError, match="'ghost'"):
        runtime.invoke("ghost", "{}")
    runtime.register(make_function(tmp_path, "fn"))
    with pytest.raises(Exception, match="not valid JSON"):
        runtime.invoke("fn", "not json")


def test_shutdown_leaves_no_worker_processes(tmp_path):
    # Given warm workers for two functions
    rt = LambdaRuntime(tmp_path / "state")
    for name in ("a", "b"):
        rt.register(make_function(tmp_path, name))
        rt.invoke(name, "{}")
    pids = rt.worker_pids()
    assert len(pids) == 2
    # When the runtime shuts down
    rt.shutdown(timeout=2)
    # Then every worker is gone
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_warm_worker_killed_from_outside_is_replaced(runtime, tmp_path):
    # Given a warm worker
    runtime.register(make_function(tmp_path, "fn"))
    first = runtime.invoke("fn", "{}").json()["pid"]
    # When something kills it while idle
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (
        Path(f"/proc/{first}/status").exists() and "zombie" not in Path(f"/proc/{first}/status").read_text()
    ):
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.02)
    # Then the next invocation is served by a new worker
    second = runtime.invoke("fn", "{}")
    assert second.function_error is None and second.json()["pid"] != first


DRIVER = """
import json, sys, time
from pathlib import Path
from modelops_local.lambda_runtime import FunctionSpec, LambdaRuntime

code = Path(sys.argv[1])
runtime = LambdaRuntime(Path(sys.argv[2]))
runtime.register(FunctionSpec(name="fn", arn="arn:aws:lambda:us-east-1:123456789012:function:fn", code_dir=code, handler="app.handler"))
print(runtime.invoke("fn", "{}").json()["pid"], flush=True)
# Short sleeps: the kernel may hand SIGINT to one of the runtime's threads, and Python runs the
# handler in the main thread only when it next runs bytecode (a time.sleep(60) slept through it
# under load in the 00:50 run; src/modelops_cli/local.py's _stop_on_signals.wait says more).
for _ in range(600):
    time.sleep(0.1)
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_workers_do_not_outlive_the_runtime_process(tmp_path, stop_signal):
    # Given a process running the runtime with a warm worker
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("import os\ndef handler(event, context):\n    return {'pid': os.getpid()}\n")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(code), str(tmp_path / "state")], stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    worker = int(driver.stdout.readline())
    # When that process is interrupted (Ctrl-C) or killed outright
    driver.send_signal(stop_signal)
    driver.wait(10)
    # Then its worker exits too
    deadline = time.monotonic() + 5
    while _running(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived the runtime"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


# --- fault injection (test support) --------------------------------------------------------------


def test_an_invocation_fault_shortens_the_timeout_of_matching_invocations_only(runtime, tmp_path):
    # Given a function with a 5 s timeout and a fault: the next sleep invocation gets 0.5 s
    runtime.register(make_function(tmp_path, "fn"))
    fault = runtime.faults.add("fn", match=lambda event: event.get("sleep") == 2, timeout=0.5)
    # When a non-matching invocation runs, Then it is untouched
    assert runtime.invoke("fn", '{"sleep": 0.1}').function_error is None
    # When the matching one runs, Then it times out at 0.5 s as Lambda reports it, worker replaced
    started = time.monotonic()
    timed_out = runtime.invoke("fn", '{"sleep": 2}')
    assert timed_out.error_type == "Sandbox.Timedout" and "0.50 seconds" in timed_out.json()["errorMessage"]
    assert time.monotonic() - started < 1.5 and fault.fired == 1 and runtime.faults.pending == []
    # And the next invocation, the same again, runs with the function's own timeout
    assert runtime.invoke("fn", '{"sleep": 2}').function_error is None


def test_an_invocation_fault_kills_the_worker_part_way(runtime, tmp_path):
    # Given a fault that kills the worker 0.3 s into the next invocation
    runtime.register(make_function(tmp_path, "fn"))
    runtime.faults.add("fn", kill_after=0.3)
    # When it runs, Then it ends Runtime.ExitError (SIGKILL), and the next one gets a fresh worker
    killed = runtime.invoke("fn", '{"sleep": 2}')
    assert killed.error_type == "Runtime.ExitError" and "signal: 9" in killed.json()["errorMessage"]
    assert runtime.invoke("fn", "{}").function_error is None


def test_kill_busy_kills_the_workers_running_the_function_now(runtime, tmp_path):
    # Given an invocation in progress
    runtime.register(make_function(tmp_path, "fn"))
    runtime.invoke("fn", "{}")  # warm
    results = []
    thread = threading.Thread(target=lambda: results.append(runtime.invoke("fn", '{"sleep": 3}')))
    thread.start()
    deadline = time.monotonic() + 5
    killed: list[int] = []
    while not killed and time.monotonic() < deadline:
        time.sleep(0.05)
        killed = runtime.kill_busy("fn")
    thread.join(10)
    # Then that invocation died mid-way as a crashed worker does; an idle function has none to kill
    assert killed and results[0].error_type == "Runtime.ExitError"
    assert runtime.kill_busy("fn") == []
