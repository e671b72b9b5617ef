"""A warm start for the local `train` program: one process imports its libraries once and forks a
child per training job.

Why: a local training job was a fresh interpreter that spent about 1.4 s of its 1.5 s of CPU
importing numpy, SciPy, scikit-learn, XGBoost and LightGBM before it read a row; the end-to-end tier
runs about 90 of them. A fork of a process that has imported them starts in milliseconds.

What the child is, so the runner sees what `docker run <image> train` gives it (and what a
`subprocess.Popen([python, program])` gave it before): the program file run as `__main__` with
`sys.argv == [program]` and `sys.path[0]` its folder; its own session (a stop or a timeout signals
its whole group); stdin from /dev/null; stdout and stderr to the job's log; exactly the job's
environment and working directory; its exit code, or minus the signal that ended it. Modules are
imported before the job's environment is set, so the server starts with the environment the jobs
share (OMP_NUM_THREADS included) and must have no thread but its own when it forks: it reports its
thread count, and a server with more is not used (`ForkServerError`; the caller starts the program
the plain way).

The server reads JSON lines on stdin (requests) and writes JSON lines on stdout (the pid of each
child, then its exit code); it ends when stdin closes, after its children. Everything here imports
only the standard library: the server runs as a script (`python -P`, so this folder is not on its
path) in the venv that runs the jobs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import runpy
import selectors
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SERVER = Path(__file__).resolve()
log = logging.getLogger(__name__)


class ForkServerError(Exception):
    """The fork server could not start a child (not started, gone, not fork-safe, or no answer)."""


class ForkedProcess:
    """A child of the fork server, shaped after the part of `subprocess.Popen` the runner uses."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._done = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()


class ForkServer:
    """The client: starts the server, sends it requests, hands out `ForkedProcess` handles."""

    def __init__(
        self,
        python: str,
        *,
        preload: Sequence[str],
        path: Sequence[str] = (),
        env: Mapping[str, str],
        ready_timeout: float = 120.0,
    ) -> None:
        config = {"preload": list(preload), "path": [str(p) for p in path]}
        self._process = subprocess.Popen(
            [python, "-P", str(_SERVER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
        self._lock = threading.Lock()  # the state below
        self._write_lock = threading.Lock()  # one request line at a time (never held with _lock)
        self._next_id = 0
        self._pending: dict[int, tuple[threading.Event, dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready = threading.Event()
        self._ready_doc: dict[str, Any] = {}
        self._gone = False
        self._reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout) or self._gone:
            self.close()
            raise ForkServerError(f"the fork server did not start within {ready_timeout:.0f} s")
        for error in self._ready_doc.get("errors", []):  # the child imports it again and fails with it
            log.debug("fork server: %s did not import: %s", python, error)
        if self._ready_doc.get("threads") != 1:
            self.close()
            raise ForkServerError(
                f"the fork server has {self._ready_doc.get('threads')} threads after its imports; forking it is unsafe"
            )

    @property
    def alive(self) -> bool:
        return not self._gone and self._process.poll() is None

    def spawn(
        self,
        program: Path,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        timeout: float = 60.0,
    ) -> ForkedProcess:
        """Start `program` as a child (module docstring); returns once its pid is known."""
        answered = threading.Event()
        reply: dict[str, Any] = {}
        with self._lock:
            if not self.alive:
                raise ForkServerError("the fork server is gone")
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = (answered, reply)
        line = {
            "id": request_id,
            "program": str(program),
            "cwd": str(cwd),
            "env": dict(env),
            "log": str(log_path),
        }
        try:
            with self._write_lock:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps(line).encode() + b"\n")
                self._process.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: stdin already closed
            with self._lock:
                self._pending.pop(request_id, None)
            raise ForkServerError(f"the fork server is gone: {exc}") from None
        if not answered.wait(timeout):
            with self._lock:
                self._pending.pop(request_id, None)
            raise ForkServerError(f"the fork server did not answer within {timeout:.0f} s")
        if "error" in reply:
            raise ForkServerError(str(reply["error"]))
        process: ForkedProcess = reply["process"]
        return process

    def close(self, timeout: float = 10.0) -> None:
        """Close stdin: the server ends once its children have; killed after `timeout`."""
        with self._write_lock, contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
        self._reader.join(5)

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            doc = json.loads(raw)
            if "ready" in doc:
                self._ready_doc = doc
                self._ready.set()
            elif "id" in doc:
                with self._lock:
                    answered, reply = self._pending.pop(doc["id"], (None, {}))
                    if "pid" in doc and answered is not None:
                        args = [doc.get("program", "")]
                        reply["process"] = self._children[doc["pid"]] = ForkedProcess(doc["pid"], args)
                    elif "pid" not in doc:
                        reply["error"] = doc.get("error", "unknown error")
                if answered is not None:
                    answered.set()
                elif "pid" in doc:
                    # An answer after spawn() gave up: its caller started the job another way, so
                    # this child must not run it as well (the child itself: it may not lead its
                    # own group yet; and its group, should it have started anything).
                    for kill in (os.kill, os.killpg):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            kill(doc["pid"], signal.SIGKILL)
            elif "exit" in doc:
                with self._lock:
                    child = self._children.pop(doc["exit"], None)
                if child is not None:
                    child._exited(int(doc["code"]))
        # The server is gone: nobody can tell these children's codes any more.
        with self._lock:
            self._gone = True
            orphans, self._children = list(self._children.values()), {}
            pending, self._pending = list(self._pending.values()), {}
        self._ready.set()
        for child in orphans:
            child._exited(255)
        for answered, reply in pending:
            reply["error"] = "the fork server is gone"
            answered.set()


_shared: dict[tuple[Any, ...], ForkServer] = {}
_refused: dict[tuple[Any, ...], str] = {}  # servers that would not serve: asked once, not per job
_shared_lock = threading.Lock()


def shared_server(
    python: str, *, preload: Sequence[str], path: Sequence[str], env: Mapping[str, str]
) -> ForkServer:
    """One server per interpreter, module list, path and environment in this process, closed at
    exit. A server that would not start (or was unsafe to fork) is not tried again."""
    key = (python, tuple(preload), tuple(str(p) for p in path), tuple(sorted(env.items())))
    with _shared_lock:
        if key in _refused:
            raise ForkServerError(_refused[key])
        server = _shared.get(key)
        if server is None or not server.alive:
            if not _shared:
                atexit.register(close_shared)
            try:
                server = _shared[key] = ForkServer(python, preload=preload, path=path, env=env)
            except ForkServerError as exc:
                _refused[key] = str(exc)
                raise
        return server


def close_shared() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.close()


# --- the server (runs as a script) -----------------------------------------------------------------
def _serve(config: dict[str, Any]) -> None:
    requests = os.dup(0)
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # an import that prints must not write into the replies
    base_path = list(sys.path)
    sys.path[:0] = config["path"]
    errors = []
    for module in config["preload"]:
        try:
            __import__(module)
        except BaseException as exc:  # the child imports it again and fails the way a fresh interpreter does
            errors.append(f"{module}: {exc!r}")
    sys.path[:] = base_path

    def send(doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode() + b"\n"
        while data:
            data = data[os.write(replies, data) :]

    send({"ready": True, "threads": len(os.listdir("/proc/self/task")), "errors": errors})
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ, None)
    children: dict[int, int] = {}  # pidfd -> pid
    buffer, reading = b"", True
    while reading or children:
        for key, _ in selector.select():
            if key.data is None:
                chunk = os.read(requests, 65536)
                if not chunk:
                    reading = False
                    selector.unregister(requests)
                    continue
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        send({"id": request["id"], "error": f"fork failed: {exc}"})
                        continue
                    if pid == 0:
                        _child(request, [requests, replies, null, selector, *children])
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = pid
                    selector.register(pidfd, selectors.EVENT_READ, pid)
                    send({"id": request["id"], "pid": pid, "program": request["program"]})
            else:
                selector.unregister(key.fd)
                pid = children.pop(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _child(request: dict[str, Any], inherited: list[Any]) -> None:
    """Become the job (module docstring); never returns."""
    code = 1
    try:
        os.setsid()
        for item in inherited:
            with contextlib.suppress(OSError):
                item.close() if isinstance(item, selectors.BaseSelector) else os.close(item)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        program = request["program"]
        sys.argv[:] = [program]
        sys.path[0:0] = [os.path.dirname(os.path.abspath(program))]
        code = 0
        try:
            runpy.run_path(program, run_name="__main__")
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:  # as the interpreter does: end by the signal
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            code = 1
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
