"""The child process of the local Lambda runtime: one function, imported once, invoked many times.

Started as `python -m modelops_local.lambda_worker <request_fd> <reply_fd>` with the function's
environment. It speaks newline-delimited JSON over the two pipe descriptors (never over stdout or
stderr, which belong to the function's log), like the Lambda runtime API:

    parent -> {"type": "init", "code_dir": ..., "layer_dirs": [...], "handler": "app.handler",
               "function_name": ..., "function_arn": ..., "memory_mb": 512, "log_group": ...,
               "log_stream": ...}
    child  -> {"type": "ready", "init_duration": seconds} | {"type": "init_error", "error": {...}}
    parent -> {"type": "invoke", "request_id": ..., "payload": "<json text>", "deadline": epoch}
    child  -> {"type": "started"}, then
              {"type": "result", "payload": "<json text>"} | {"type": "error", "error": {...}}

An `error` is Lambda's error document: errorMessage, errorType, stackTrace. The worker exits when
the request pipe closes or its parent goes away.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from typing import Any


class LambdaContext:
    """The context object handed to the handler, with what powertools and most code read."""

    def __init__(self, init: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name: str = init["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = init["function_arn"]
        self.memory_limit_in_mb: int = int(init["memory_mb"])
        self.aws_request_id = request_id
        self.log_group_name: str = init["log_group"]
        self.log_stream_name: str = init["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out (never negative)."""
        return max(0, int((self._deadline - time.time()) * 1000))


def error_document(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """The Lambda error payload for an exception raised by function code."""
    frames = traceback.format_list(
        [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
    )
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": frames,
    }


def load_handler(handler: str) -> Any:
    """Import `module.function` (module may be a path like `pkg/mod`) as the Python runtime does.

    Failures raise `_RuntimeFault` carrying the runtime's error type (Runtime.ImportModuleError,
    Runtime.HandlerNotFound, Runtime.MalformedHandlerName, Runtime.UserCodeSyntaxError); any other
    exception raised while the module initialises propagates unchanged.
    """
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        raise _RuntimeFault(
            "Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack"
        )
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _RuntimeFault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise _RuntimeFault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise _RuntimeFault(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        ) from None


class _RuntimeFault(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class _Channel:
    def __init__(self, request_fd: int, reply_fd: int) -> None:
        self._requests = os.fdopen(request_fd, "r", encoding="utf-8")
        self._replies = os.fdopen(reply_fd, "w", encoding="utf-8")

    def receive(self) -> dict[str, Any] | None:
        line = self._requests.readline()
        return json.loads(line) if line else None

    def send(self, message: dict[str, Any]) -> None:
        self._replies.write(json.dumps(message) + "\n")
        self._replies.flush()


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent is gone (re-parented), so a killed runtime leaves no workers behind."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(0.5)


def _invoke(handler: Any, init: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    request_id = message["request_id"]
    context = LambdaContext(init, request_id, float(message["deadline"]))
    print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
    started = time.perf_counter()
    reply: dict[str, Any]
    try:
        event = json.loads(message["payload"]) if message["payload"] else {}
        result = handler(event, context)
        try:
            # Strict JSON: NaN or Infinity is not JSON, and Step Functions refuses a payload with it
            # (the state fails there); refuse it here, naming it, instead of passing it on.
            reply = {"type": "result", "payload": json.dumps(result, allow_nan=False)}
        except (TypeError, ValueError) as exc:
            why = f"{exc} (NaN or Infinity: a missing value must be null)" if "float" in str(exc) else exc
            reply = {
                "type": "error",
                "error": error_document(exc, "Runtime.MarshalError")
                | {"errorMessage": f"Unable to marshal response: {why}"},
            }
    except Exception as exc:
        document = error_document(exc)
        document["requestId"] = request_id
        print(f"[ERROR] {document['errorType']}: {exc}", file=sys.stderr)
        traceback.print_exc()
        sys.stderr.flush()
        reply = {"type": "error", "error": document}
    duration_ms = (time.perf_counter() - started) * 1000
    print(f"END RequestId: {request_id}", flush=True)
    print(
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Memory Size: {init['memory_mb']} MB",
        flush=True,
    )
    return reply


def main(argv: list[str]) -> int:
    """Serve invocations for one function until the request pipe closes."""
    channel = _Channel(int(argv[1]), int(argv[2]))
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    init = channel.receive()
    if init is None or init.get("type") != "init":
        return 2
    sys.path[:0] = [init["code_dir"], *init["layer_dirs"]]
    os.chdir(init["code_dir"])
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    started = time.perf_counter()
    try:
        handler = load_handler(init["handler"])
    except _RuntimeFault as fault:
        print(f"[ERROR] {fault.error_type}: {fault}", file=sys.stderr, flush=True)
        channel.send({"type": "init_error", "error": error_document(fault, fault.error_type)})
        return 1
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        channel.send({"type": "init_error", "error": error_document(exc)})
        return 1
    channel.send({"type": "ready", "init_duration": time.perf_counter() - started})
    while (message := channel.receive()) is not None:
        if message.get("type") == "invoke":
            channel.send({"type": "started"})  # the handler is about to run: no safe retry from here
            channel.send(_invoke(handler, init, message))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
