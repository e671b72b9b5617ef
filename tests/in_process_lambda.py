"""Handlers run as plain Python in the test process, under moto's `mock_aws` (`InProcessLambda`).

The same `invoke`/`invoke_async` as the local runtime's `LambdaRuntime`, for tests of the functions
and the state machine that need no processes and no timeout enforcement. During an invocation
`os.environ` holds the function's environment, so this lives with the tests: the local runtime
itself never touches the process environment (its functions run in worker processes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from modelops_local.lambda_runtime import (
    EVENT,
    REQUEST_RESPONSE,
    UNHANDLED,
    FunctionSpec,
    InvocationResult,
    LambdaRuntimeError,
    LambdaThrottledError,
    UnknownFunctionError,
    function_name_of,
)


class InProcessContext:
    """The Lambda context for handlers run in-process."""

    def __init__(self, spec: FunctionSpec, request_id: str) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group or f"/aws/lambda/{spec.name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = time.time() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class InProcessLambda:
    """Runs handlers as Python in this process (for tests under moto's `mock_aws`).

    Each function's module is imported once under a unique module name with its code folder and
    layers on `sys.path`. During an invocation `os.environ` holds the function's environment (set
    and restored under one re-entrant lock, so in-process invocations run one at a time). Timeouts
    are not enforced. `overrides` replaces a function's handler (by name or logical id) with a
    callable, for tests that need a fake.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[str, Callable[[Any, Any], Any]] | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self._specs: dict[str, FunctionSpec] = {}
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._overrides = dict(overrides or {})
        self._env_lock = threading.RLock()
        self._lock_timeout = lock_timeout
        self._async = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lambda-inproc")
        self.invocations: list[tuple[str, Any]] = []

    def register(self, spec: FunctionSpec) -> None:
        """Make `spec` invocable (its module is imported on first use)."""
        self._specs[spec.name] = spec
        self._handlers.pop(spec.name, None)

    def spec(self, function: str) -> FunctionSpec:
        name = function_name_of(function)
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownFunctionError(
                f"function {name!r} is not registered with the in-process runtime"
            ) from None

    def handler(self, function: str) -> Callable[[Any, Any], Any]:
        """The handler callable (imported on first use)."""
        spec = self.spec(function)
        if spec.name not in self._handlers:
            override = self._overrides.get(spec.name) or self._overrides.get(spec.logical_id)
            self._handlers[spec.name] = override or self._import(spec)
        return self._handlers[spec.name]

    def module(self, function: str) -> Any:
        """The imported handler module (to monkeypatch collaborators in tests)."""
        handler = self.handler(function)
        return sys.modules[handler.__module__]

    @staticmethod
    def _import(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_path, _, attribute = spec.handler.rpartition(".")
        source = spec.code_dir / (module_path.replace(".", "/") + ".py")
        module_name = (
            f"_lambda_{spec.name.replace('-', '_')}_{module_path.replace('/', '_').replace('.', '_')}"
        )
        for directory in reversed([spec.code_dir, *spec.layer_dirs]):
            if str(directory) not in sys.path:
                sys.path.insert(0, str(directory))
        loader_spec = importlib.util.spec_from_file_location(module_name, source)
        if loader_spec is None or loader_spec.loader is None:
            raise LambdaRuntimeError(f"function {spec.name}: cannot import {source}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
        try:
            handler: Callable[[Any, Any], Any] = getattr(module, attribute)
            return handler
        except AttributeError:
            raise LambdaRuntimeError(
                f"Handler '{attribute}' missing on module '{module_path}' ({source})"
            ) from None

    @contextlib.contextmanager
    def _environment(self, spec: FunctionSpec) -> Iterator[None]:
        if not self._env_lock.acquire(timeout=self._lock_timeout):
            raise LambdaThrottledError(
                f"function {spec.name}: another in-process invocation held the runtime too long"
            )
        wanted = {**spec.environment, "AWS_LAMBDA_FUNCTION_NAME": spec.name}
        saved = {key: os.environ.get(key) for key in wanted}
        try:
            os.environ.update(wanted)
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._env_lock.release()

    def invoke(
        self, function: str, payload: bytes | str | None, *, invocation_type: str = REQUEST_RESPONSE
    ) -> InvocationResult:
        """Call the handler and return what Lambda's Invoke would."""
        spec = self.spec(function)
        handler = self.handler(function)
        body = payload.encode() if isinstance(payload, str) else payload or b""
        event = json.loads(body) if body else {}
        request_id = str(uuid.uuid4())
        self.invocations.append((spec.name, event))
        started = time.monotonic()
        with self._environment(spec):
            try:
                result = handler(event, InProcessContext(spec, request_id))
                payload_out, error = json.dumps(result).encode(), None
            except Exception as exc:
                document = {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": request_id,
                    "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
                }
                payload_out, error = json.dumps(document).encode(), UNHANDLED
        return InvocationResult(payload_out, error, request_id, time.monotonic() - started)

    def invoke_async(self, function: str, payload: bytes | str | None) -> Future[InvocationResult]:
        """Queue an `Event` invocation on a background thread."""
        self.spec(function)
        return self._async.submit(self.invoke, function, payload, invocation_type=EVENT)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the background threads (running handlers finish)."""
        self._async.shutdown(wait=False, cancel_futures=True)
