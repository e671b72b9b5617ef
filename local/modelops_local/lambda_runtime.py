"""The local Lambda runtime: each function in its own worker process, warm reuse, timeouts.

`LambdaRuntime` runs functions registered from template.yaml (`FunctionSpec`). A function's first
invocation starts a worker (`python -m modelops_local.lambda_worker`) whose `sys.path` is the
function's code folder then its layers (as `/var/task` and `/opt/python` on Lambda) and whose
environment is the template's plus the runtime's (AWS endpoint, Lambda's reserved variables). The
handler is imported once (the init duration is the cold start) and the worker is reused while warm.

An invocation that outlives the function's timeout kills the worker and returns Lambda's timeout
error; the next invocation starts a fresh worker. A handler exception becomes Lambda's error
document (`errorType` = the exception class name) with `function_error == "Unhandled"`, so Step
Functions sees Error = errorType and Cause = the payload, as on AWS. Up to `max_workers` workers
serve one function concurrently; a further invocation waits (bounded) for one to free up and is
otherwise throttled (`LambdaThrottledError`, Lambda's TooManyRequestsException). A throttled
asynchronous (`Event`) invocation is kept and retried with backoff up to `max_event_age`, as
Lambda's asynchronous queue does; it is not dropped.

Test support (off unless armed): `runtime.faults.add(function, match=..., timeout=..., kill_after=...)`
makes the function's next matching invocations run with a shorter timeout or have their worker
SIGKILLed part-way, and `kill_busy(function)` kills the workers running it right now (e.g. from a
Kubernetes fault hook, so a worker dies mid-request). Either way the invocation ends as on Lambda:
`Sandbox.Timedout` or `Runtime.ExitError`, and the next one gets a fresh worker.

The runtime never touches this process's environment: a function's environment exists only in its
worker, as on Lambda. (Tests that run handlers as plain Python under moto's `mock_aws` use
`tests/in_process_lambda.py`, which swaps `os.environ` per invocation: the tests' own process.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

LOG = logging.getLogger(__name__)

REQUEST_RESPONSE = "RequestResponse"
EVENT = "Event"
UNHANDLED = "Unhandled"
SUPPORTED_RUNTIMES = frozenset({"python3.10", "python3.11", "python3.12", "python3.13"})


class LambdaRuntimeError(Exception):
    """The local Lambda runtime cannot do what was asked (the message says which function and why)."""


class UnknownFunctionError(LambdaRuntimeError):
    """No function with this name or ARN is registered with the runtime."""


class InvalidRequestContentError(LambdaRuntimeError):
    """The invocation payload is not JSON (Lambda's InvalidRequestContentException)."""


class LambdaThrottledError(LambdaRuntimeError):
    """Every worker of the function stayed busy for the whole queue wait (TooManyRequestsException)."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to run one function, resolved from the template."""

    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    memory_mb: int = 128
    layer_dirs: tuple[Path, ...] = ()
    runtime: str = "python3.11"
    log_group: str = ""
    logical_id: str = ""


@dataclass(frozen=True)
class InvocationResult:
    """What Lambda's Invoke API returns: the payload bytes and `FunctionError` ("Unhandled" or None)."""

    payload: bytes
    function_error: str | None = None
    request_id: str = ""
    duration: float = 0.0
    init_duration: float | None = None

    @property
    def error_type(self) -> str | None:
        """The error document's errorType when the invocation failed."""
        if self.function_error is None:
            return None
        try:
            return str(json.loads(self.payload).get("errorType"))
        except (ValueError, AttributeError):
            return None

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload) if self.payload else None


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation, for metrics, tests and the CLI's live view."""

    function_name: str
    request_id: str
    invocation_type: str
    started_at: float
    duration: float
    cold_start: bool
    error_type: str | None


@dataclass
class FunctionMetrics:
    """Counters and durations (seconds) for one function."""

    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    throttles: int = 0
    durations: list[float] = field(default_factory=list)
    init_durations: list[float] = field(default_factory=list)


@dataclass
class InvocationFault:
    """One armed fault on a function's next `times` invocations whose event `match` accepts."""

    function: str
    match: Callable[[Any], bool] | None = None  # on the parsed event; None: every invocation
    timeout: float | None = None  # seconds: the invocation's timeout in place of the function's
    kill_after: float | None = None  # seconds into the invocation: SIGKILL its worker
    times: int = 1
    fired: int = 0


class InvocationFaults:
    """The invocation faults armed on one runtime; thread-safe. Off (empty) by default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[InvocationFault] = []

    def add(
        self,
        function: str,
        *,
        match: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
        kill_after: float | None = None,
        times: int = 1,
    ) -> InvocationFault:
        """Arm a fault for `function` (name or ARN); returns it (`fired` counts its hits)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        if timeout is None and kill_after is None:
            raise ValueError("an invocation fault needs a timeout or kill_after")
        fault = InvocationFault(function_name_of(function), match, timeout, kill_after, times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, function: str, event: Any) -> InvocationFault | None:
        """The first armed fault for this invocation, counted as fired; None if none."""
        with self._lock:
            for fault in self._faults:
                if fault.function != function or fault.fired >= fault.times:
                    continue
                if fault.match is not None:
                    try:
                        if not fault.match(event):
                            continue
                    except Exception:  # a predicate that cannot judge this event does not match
                        continue
                fault.fired += 1
                return fault
        return None

    @property
    def pending(self) -> list[InvocationFault]:
        with self._lock:
            return [f for f in self._faults if f.fired < f.times]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class FunctionRegistry(Protocol):
    """Where the stack registers the functions it creates."""

    def register(self, spec: FunctionSpec) -> None: ...


class LambdaInvoker(Protocol):
    """Invokes a registered function by name or ARN (any qualifier is ignored)."""

    def invoke(
        self, function: str, payload: bytes | str | None, *, invocation_type: str = ...
    ) -> InvocationResult: ...

    def invoke_async(self, function: str, payload: bytes | str | None) -> Future[InvocationResult]: ...


def function_name_of(function: str) -> str:
    """The bare function name from a name, partial ARN or full ARN, without qualifier."""
    if function.startswith("arn:"):
        parts = function.split(":")
        return parts[6] if len(parts) > 6 else function
    parts = function.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:qualifier]
        return parts[2]
    return parts[0]


def _payload_bytes(payload: bytes | str | None) -> bytes:
    if payload is None:
        return b""
    return payload.encode() if isinstance(payload, str) else payload


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def timeout_payload(request_id: str, timeout: float) -> bytes:
    """Lambda's error document for an invocation killed at its timeout."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return _error_payload(
        "Sandbox.Timedout", f"{when} {request_id} Task timed out after {timeout:.2f} seconds"
    )


# ---------------------------------------------------------------------- process workers
class _Worker:
    """One worker process for one function, talking over two pipes."""

    def __init__(self, spec: FunctionSpec, env: Mapping[str, str], log_path: Path) -> None:
        self.spec = spec
        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        self._buffer = b""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelops_local.lambda_worker", str(request_read), str(reply_write)],
                cwd=spec.code_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(request_read, reply_write),
                start_new_session=True,
            )
        os.close(request_read)
        os.close(reply_write)
        self.init_duration: float | None = None
        self.invocations = 0
        self.gone = False  # the reply pipe reached end-of-file: the process exited or was stopped
        self._closed = False

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._request_write, view)
            view = view[written:]

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None when the deadline passed or the worker went away (`gone`)."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                ready, _, _ = select.select([self._reply_read], [], [], min(remaining, 0.5))
                if not ready:
                    continue
                chunk = os.read(self._reply_read, 65536)
            except (OSError, ValueError):  # the pipe was closed: the worker is being stopped
                chunk = b""
            if not chunk:
                self.gone = True
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return dict(json.loads(line))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, grace: float = 0.0) -> None:
        """Stop the worker and anything it started (its whole process group)."""
        if not self._closed:
            self._closed = True
            for fd in (self._request_write, self._reply_read):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                self.process.wait(timeout=grace if grace > 0 else 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


class _Pool:
    """The workers of one function: idle ones are reused, at most `limit` exist at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.idle: list[_Worker] = []
        self.workers: set[_Worker] = set()  # idle and busy
        self.count = 0
        self.cond = threading.Condition()


class LambdaRuntime:
    """Runs registered functions in worker processes; see the module docstring for the contract."""

    def __init__(
        self,
        state_dir: Path,
        aws_environment: Mapping[str, str] | None = None,
        *,
        max_workers: int = 4,
        queue_timeout: float = 30.0,
        init_timeout: float = 10.0,
        async_threads: int = 8,
        history_size: int = 1000,
        max_event_age: float = 6 * 3600.0,
        throttle_retry_max_delay: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.log_dir = self.state_dir / "logs" / "lambda"
        self.aws_environment = dict(aws_environment or {})
        self.max_workers = max_workers
        self.queue_timeout = queue_timeout
        self.init_timeout = init_timeout
        # Lambda keeps a throttled asynchronous event and retries it with backoff for up to the
        # maximum event age (6 hours by default), instead of dropping it.
        self.max_event_age = max_event_age
        self.throttle_retry_max_delay = throttle_retry_max_delay
        self._specs: dict[str, FunctionSpec] = {}
        self._pools: dict[str, _Pool] = {}
        self._metrics: dict[str, FunctionMetrics] = {}
        self._history: deque[InvocationRecord] = deque(maxlen=history_size)
        self._listeners: list[Callable[[InvocationRecord], None]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._async = ThreadPoolExecutor(max_workers=async_threads, thread_name_prefix="lambda-async")
        self._pending: set[Future[InvocationResult]] = set()
        self._idle = threading.Condition(self._lock)
        self.faults = InvocationFaults()
        self._busy: dict[str, set[_Worker]] = {}
        atexit.register(_shutdown_ref, weakref.ref(self))

    # ------------------------------------------------------------------ registry
    def register(self, spec: FunctionSpec) -> None:
        """Make `spec` invocable by name and ARN; re-registering replaces the code and stops old workers."""
        if spec.runtime not in SUPPORTED_RUNTIMES:
            raise LambdaRuntimeError(
                f"function {spec.name}: runtime {spec.runtime!r} is not supported locally "
                f"(supported: {', '.join(sorted(SUPPORTED_RUNTIMES))})"
            )
        if not spec.code_dir.is_dir():
            raise LambdaRuntimeError(f"function {spec.name}: code folder {spec.code_dir} does not exist")
        with self._lock:
            old = self._pools.pop(spec.name, None)
            self._specs[spec.name] = spec
            self._pools[spec.name] = _Pool(self.max_workers)
            self._metrics.setdefault(spec.name, FunctionMetrics())
        if old is not None:
            with old.cond:
                for worker in old.idle:
                    old.workers.discard(worker)
                    worker.kill()
                old.idle.clear()

    def spec(self, function: str) -> FunctionSpec:
        """The registered spec for a name or ARN."""
        name = function_name_of(function)
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownFunctionError(
                f"function {name!r} is not registered with the local Lambda runtime"
            ) from None

    def functions(self) -> list[FunctionSpec]:
        """Every registered function."""
        return list(self._specs.values())

    def log_path(self, function: str) -> Path:
        """The file that receives the function's stdout and stderr (all its workers)."""
        return self.log_dir / f"{function_name_of(function)}.log"

    # ------------------------------------------------------------------ invoking
    def invoke(
        self, function: str, payload: bytes | str | None, *, invocation_type: str = REQUEST_RESPONSE
    ) -> InvocationResult:
        """Run the function once and return what Lambda's Invoke would (blocking).

        Raises `UnknownFunctionError` for an unregistered function and `LambdaThrottledError` when
        no worker frees up within `queue_timeout`. Function errors, init errors and timeouts are
        results with `function_error == "Unhandled"`, not exceptions.
        """
        if self._closed:
            raise LambdaRuntimeError("the local Lambda runtime has been shut down")
        spec = self.spec(function)
        body = _payload_bytes(payload)
        if body:
            try:
                json.loads(body)
            except ValueError:
                raise InvalidRequestContentError(
                    f"function {spec.name}: the request payload is not valid JSON (InvalidRequestContentException)"
                ) from None
        pool = self._pools[spec.name]
        fault = self.faults.take(spec.name, _parsed(body)) if self.faults.pending else None
        request_id = str(uuid.uuid4())
        started_wall = time.time()
        started = time.monotonic()
        outcome: InvocationResult | None = None
        for _attempt in range(2):  # a second attempt only when a dead warm worker never got the request
            worker, cold, init_error = self._acquire(spec, pool, request_id)
            healthy = False
            try:
                if worker is None:
                    outcome = init_error
                else:
                    outcome, healthy = self._run(spec, worker, body, request_id, fault)
            finally:
                self._release(pool, worker, healthy)
            if outcome is not None:
                break
        if outcome is None:
            outcome = InvocationResult(
                _error_payload("Runtime.ExitError", f"RequestId: {request_id} Error: worker lost"), UNHANDLED
            )
        result = outcome
        duration = time.monotonic() - started
        result = InvocationResult(
            payload=result.payload,
            function_error=result.function_error,
            request_id=request_id,
            duration=duration,
            init_duration=(worker.init_duration if worker is not None and cold else result.init_duration),
        )
        self._record(spec.name, invocation_type, request_id, started_wall, duration, cold, result)
        return result

    def invoke_async(self, function: str, payload: bytes | str | None) -> Future[InvocationResult]:
        """Queue an `Event` invocation (Lambda's asynchronous invoke) and return at once."""
        self.spec(function)  # unknown functions fail now, as the Invoke API does
        if self._closed:
            raise LambdaRuntimeError("the local Lambda runtime has been shut down")
        future = self._async.submit(self._invoke_event, function, payload)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._async_done)
        return future

    def _invoke_event(self, function: str, payload: bytes | str | None) -> InvocationResult:
        queued_at = time.monotonic()
        delay = 1.0
        while True:
            try:
                return self.invoke(function, payload, invocation_type=EVENT)
            except LambdaThrottledError as exc:
                age = time.monotonic() - queued_at
                if self._closed or age + delay > self.max_event_age:
                    LOG.warning(
                        "asynchronous event for %s dropped after %.0fs of throttling: %s", function, age, exc
                    )
                    return InvocationResult(_error_payload("Runtime.Unavailable", str(exc)), UNHANDLED)
                LOG.info("asynchronous event for %s throttled; retrying in %.0fs", function, delay)
                with self._lock:
                    self._idle.wait(delay)  # woken early only by shutdown or other events finishing
                delay = min(delay * 2, self.throttle_retry_max_delay)
            except LambdaRuntimeError as exc:
                LOG.warning("asynchronous invocation of %s failed: %s", function, exc)
                return InvocationResult(_error_payload("Runtime.Unavailable", str(exc)), UNHANDLED)

    def _async_done(self, future: Future[InvocationResult]) -> None:
        with self._lock:
            self._pending.discard(future)
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued asynchronous invocation has finished; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def _acquire(
        self, spec: FunctionSpec, pool: _Pool, request_id: str
    ) -> tuple[_Worker | None, bool, InvocationResult | None]:
        deadline = time.monotonic() + self.queue_timeout
        with pool.cond:
            while True:
                while pool.idle:
                    idle = pool.idle.pop()
                    if idle.alive:
                        return idle, False, None
                    pool.workers.discard(idle)  # died while idle (killed from outside)
                    pool.count -= 1
                    idle.kill()
                if pool.count < pool.limit:
                    pool.count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    with self._lock:
                        self._metrics[spec.name].throttles += 1
                    raise LambdaThrottledError(
                        f"function {spec.name}: all {pool.limit} workers stayed busy for {self.queue_timeout:.0f}s "
                        "(TooManyRequestsException: Rate Exceeded.)"
                    )
                pool.cond.wait(remaining)
        try:
            worker = self._start_worker(spec)
        except Exception:
            with pool.cond:
                pool.count -= 1
                pool.cond.notify()
            raise
        with pool.cond:
            pool.workers.add(worker)
        reply = worker.receive(time.monotonic() + max(self.init_timeout, spec.timeout))
        if reply is not None and reply.get("type") == "ready":
            worker.init_duration = float(reply["init_duration"])
            with self._lock:
                self._metrics[spec.name].init_durations.append(worker.init_duration)
            return worker, True, None
        if reply is not None and reply.get("type") == "init_error":
            error = dict(reply["error"])
            error["requestId"] = request_id
            failure = InvocationResult(json.dumps(error).encode(), UNHANDLED)
        elif not worker.gone:
            failure = InvocationResult(
                timeout_payload(request_id, max(self.init_timeout, spec.timeout)), UNHANDLED
            )
        else:
            failure = InvocationResult(self._exit_payload(request_id, worker), UNHANDLED)
        worker.kill()
        with pool.cond:
            pool.workers.discard(worker)
        return None, True, failure

    def _start_worker(self, spec: FunctionSpec) -> _Worker:
        worker = _Worker(spec, self._environment(spec), self.log_path(spec.name))
        worker.send(
            {
                "type": "init",
                "code_dir": str(spec.code_dir),
                "layer_dirs": [str(d) for d in spec.layer_dirs],
                "handler": spec.handler,
                "function_name": spec.name,
                "function_arn": spec.arn,
                "memory_mb": spec.memory_mb,
                "log_group": spec.log_group or f"/aws/lambda/{spec.name}",
                "log_stream": f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
            }
        )
        return worker

    def _run(
        self,
        spec: FunctionSpec,
        worker: _Worker,
        body: bytes,
        request_id: str,
        fault: InvocationFault | None = None,
    ) -> tuple[InvocationResult | None, bool]:
        """The result and whether the worker stays usable; None when the invocation never reached
        the handler (a warm worker that had died), so it can be retried on a fresh one."""
        timeout = fault.timeout if fault is not None and fault.timeout is not None else spec.timeout
        deadline = time.monotonic() + timeout
        message = {
            "type": "invoke",
            "request_id": request_id,
            "payload": body.decode() or "{}",
            "deadline": time.time() + timeout,
        }
        try:
            worker.send(message)
        except OSError:  # the worker is gone before it got the request
            return None, False
        killer = None
        if fault is not None and fault.kill_after is not None:
            killer = threading.Timer(fault.kill_after, _kill_group, (worker.process.pid,))
            killer.daemon = True
            killer.start()
        with self._lock:
            self._busy.setdefault(spec.name, set()).add(worker)
        try:
            reply = worker.receive(deadline)
            if reply is None and worker.gone and fault is None:
                return None, False
            if reply is not None and reply.get("type") == "started":
                reply = worker.receive(deadline)
        finally:
            with self._lock:
                self._busy.get(spec.name, set()).discard(worker)
            if killer is not None:
                killer.cancel()
        worker.invocations += 1
        if reply is None:
            if not worker.gone:
                with self._lock:
                    self._metrics[spec.name].timeouts += 1
                LOG.info("function %s timed out after %.2fs; killing its worker", spec.name, timeout)
                payload = timeout_payload(request_id, timeout)
                with contextlib.suppress(OSError), self.log_path(spec.name).open("a") as log:
                    log.write(json.loads(payload)["errorMessage"] + "\n")
                return InvocationResult(payload, UNHANDLED), False
            return InvocationResult(self._exit_payload(request_id, worker), UNHANDLED), False
        if reply.get("type") == "result":
            return InvocationResult(str(reply["payload"]).encode()), True
        return InvocationResult(json.dumps(reply["error"]).encode(), UNHANDLED), True

    @staticmethod
    def _exit_payload(request_id: str, worker: _Worker) -> bytes:
        try:
            code = worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = -1
        status = f"signal: {-code}" if code < 0 else f"exit status {code}"
        return _error_payload(
            "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {status}"
        )

    def _release(self, pool: _Pool, worker: _Worker | None, healthy: bool) -> None:
        with pool.cond:
            if worker is not None and healthy and worker.alive and not self._closed:
                pool.idle.append(worker)
            else:
                pool.count -= 1
                if worker is not None:
                    pool.workers.discard(worker)
                    worker.kill()
            pool.cond.notify()

    def _record(
        self,
        name: str,
        invocation_type: str,
        request_id: str,
        started: float,
        duration: float,
        cold: bool,
        result: InvocationResult,
    ) -> None:
        record = InvocationRecord(
            name, request_id, invocation_type, started, duration, cold, result.error_type
        )
        with self._lock:
            metrics = self._metrics[name]
            metrics.invocations += 1
            metrics.durations.append(duration)
            if result.function_error:
                metrics.errors += 1
            self._history.append(record)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(record)
            except Exception:
                LOG.exception("invocation listener failed")

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            "HOME": str(self.state_dir),
            # Isolate functions from the developer's own AWS profile, as a Lambda sandbox is.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        reserved = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout)),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group or f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]local",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(sys.executable).parent),
            "_HANDLER": spec.handler,
            # Like `sam local`: powertools turns X-Ray tracing off (there is no daemon here).
            "AWS_SAM_LOCAL": "true",
        }
        return {**base, **spec.environment, **reserved, **self.aws_environment}

    # ------------------------------------------------------------------ observability
    def metrics(self) -> dict[str, FunctionMetrics]:
        """A snapshot of every function's counters and durations."""
        with self._lock:
            return {
                name: FunctionMetrics(
                    m.invocations,
                    m.errors,
                    m.timeouts,
                    m.throttles,
                    list(m.durations),
                    list(m.init_durations),
                )
                for name, m in self._metrics.items()
            }

    def history(self) -> list[InvocationRecord]:
        """The most recent invocations, oldest first."""
        with self._lock:
            return list(self._history)

    def add_listener(self, listener: Callable[[InvocationRecord], None]) -> None:
        """Call `listener` after every invocation (from the invoking thread)."""
        with self._lock:
            self._listeners.append(listener)

    def kill_busy(self, function: str) -> list[int]:
        """SIGKILL the workers running an invocation of `function` now (test support: a worker that
        dies mid-invocation); returns their process ids. Each such invocation ends Runtime.ExitError."""
        name = function_name_of(function)
        with self._lock:
            workers = list(self._busy.get(name, ()))
        for worker in workers:
            _kill_group(worker.process.pid)
        return [w.process.pid for w in workers]

    def worker_pids(self) -> list[int]:
        """Process ids of the idle (warm) workers."""
        pids: list[int] = []
        for pool in list(self._pools.values()):
            with pool.cond:
                pids.extend(w.process.pid for w in pool.idle)
        return pids

    # ------------------------------------------------------------------ lifecycle
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker (bounded by `timeout`) and refuse new invocations."""
        if self._closed:
            return
        self._closed = True
        self._async.shutdown(wait=False, cancel_futures=True)
        workers: list[_Worker] = []
        for pool in list(self._pools.values()):
            with pool.cond:
                workers.extend(pool.workers)
                pool.idle.clear()
                pool.cond.notify_all()
        grace = max(0.0, timeout / 2)
        for worker in workers:
            worker.kill(grace=grace / max(1, len(workers)))

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _shutdown_ref(ref: weakref.ref[LambdaRuntime]) -> None:
    runtime = ref()
    if runtime is not None:
        runtime.shutdown(timeout=2.0)
