"""Emulated AWS in this process: moto's server on 127.0.0.1 plus the clients that talk to it.

`LocalAws` serves moto's WSGI application (the one `moto.server.ThreadedMotoServer` serves) on a
background thread, bound in the caller's thread so that a busy port is a `PortInUseError`, not a
hang. It configures moto for what the local runtime needs (Step Functions executes state machines,
Lambda without Docker, AWS managed IAM policies loaded) and tells moto its port (`MotoPatches.server_port`),
which moto's Step Functions interpreter uses to call back into the server. The process environment
is left alone: clients get the endpoint explicitly (`client()`, `function_environment()`).

`InProcessAws` offers the same `client()` for code running under `moto.mock_aws` (no server).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

import boto3
from botocore.config import Config

from modelops_local.moto_patches import MotoPatches

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account for any access key
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"

MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "iam": {"load_aws_managed_policies": True},
}

_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=120,
    retries={"mode": "standard", "max_attempts": 2},
)


class AwsServerError(Exception):
    """The embedded AWS endpoint could not start or be configured."""


class PortInUseError(AwsServerError):
    """The requested fixed port is taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"cannot serve the local AWS endpoint on {host}:{port}: the port is in use "
            "(choose another port, or port 0 for any free one)"
        )
        self.port = port


class AwsClients(Protocol):
    """Something that hands out boto3 clients for the emulated account."""

    region: str
    account_id: str

    def client(self, service: str) -> Any: ...


def _boto_client(service: str, region: str, endpoint_url: str | None) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region
    )
    return session.client(service, endpoint_url=endpoint_url, config=_CLIENT_CONFIG)


class LocalAws:
    """moto's server in this process; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_other_port: bool = False,
        moto_config: Mapping[str, Any] | None = None,
        region: str = REGION,
        fresh: bool = True,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.allow_other_port = allow_other_port
        self.moto_config = {**MOTO_CONFIG, **(moto_config or {})}
        self.region = region
        self.account_id = ACCOUNT_ID
        self.fresh = fresh
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._port_patch = MotoPatches()
        self._previous_config: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalAws:
        """Bind, serve on a daemon thread, configure moto (its port included). Returns self."""
        if self._server is not None:
            return self
        self._server = self._bind(self.requested_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="moto-server", daemon=True
        )
        self._thread.start()
        self._port_patch.server_port(self.port)
        self._apply_moto_config()
        if self.fresh:
            self.reset()  # moto's state is per process: start from an empty account
        return self

    def _apply_moto_config(self) -> None:
        """Set moto's configuration in-process (the server's /moto-api/config ignores `iam`)."""
        from moto.core.config import default_user_config

        self._previous_config = {key: copy.deepcopy(default_user_config.get(key)) for key in self.moto_config}
        for key, value in self.moto_config.items():
            default_user_config[key] = copy.deepcopy(value)  # type: ignore[literal-required]

    def _restore_moto_config(self) -> None:
        from moto.core.config import default_user_config

        for key, value in self._previous_config.items():
            if value is None:
                default_user_config.pop(key, None)  # type: ignore[misc]
            else:
                default_user_config[key] = value  # type: ignore[literal-required]
        self._previous_config = {}

    def _bind(self, port: int) -> Any:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        try:
            return make_server(self.host, port, app, threaded=True, request_handler=_quiet_handler())
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE and "in use" not in str(exc).lower():
                raise AwsServerError(
                    f"cannot serve the local AWS endpoint on {self.host}:{port}: {exc}"
                ) from exc
            if port != 0 and self.allow_other_port:
                return make_server(self.host, 0, app, threaded=True, request_handler=_quiet_handler())
            raise PortInUseError(self.host, port) from exc
        except SystemExit as exc:  # werkzeug exits on a busy port instead of raising in some versions
            if port != 0 and self.allow_other_port:
                return make_server(self.host, 0, app, threaded=True, request_handler=_quiet_handler())
            raise PortInUseError(self.host, port) from exc

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (bounded by `timeout`) and restore moto's configuration."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        with contextlib.suppress(OSError):
            server.server_close()
        if thread is not None:
            thread.join(max(0.0, timeout))
        self._restore_moto_config()
        self._port_patch.undo()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ access
    @property
    def port(self) -> int:
        if self._server is None:
            raise AwsServerError("the local AWS endpoint is not running (call start())")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, service: str) -> Any:
        """A boto3 client for `service` against this endpoint (dummy credentials, one per service)."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = _boto_client(service, self.region, self.endpoint_url)
            return self._clients[service]

    def function_environment(self) -> dict[str, str]:
        """The variables that point functions (and any boto3 code) at this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def reset(self) -> None:
        """Forget every emulated resource (moto's reset)."""
        self._post("/moto-api/reset", {})

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        # moto's reset walks every backend of every region: under a loaded machine it has been seen
        # to pass 10 s, so the admin calls get a minute (still bounded).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            self.endpoint_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with opener.open(request, timeout=60) as response:
                text = response.read().decode() or "null"
        except OSError as exc:
            raise AwsServerError(f"POST {path} to the local AWS endpoint failed: {exc}") from exc
        try:
            return json.loads(text)
        except ValueError:
            return text


class InProcessAws:
    """Clients for code under `moto.mock_aws` (requests never leave the process)."""

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self.account_id = ACCOUNT_ID
        self.endpoint_url: str | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        """A boto3 client with dummy credentials (moto intercepts it), one per service."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = _boto_client(service, self.region, None)
            return self._clients[service]


def _quiet_handler() -> Any:
    """moto's request handler without one log line per request."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietMotoRequestHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return QuietMotoRequestHandler
