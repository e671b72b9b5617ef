"""What kube-proxy and the endpoints controller would do locally: a port per Service.

    proxies = ServiceProxies(store).start()
    proxies.url("models", "churn")          # "http://127.0.0.1:PORT": balances per request
    proxies.endpoints("models", "churn")    # [(pod name, "127.0.0.1", port), ...]
    api_server.service_backend = proxies.backend
    proxies.stop()

Every port of every Service (selector-based; ExternalName and selector-less Services have no
endpoints) gets a listener on 127.0.0.1 (an ephemeral port, or the one `ports` fixes). Each request
goes to the next endpoint round robin, so traffic splits by ready pods, as kube-proxy's per-
connection balancing does on average (here it is per request, so keep-alive clients split too).
Endpoints are computed from the store when a request arrives: pods in the Service's namespace that
match its selector, are Ready, are not terminating and have the target port bound (the kubelet
records its processes' ports in the pod annotation `local.modelops.io/host-ports`). A pod that is
marked for deletion stops getting requests at the moment the deletion is stored. When connecting
to the chosen endpoint fails (nothing sent yet) the next one is tried; no endpoint at all is a 503
naming the Service.

A Service that an HTTPRoute names as its parent (Gateway API's mesh pattern, GAMMA: `parentRefs:
[{group: "", kind: Service, name: <service>}]`) is routed by that route instead, as a mesh's
sidecar routes it: the request's path picks the rule (an Exact path match first, then the longest
PathPrefix; a rule with header, query or method matches never matches here: nothing in modelops
writes one), the rule's backendRefs are chosen by weight with smooth weighted round robin
(deterministic: weights 90/10 send exactly 10 of every 100 requests to the second backend; the
sequence restarts when the weights change), then the chosen backend Service's ready endpoints in
turn. No rule matching is a 404; a rule whose weights are all 0 a 500; a chosen backend without
ready endpoints a 503 (an Envoy-based mesh's "no healthy upstream"). The API server's service
proxy (`backend`) is not meshed and keeps to the Service's own endpoints.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelops_local.kube.errors import NotFoundError
from modelops_local.kube.kubelet import HOST_PORTS_ANNOTATION, POD_IP
from modelops_local.kube.resources import HTTPROUTES, PODS, SERVICES
from modelops_local.kube.selectors import LabelSelector, Requirement
from modelops_local.kube.store import KubeStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Endpoint = tuple[str, str, int]  # (pod name, host, port)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
MAX_BODY_BYTES = 64 * 1024 * 1024


class ServicePortError(RuntimeError):
    """A Service's local port could not be bound (the message names the Service and the port)."""


class UnknownServicePortError(LookupError):
    """The Service does not exist or has no such port."""


def service_selector(service: Mapping[str, Any]) -> LabelSelector | None:
    """The Service's pod selector; None when it has none (no endpoints are managed then)."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return None
    return LabelSelector(tuple(Requirement(str(k), "=", (str(v),)) for k, v in sorted(selector.items())))


def find_service_port(service: Mapping[str, Any], port: int | str | None) -> Obj:
    """The entry of spec.ports that `port` names (number or name; None: the first)."""
    ports = (service.get("spec") or {}).get("ports") or []
    meta = service.get("metadata") or {}
    if not ports:
        raise UnknownServicePortError(f"Service {meta.get('namespace')}/{meta.get('name')} has no ports")
    if port is None or port == "":
        return dict(ports[0])
    for entry in ports:
        if str(entry.get("port")) == str(port) or (entry.get("name") and entry.get("name") == port):
            return dict(entry)
    names = [e.get("name") or e.get("port") for e in ports]
    raise UnknownServicePortError(
        f"Service {meta.get('namespace')}/{meta.get('name')} has no port {port!r} (ports: {names})"
    )


def pod_target_port(pod: Mapping[str, Any], target: int | str) -> int | None:
    """The local port where `pod` serves `target` (a container port number or name), or None."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(HOST_PORTS_ANNOTATION)
    if not annotation:
        return None
    try:
        bound = {str(k): int(v) for k, v in json.loads(annotation).items()}
    except (ValueError, TypeError, AttributeError):
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    number = int(target) if isinstance(target, int) or str(target).isdigit() else None
    for container in containers:
        for entry in container.get("ports") or []:
            if (number is not None and entry.get("containerPort") == number) or (
                number is None and entry.get("name") == target
            ):
                return bound.get(str(container.get("name")))
    if number is not None and len(bound) == 1:
        return next(iter(bound.values()))  # an undeclared port of a one-process pod
    return None


def endpoints_for(
    service: Mapping[str, Any], pods: list[Obj], port: int | str | None = None
) -> list[Endpoint]:
    """The ready endpoints of one Service port among `pods`, sorted by pod name."""
    selector = service_selector(service)
    if selector is None:
        return []
    entry = find_service_port(service, port)
    target: int | str = entry.get("targetPort", entry.get("port")) or 0
    namespace = (service.get("metadata") or {}).get("namespace")
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != namespace or meta.get("deletionTimestamp"):
            continue
        if not selector.matches(meta.get("labels")):
            continue
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if not ready or not status.get("podIP"):
            continue
        bound = pod_target_port(pod, target)
        if bound is not None:
            found.append((str(meta["name"]), POD_IP, bound))
    return sorted(found)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxies: ServiceProxies, key: tuple[str, str, int], address: tuple[str, int]) -> None:
        self.proxies = proxies
        self.key = key
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _ProxyHandler)
        self.thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"svc-{key[0]}-{key[1]}-{key[2]}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self, timeout: float) -> None:
        self.shutdown()
        self.server_close()
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "modelops-local-service"
    timeout = 120  # idle keep-alive connections
    server: _Listener

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _proxy(self) -> None:
        namespace, name, port = self.server.key
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._reply(400, f"bad request body: {exc}")
            return
        proxies = self.server.proxies
        key = self.server.key
        try:
            routed = proxies.route_backend(namespace, name, port, self.path)
        except RouteError as exc:
            self._reply(exc.status, str(exc))
            return
        if routed is not None:
            key = (namespace, routed[0], routed[1])
        try:
            endpoints = proxies.endpoints(*key)
        except (NotFoundError, UnknownServicePortError) as exc:
            # a route's backendRef to no such Service is an invalid backend: 500 (Gateway API)
            self._reply(503 if routed is None else 500, f"service {key[0]}/{key[1]} port {key[2]}: {exc}")
            return
        if not endpoints:
            self._reply(503, f'no endpoints available for service "{key[0]}/{key[1]}" (no ready pods)')
            return
        failures = []
        for pod, host, backend_port in proxies._rotation(key, endpoints):
            connection = http.client.HTTPConnection(host, backend_port, timeout=proxies.connect_timeout)
            try:
                connection.connect()
            except OSError as exc:
                failures.append(f"{pod} ({host}:{backend_port}): {exc}")
                connection.close()
                continue
            try:
                self._exchange(connection, body)
            finally:
                connection.close()
            return
        self._reply(
            503, f'no endpoint of service "{namespace}/{name}" could be reached: {"; ".join(failures)}'
        )

    def _exchange(self, connection: http.client.HTTPConnection, body: bytes) -> None:
        assert connection.sock is not None
        connection.sock.settimeout(self.server.proxies.request_timeout)
        try:
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    connection.putheader(key, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._reply(502, f"the endpoint failed during the request: {type(exc).__name__}: {exc}")
            return
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, message: str) -> None:
        data = (json.dumps({"error": message}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class RouteError(RuntimeError):
    """An HTTPRoute fronting the Service cannot route this request (`status`: 404 or 500)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _fronts(route: Mapping[str, Any], namespace: str, service: str, port: int) -> bool:
    """Whether `route` names the Service (port) as a parent (GAMMA)."""
    for parent in (route.get("spec") or {}).get("parentRefs") or []:
        if (
            parent.get("kind") == "Service"
            and parent.get("group", "") in ("", "core")
            and parent.get("name") == service
            and parent.get("namespace", namespace) == namespace
            and parent.get("port", port) == port
        ):
            return True
    return False


def _match_rank(match: Mapping[str, Any], path: str) -> tuple[int, int] | None:
    """How specifically a path-only match matches `path` (Exact above any prefix, longer prefixes
    above shorter), or None."""
    if set(match) - {"path"}:
        return None  # header, query or method conditions: not evaluated locally
    rule = match.get("path") or {"type": "PathPrefix", "value": "/"}
    value = str(rule.get("value", "/"))
    if rule.get("type", "PathPrefix") == "Exact":
        return (2, len(value)) if path == value else None
    if rule.get("type", "PathPrefix") != "PathPrefix":
        return None
    prefix = value.rstrip("/")
    if path == prefix or path.startswith(prefix + "/") or not prefix:
        return (1, len(prefix))
    return None


def route_rule(route: Mapping[str, Any], path: str) -> int | None:
    """The index of the rule that routes `path` (the most specific match), or None."""
    best: tuple[tuple[int, int], int] | None = None
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        for match in rule.get("matches") or [{}]:
            rank = _match_rank(match, path)
            if rank is not None and (best is None or rank > best[0]):
                best = (rank, index)
    return None if best is None else best[1]


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: each pick adds every weight to its backend's current
    value, takes the largest and subtracts the total from it. Deterministic and evenly spread:
    weights 3/1 pick A, A, B, A, then again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[Any, tuple[tuple[tuple[str, int], ...], dict[str, int]]] = {}

    def pick(self, key: Any, weights: list[tuple[str, int]]) -> str | None:
        """The next backend among `weights` [(backend, weight)]; None when every weight is 0."""
        live = tuple((name, weight) for name, weight in weights if weight > 0)
        if not live:
            return None
        total = sum(weight for _, weight in live)
        with self._lock:
            signature, current = self._state.get(key, ((), {}))
            if signature != live:  # new or reweighed: the sequence starts over
                current = {name: 0 for name, _ in live}
            for name, weight in live:
                current[name] += weight
            chosen = max(live, key=lambda entry: current[entry[0]])[0]
            current[chosen] -= total
            self._state[key] = (live, current)
        return chosen


class ServiceProxies:
    """A local port per Service port, balancing per request over ready pods (module docstring).

    `ports` fixes host ports: {"namespace/name": port} for a Service's first port, or
    {"namespace/name:port": port} by service port number or name; everything else is ephemeral.
    """

    def __init__(
        self,
        store: KubeStore,
        *,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        resync_seconds: float = 0.25,
        connect_timeout: float = 2.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.host = host
        self.fixed_ports = dict(ports or {})
        self.resync_seconds = resync_seconds
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._lock = threading.RLock()
        self._listeners: dict[tuple[str, str, int], _Listener] = {}
        self._errors: dict[tuple[str, str, int], ServicePortError] = {}
        self._counters: dict[tuple[str, str, int], int] = {}
        self._weighted = SmoothWeightedRoundRobin()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServiceProxies:
        """Bind listeners for the Services there are and follow changes; returns at once."""
        if self._thread is not None:
            raise RuntimeError("ServiceProxies already started")
        self._stopping.clear()
        self._unsubscribe = self.store.subscribe(self._on_change)
        self.sync()
        self._thread = threading.Thread(target=self._loop, name="service-proxies", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every listener and client connection; joins the threads within `timeout`."""
        self._stopping.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener.close(timeout)

    def __enter__(self) -> ServiceProxies:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- queries --------------------------------------------------------------------------------

    def url(self, namespace: str, name: str, port: int | str | None = None) -> str:
        """ "http://127.0.0.1:PORT" of the Service port (None: its first port). ServicePortError when
        that port could not be bound; UnknownServicePortError / NotFoundError when there is none."""
        key = self._key(namespace, name, port)
        with self._lock:
            if key not in self._listeners and key not in self._errors:
                self.sync()
            if key in self._errors:
                raise self._errors[key]
            listener = self._listeners.get(key)
        if listener is None:
            raise UnknownServicePortError(f"Service {namespace}/{name} port {key[2]} has no local port")
        return f"http://{self.host}:{listener.port}"

    def endpoints(self, namespace: str, name: str, port: int | str | None = None) -> list[Endpoint]:
        """The Service port's ready endpoints now: [(pod name, host, port)], sorted by pod name."""
        service = self.store.get(SERVICES, namespace, name)
        selector = (service.get("spec") or {}).get("selector") or {}
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None
        pods = self.store.list(PODS, namespace, label_selector=label_selector) if selector else []
        return endpoints_for(service, pods, port)

    def route_backend(self, namespace: str, name: str, port: int, path: str) -> tuple[str, int] | None:
        """(backend Service, port) an HTTPRoute fronting the Service picks for `path` by weight;
        None when no HTTPRoute fronts it. RouteError when one does but cannot route the request."""
        routes = [r for r in self.store.list(HTTPROUTES, namespace) if _fronts(r, namespace, name, port)]
        if not routes:
            return None
        route = routes[0]  # the oldest would win on a mesh; one route per Service is the norm
        path = path.split("?", 1)[0] or "/"
        where = f"HTTPRoute {namespace}/{route['metadata']['name']}"
        index = route_rule(route, path)
        if index is None:
            raise RouteError(404, f"{where}: no rule matches {path}")
        refs = [
            ref
            for ref in route["spec"]["rules"][index].get("backendRefs") or []
            if ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")
        ]
        ports = {str(ref["name"]): int(ref.get("port") or port) for ref in refs}
        chosen = self._weighted.pick(
            (namespace, route["metadata"]["name"], index),
            [(str(ref["name"]), int(ref.get("weight", 1))) for ref in refs],
        )
        if chosen is None:
            raise RouteError(500, f"{where}: every backendRef of rule {index} has weight 0")
        return chosen, ports[chosen]

    def backend(self, namespace: str, name: str, port: str | None) -> tuple[str, int] | None:
        """A `KubeApiServer.service_backend`: the next ready endpoint (round robin) of the Service
        port the proxy URL names, as (host, port); None when it has none."""
        try:
            key = self._key(namespace, name, port)
            endpoints = self.endpoints(namespace, name, key[2])
        except (NotFoundError, UnknownServicePortError):
            return None
        if not endpoints:
            return None
        _, host, backend_port = self._rotation(key, endpoints)[0]
        return host, backend_port

    # --- internals ------------------------------------------------------------------------------

    def _key(self, namespace: str, name: str, port: int | str | None) -> tuple[str, str, int]:
        service = self.store.get(SERVICES, namespace, name)
        return (namespace, name, int(find_service_port(service, port)["port"]))

    def _rotation(self, key: tuple[str, str, int], endpoints: list[Endpoint]) -> list[Endpoint]:
        """`endpoints` starting at this Service port's next round-robin position."""
        with self._lock:
            position = self._counters.get(key, 0)
            self._counters[key] = position + 1
        start = position % len(endpoints)
        return endpoints[start:] + endpoints[:start]

    def _on_change(self, _type: str, obj: Obj) -> None:
        if obj.get("kind") in ("Service", "Namespace"):
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.resync_seconds * 4)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.sync()
            except Exception:
                log.exception("service proxies: sync failed")

    def _fixed_port(self, namespace: str, name: str, entry: Obj, first: bool) -> int:
        for key in (f"{namespace}/{name}:{entry.get('port')}", f"{namespace}/{name}:{entry.get('name')}"):
            if key in self.fixed_ports:
                return int(self.fixed_ports[key])
        if first and f"{namespace}/{name}" in self.fixed_ports:
            return int(self.fixed_ports[f"{namespace}/{name}"])
        return 0

    def sync(self) -> None:
        """Bind listeners for new Service ports and close those of removed ones."""
        with self._lock:
            if self._stopping.is_set():
                return
            wanted: dict[tuple[str, str, int], int] = {}
            for service in self.store.list(SERVICES):
                meta, spec = service["metadata"], service.get("spec") or {}
                if spec.get("type") == "ExternalName":
                    continue
                for index, entry in enumerate(spec.get("ports") or []):
                    if entry.get("protocol", "TCP") != "TCP" or "port" not in entry:
                        continue
                    key = (meta["namespace"], meta["name"], int(entry["port"]))
                    wanted[key] = self._fixed_port(meta["namespace"], meta["name"], entry, index == 0)
            for key in [k for k in self._listeners if k not in wanted]:
                self._listeners.pop(key).close(2.0)
                self._counters.pop(key, None)
            for key in [k for k in self._errors if k not in wanted]:
                del self._errors[key]
            for key, host_port in wanted.items():
                if key in self._listeners or key in self._errors:
                    continue
                try:
                    listener = _Listener(self, key, (self.host, host_port))
                except OSError as exc:
                    error = ServicePortError(
                        f"cannot bind {self.host}:{host_port} for Service {key[0]}/{key[1]} port {key[2]}: {exc}"
                    )
                    log.error("%s", error)
                    self._errors[key] = error
                    continue
                listener.thread.start()
                self._listeners[key] = listener
                log.info(
                    "Service %s/%s port %s: http://%s:%s", key[0], key[1], key[2], self.host, listener.port
                )
