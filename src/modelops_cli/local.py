"""`modelops local ...`: the whole product on this machine (no AWS account, no Docker).

modelops local demo                  the scripted story (v1, v2 through a canary, v3 rolled back)
modelops local demo --drift          the drift story: shifted traffic -> drift alarm -> retrain
modelops local up [--model FILE]...  start and stay up; prints the endpoints; Ctrl-C stops
modelops local env                   the shell exports that point `modelops status` etc. at `up`
modelops local run --model M --data FILE   upload a dataset to the running `up` and follow the run
modelops local tick                  fire every schedule of the running `up` now
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from modelops.errors import ModelopsError

if TYPE_CHECKING:  # for annotations only: the commands import the local runtime where they run
    from modelops_local.cloud import LocalCloud

DEFAULT_STATE_DIR = Path(".modelops") / "local"
ENDPOINTS_FILE = "endpoints.json"


def _say(message: str) -> None:
    print(message, flush=True)


def _cloud(args: argparse.Namespace) -> LocalCloud:
    from modelops_local.cloud import LocalCloud, LocalSettings

    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The terminal shows progress; every component's log (moto's interpreter included) goes to a file.
    logging.basicConfig(
        filename=state_dir / "local.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    _say(f"[local] state and logs in {state_dir} (local.log, logs/lambda/, pods/, training/, builds/)")
    settings = LocalSettings(state_dir=state_dir, aws_port=args.port, stack_name=args.stack)
    return LocalCloud(settings, progress=lambda m: _say(f"[local] {m}"))


def cmd_demo(args: argparse.Namespace) -> int:
    from modelops_local.demo import run_demo, run_drift_demo

    started = time.monotonic()
    workdir = Path(args.output).resolve()
    if args.state_dir == str(DEFAULT_STATE_DIR):
        args.state_dir = str(workdir / "state")  # the demo starts from nothing every time
    shutil.rmtree(args.state_dir, ignore_errors=True)
    cloud = _cloud(args)
    with _stop_on_signals(), cloud:
        if args.drift:
            code, facts = run_drift_demo(cloud, workdir, _say)
            if "shift_to_start_seconds" in facts:
                _say(f"drift: shift -> retrain run started in {facts['shift_to_start_seconds']:.1f}s")
        else:
            code, _ = run_demo(cloud, workdir, _say)
    _say(f"demo finished in {time.monotonic() - started:.0f}s with exit code {code}")
    return code


def cmd_up(args: argparse.Namespace) -> int:
    from modelops.config import load_config_file

    from modelops_local.demo import DEMO_CONFIG

    # validated before anything starts
    configs = [load_config_file(path) for path in (args.model or [DEMO_CONFIG])]
    cloud = _cloud(args)
    endpoints_path = Path(args.state_dir) / ENDPOINTS_FILE
    with _stop_on_signals() as signals, cloud:
        for path, config in zip(args.model or [DEMO_CONFIG], configs, strict=True):
            result = cloud.put_model(config, base_dir=Path(path).parent)
            _say(f"[local] model {config.name}: stored; alarms {', '.join(result['alarms'])}")
        control = _ControlServer(cloud)
        services = {
            config.name: cloud.service_url(config.kubernetes.namespace, config.kubernetes.service)
            for config in configs
        }
        info = {
            **cloud.endpoints.environment(),
            "KUBERNETES_ENDPOINT": cloud.endpoints.kubernetes,
            "CONTROL_URL": control.url,
            "PID": str(os.getpid()),
            "services": services,
        }
        endpoints_path.parent.mkdir(parents=True, exist_ok=True)
        partial = endpoints_path.with_suffix(".tmp")  # readers never see a half-written file
        partial.write_text(json.dumps(info, indent=2), encoding="utf-8")
        os.replace(partial, endpoints_path)
        _say("\nmodelops local is up. In another shell:")
        _say(f'  eval "$(modelops local env --state-dir {args.state_dir})"')
        _say("  modelops status --model churn        # or history / rollback / start")
        for name, url in services.items():
            _say(
                f"  curl -s -H 'Content-Type: text/csv' --data-binary '12,80,3,20,1,1' {url}/invocations   # {name}"
            )
        _say(f"  modelops local run --model churn --data FILE.csv\nAWS endpoint {info['AWS_ENDPOINT_URL']}")
        _say("Ctrl-C stops everything.")
        try:
            signals.wait()
        except KeyboardInterrupt:
            _say("\n[local] stopping")
        finally:
            control.stop()
            endpoints_path.unlink(missing_ok=True)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    info = _running(args)
    for key, value in info.items():
        if key.isupper() and key not in {"PID", "CONTROL_URL", "KUBERNETES_ENDPOINT"}:
            print(f"export {key}={value}")
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    info = _running(args)
    request = urllib.request.Request(f"{info['CONTROL_URL']}/tick", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        fired = json.loads(response.read())
    _say(f"fired {len(fired)} schedule(s)" + "".join(f"\n  {f}" for f in fired))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import boto3

    from modelops_local.demo import find_new_execution_arn, follow

    info = _running(args)
    data = Path(args.data)
    if not data.is_file():
        print(f"error: --data {data}: no such file", file=sys.stderr)
        return 1
    env = {k: v for k, v in info.items() if isinstance(v, str)}
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=env["AWS_ENDPOINT_URL"])

    from modelops.model_admin import StackInfo

    stack = StackInfo.from_parameter(
        client("ssm").get_parameter(Name=f"/modelops/{env['MODELOPS_STACK']}/stack")["Parameter"]["Value"]
    )
    sfn = client("stepfunctions")
    known = {
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    }
    key = f"incoming/{args.model}/{data.name}"
    client("s3").put_object(Bucket=stack.bucket, Key=key, Body=data.read_bytes())
    _say(f"uploaded s3://{stack.bucket}/{key}")
    arn = find_new_execution_arn(sfn, stack.state_machine_arn, known)
    _say(f"execution {arn}")
    status, _ = follow(sfn, arn, _say)
    _say(f"{status}; `modelops history --model {args.model}` shows the record")
    return 0 if status == "SUCCEEDED" else 1


def _running(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.state_dir) / ENDPOINTS_FILE
    if not path.is_file():
        raise SystemExit(f"error: no running `modelops local up` found ({path} is missing); start one first")
    info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    try:
        os.kill(int(info["PID"]), 0)
    except (OSError, ValueError):
        raise SystemExit(
            f"error: the `modelops local up` that wrote {path} is gone; start it again"
        ) from None
    return info


class _ControlServer:
    """POST /tick on 127.0.0.1 for `modelops local tick` (the scheduler lives in the `up` process)."""

    def __init__(self, cloud: LocalCloud) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/tick":
                    self.send_error(404)
                    return
                fired = [str(record) for record in outer.cloud.tick()]
                body = json.dumps(fired).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.cloud = cloud
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _stop_on_signals:
    """SIGTERM behaves as Ctrl-C, so `with cloud:` always stops every process."""

    def __enter__(self) -> _stop_on_signals:
        self.previous = signal.signal(signal.SIGTERM, self._raise)
        # A process started in the background of a script inherits SIGINT ignored; Ctrl-C (or
        # `kill -INT`) must still stop everything.
        self.previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)
        signal.signal(signal.SIGINT, self.previous_int)

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM; their handlers raise KeyboardInterrupt out of here.

        The kernel hands a signal sent to the process to any of its threads. Python runs the
        handler only in the main thread, when it next runs bytecode; the signal interrupts a
        blocking call only in the thread it landed on. So a main thread in `time.sleep(3600)`
        slept through Ctrl-C that had landed on one of `up`'s many other threads (seen under
        load: 1 time in 14). The C-level handler writes to the wakeup fd whichever thread it ran
        on, so waiting on that fd wakes the main thread at once.
        """
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        try:
            while True:
                select.select([reader], [], [])
                reader.recv(64)  # a handler that did not raise: drain, wait again
        finally:
            signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt


def _needs_runtime(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`command` imports the local runtime (the modelops-local distribution in local/, installed
    apart from the product): without it, a clear error instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("modelops_local"):
                raise
            raise ModelopsError(
                "the local runtime (modelops-local) is not installed: run `make install`, or "
                "`pip install -e ./local` from the repository"
            ) from None

    return run


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = sub.add_parser("local", help="the whole cycle on this machine: no AWS account, no Docker")
    local_sub = local.add_subparsers(dest="local_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir", default=str(DEFAULT_STATE_DIR), help="where the local runtime keeps its state"
        )

    demo = local_sub.add_parser("demo", help="v1 deployed, v2 promoted through a canary, v3 rolled back")
    common(demo)
    demo.add_argument("--port", type=int, default=0, help="AWS endpoint port (default: any free port)")
    demo.add_argument(
        "--output", default=str(Path(".modelops") / "demo"), help="datasets and the HTML report"
    )
    demo.add_argument(
        "--drift",
        action="store_true",
        help="the drift story instead: two versions promoted, then the demo client shifts its traffic "
        "(tenure + 60 months, monthly charges x 1.5) and the drift alarm starts a retrain",
    )
    demo.set_defaults(func=_needs_runtime(cmd_demo))
    up = local_sub.add_parser("up", help="start and stay up (Ctrl-C stops)")
    common(up)
    up.add_argument("--port", type=int, default=4566, help="AWS endpoint port (taken: another is picked)")
    up.add_argument(
        "--model",
        action="append",
        help="model config to put at start (repeatable; default models/churn-local.yaml)",
    )
    up.set_defaults(func=_needs_runtime(cmd_up))
    for name, func, text in (
        ("env", cmd_env, "print shell exports for the running `up`"),
        ("tick", cmd_tick, "fire every schedule now"),
    ):
        p = local_sub.add_parser(name, help=text)
        common(p)
        p.set_defaults(func=func)
    run = local_sub.add_parser("run", help="upload a dataset to the running `up` and follow the run")
    common(run)
    run.add_argument("--model", required=True)
    run.add_argument("--data", required=True, help="a CSV file")
    run.set_defaults(func=_needs_runtime(cmd_run))
