"""The HTTP(S) front of the Kubernetes API stand-in, for the official clients.

`KubeApiServer(store, authenticate, authorize).start()` serves the store on 127.0.0.1 (an ephemeral
port) over TLS with a throwaway CA (`ca_pem`). Every request except /healthz, /livez and /readyz
needs `Authorization: Bearer <token>`: `authenticate(token)` returns a user name or None (401);
`authorize(user, verb, resource, namespace, name)` returns whether RBAC would allow it (403
otherwise, worded like the RBAC authorizer); `name` is what RBAC's resourceNames match, as the API
server takes it: the path's name segment as written (a proxy's `service:port` included), for a
list the value of a `metadata.name` field selector, else None. Errors are `kind: Status` bodies.
Watches are not served (nothing in modelops watches): `?watch=true` is a 405.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from modelops_local.kube import errors
from modelops_local.kube.errors import BadRequestError, KubeApiError, UnauthorizedError
from modelops_local.kube.faults import Fault, FaultInjector
from modelops_local.kube.patch import check_patch_content_type
from modelops_local.kube.proxy import ServiceBackend, forward
from modelops_local.kube.resources import SERVICES, UnknownResourceError
from modelops_local.kube.routes import Route, discovery_document, parse_path, split_proxy_name
from modelops_local.kube.selectors import parse_field_selector
from modelops_local.kube.store import KubeStore
from modelops_local.kube.tls import ServingCertificate, make_serving_certificate

log = logging.getLogger(__name__)

Authenticate = Callable[[str], "str | None"]
Authorize = Callable[[str, str, str, "str | None", "str | None"], bool]

MAX_BODY_BYTES = 3 * 1024 * 1024
IDLE_CONNECTION_SECONDS = 120


class KubeApiServer:
    """A Kubernetes API server for `store` (see the module docstring)."""

    def __init__(
        self,
        store: KubeStore,
        authenticate: Authenticate | None = None,
        authorize: Authorize | None = None,
        *,
        tls: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.store = store
        self.authenticate = authenticate  # None: every request is "system:anonymous"
        self.authorize = authorize  # None: allow everything
        self.service_backend: ServiceBackend | None = None
        self.faults = FaultInjector()
        self.requests: deque[tuple[str, str, int, str]] = deque(maxlen=1000)  # (method, path, status, user)
        self.host = host
        self._certificate: ServingCertificate | None = (
            make_serving_certificate((host, "localhost")) if tls else None
        )
        self._ssl = self._certificate.server_context() if self._certificate else None
        self._httpd: _HttpServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> KubeApiServer:
        """Bind an ephemeral port and serve in background threads; returns at once."""
        if self._httpd is not None:
            raise RuntimeError("KubeApiServer already started")
        self._stopping.clear()
        self._httpd = _HttpServer(self)
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="kube-api", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close connections and join the threads (within `timeout`)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._connections_lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in [self._serve_thread, *threads]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("KubeApiServer not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """ "https://127.0.0.1:PORT" (http:// when started with tls=False)."""
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        """PEM of the CA that signed the serving certificate (SANs: the host and localhost)."""
        if self._certificate is None:
            raise RuntimeError("KubeApiServer was started without TLS")
        return self._certificate.ca_pem

    # --- connection bookkeeping (called from the HTTP server) ------------------------------------------

    def _track(self, connection: socket.socket | None, thread: threading.Thread | None, add: bool) -> None:
        with self._connections_lock:
            if connection is not None:
                (self._connections.add if add else self._connections.discard)(connection)
            if thread is not None:
                (self._threads.add if add else self._threads.discard)(thread)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: KubeApiServer) -> None:
        self.api = api
        super().__init__((api.host, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True)
        self.api._track(None, thread, add=True)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        connection = request
        try:
            if self.api._ssl is not None:
                request.settimeout(10)
                try:
                    connection = self.api._ssl.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
            self.api._track(connection, None, add=True)
            self.finish_request(connection, client_address)
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError) as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            self.api._track(connection, threading.current_thread(), add=False)
            self.shutdown_request(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "modelops-local-kube"
    timeout = IDLE_CONNECTION_SECONDS
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- request handling ---------------------------------------------------------------------------

    @property
    def api(self) -> KubeApiServer:
        return self.server.api

    def _handle(self, method: str) -> None:
        self._user = "-"
        self._status = 0
        parts = urlsplit(self.path)
        self._query = parse_qs(parts.query, keep_blank_values=True)
        try:
            self._body = self._read_body()
            route = parse_path(parts.path)
            if route.kind == "health":
                self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
                return
            self._user = self._authenticate()
            if route.kind == "discovery":
                self._send_json(200, discovery_document(route.discovery, f"{self.api.host}:{self.api.port}"))
                return
            verb = route.verb(method, self._flag("watch"))
            if self._apply_fault(verb, route):
                return
            self._authorize(verb, route)
            if route.subresource == "proxy":
                self._proxy(method, route, parts.query)
            else:
                self._serve_resource(method, verb, route)
        except KubeApiError as exc:
            self._send_error(exc)
        except UnknownResourceError:
            self._send_error(
                errors.NotFoundError("the server could not find the requested resource", details={})
            )
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:
            log.exception("kube API %s %s failed", method, self.path)
            self._send_error(KubeApiError(f"Internal error occurred: {type(exc).__name__}: {exc}"))
        finally:
            self.api.requests.append((method, self.path, self._status, self._user))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise errors.KubeApiError(
                        "the request body is too large", code=413, reason="RequestEntityTooLarge"
                    )
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise errors.KubeApiError(
                "the request body is too large", code=413, reason="RequestEntityTooLarge"
            )
        return self.rfile.read(length) if length else b""

    def _authenticate(self) -> str:
        if self.api.authenticate is None:
            return "system:anonymous"
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("Unauthorized")
        try:
            user = self.api.authenticate(token.strip())
        except Exception:
            log.exception("authenticate() failed")
            user = None
        if not user:
            raise UnauthorizedError("Unauthorized")
        return user

    def _authorize(self, verb: str, route: Route) -> None:
        if self.api.authorize is None:
            return
        assert route.rt is not None
        resource = route.rbac_resource
        if self.api.authorize(self._user, verb, resource, route.namespace, self._rbac_name(verb, route)):
            return
        name = route.name
        if route.subresource == "proxy" and name:
            name = split_proxy_name(name)[1]
        raise errors.forbidden(
            route.rt,
            name,
            user=self._user,
            verb=verb,
            resource=resource,
            group=route.rt.group,
            namespace=route.namespace,
        )

    def _rbac_name(self, verb: str, route: Route) -> str | None:
        """The request's name as RBAC sees it (see the module docstring)."""
        if route.name is not None:
            return route.name
        if verb != "list":
            return None
        assert route.rt is not None
        try:
            selector = parse_field_selector(self._text("fieldSelector"), route.rt.plural)
        except BadRequestError:
            return None  # the request itself answers 400 once authorized by other rules
        names = {value for field, equal, value in selector.terms if field == "metadata.name" and equal}
        return names.pop() if len(names) == 1 else None

    def _apply_fault(self, verb: str, route: Route) -> bool:
        """Play an armed fault; True when it answered (or dropped) the request."""
        name = split_proxy_name(route.name)[1] if route.subresource == "proxy" and route.name else route.name
        fault: Fault | None = self.api.faults.take(verb, route.rbac_resource, route.namespace, name)
        if fault is None:
            return False
        if fault.delay:
            self.api._stopping.wait(fault.delay)
        if fault.on_match is not None:
            fault.on_match()
        if fault.rewrite is not None and self._body:
            self._body = json.dumps(fault.rewrite(json.loads(self._body))).encode()
        if fault.disconnect:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.status is None:
            return False
        error = errors.status_error(fault.status, fault.message)
        headers = []
        if fault.retry_after is not None:
            error.details = {"retryAfterSeconds": fault.retry_after}
            headers.append(("Retry-After", str(fault.retry_after)))
        self._send_error(error, headers)
        return True

    # --- resources ----------------------------------------------------------------------------------

    def _serve_resource(self, method: str, verb: str, route: Route) -> None:
        store, rt = self.api.store, route.rt
        assert rt is not None
        namespace, name, sub = route.namespace, route.name, route.subresource
        warnings: list[str] = []
        write: dict[str, Any] = {
            "dry_run": self._dry_run(),
            "field_validation": self._text("fieldValidation") or "Warn",
            "warnings": warnings,
        }
        if verb == "list":
            body = store.list_object(
                rt,
                namespace,
                label_selector=self._text("labelSelector"),
                field_selector=self._text("fieldSelector"),
                limit=self._int("limit"),
                continue_token=self._text("continue"),
            )
            self._send_json(200, body)
        elif verb == "get":
            self._send_json(200, store.get(rt, namespace, name or "", subresource=sub))
        elif verb == "create":
            created = store.create(self._json_body(), kind=rt, namespace=namespace, **write)
            self._send_json(201, created, warnings)
        elif verb == "update":
            updated = store.update(self._json_body(), sub, kind=rt, namespace=namespace, name=name, **write)
            self._send_json(200, updated, warnings)
        elif verb == "patch":
            content_type = self.headers.get("Content-Type", "")
            check_patch_content_type(content_type)
            patched = store.patch(
                rt, namespace, name or "", self._json_body(any_json=True), content_type, sub, **write
            )
            self._send_json(200, patched, warnings)
        elif verb == "delete":
            options = self._delete_options()
            result = store.delete(rt, namespace, name or "", dry_run=self._dry_run(), **options)
            if not result.deleted or rt.delete_returns_object:  # pending deletions answer with the object
                self._send_json(200, result.object)
            else:
                self._send_json(
                    200, errors.success_status(rt, name or "", result.object["metadata"].get("uid"))
                )
        else:  # pragma: no cover - Route.verb only returns the verbs above
            raise errors.MethodNotAllowedError(
                "the server does not allow this method on the requested resource"
            )

    def _proxy(self, method: str, route: Route, query: str) -> None:
        assert route.namespace is not None and route.name is not None
        scheme, service, port = split_proxy_name(route.name)
        self.api.store.get(SERVICES, route.namespace, service)
        resolver = self.api.service_backend
        backend = resolver(route.namespace, service, port) if resolver is not None else None
        if backend is None:
            raise errors.ServiceUnavailableError(f'no endpoints available for service "{service}"')
        target = route.proxy_path + (f"?{query}" if query else "")
        response = forward(
            method, backend[0], backend[1], target, self.headers.items(), self._body, scheme=scheme or "http"
        )
        self._status = response.status
        self.send_response(response.status)
        for key, value in response.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    # --- request helpers ----------------------------------------------------------------------------

    def _text(self, key: str) -> str | None:
        values = self._query.get(key)
        return values[0] if values else None

    def _int(self, key: str) -> int | None:
        value = self._text(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise BadRequestError(f"{key}: invalid integer {value!r}") from None

    def _flag(self, key: str) -> bool:
        return (self._text(key) or "").lower() in ("true", "1")

    def _dry_run(self) -> bool:
        values = self._query.get("dryRun") or []
        for value in values:
            if value != "All":
                raise BadRequestError(f"Invalid dry run value: {value!r}, supported values: All")
        return bool(values)

    def _json_body(self, *, any_json: bool = False) -> Any:
        if not self._body:
            raise BadRequestError("the request body is empty")
        try:
            parsed = json.loads(self._body)
        except ValueError as exc:
            raise BadRequestError(f"error decoding the request body as JSON: {exc}") from None
        if not any_json and not isinstance(parsed, dict):
            raise BadRequestError("the request body must be a JSON object")
        return parsed

    def _delete_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self._body:
            body = self._json_body()
            options["grace_period_seconds"] = body.get("gracePeriodSeconds")
            options["preconditions"] = body.get("preconditions")
        if self._int("gracePeriodSeconds") is not None:
            options["grace_period_seconds"] = self._int("gracePeriodSeconds")
        return {k: v for k, v in options.items() if v is not None}

    # --- responses ----------------------------------------------------------------------------------

    def _send_json(self, code: int, body: Any, warnings: list[str] | None = None) -> None:
        headers = [
            ("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"') for w in warnings or []
        ]
        self._send_bytes(code, json.dumps(body).encode(), "application/json", headers)

    def _send_error(self, error: KubeApiError, headers: list[tuple[str, str]] | None = None) -> None:
        self._send_bytes(error.code, json.dumps(error.to_status()).encode(), "application/json", headers)

    def _send_bytes(
        self, code: int, data: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self._status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers or []:
            self.send_header(key, value.replace("\r", " ").replace("\n", " "))
        self.end_headers()
        self.wfile.write(data)
