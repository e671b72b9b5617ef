"""The kubelet part of the local controller: every Pod bound to the node runs as local processes.

A container runs `python <rootfs>/opt/program/bin/<program>` (the program is the first word of
`command`/`args`, `serve` by default, looked up in the image's /opt/program/bin) from the rootfs the
`images` callable returns, with the container contract's environment (SAGEMAKER_BASE_DIR,
PYTHONPATH, SERVE_HOST=127.0.0.1, PORT=0, SERVE_PORT_FILE) over the container's resolved `env`.
The port the process writes to SERVE_PORT_FILE is where probes and Services reach it.

What the kubelet reports and does, as a kubelet on a node would:
- status: phase Pending -> Running, conditions PodScheduled/Initialized/ContainersReady/Ready,
  containerStatuses (ready, started, restartCount, state and lastState with reasons), podIP and
  hostIP 127.0.0.1, startTime; written through the `status` subresource only when it changes.
- probes (httpGet or tcpSocket; exec/grpc count as passing): the startup probe gates readiness
  and liveness, readiness flips `ready` after successThreshold/failureThreshold consecutive
  results, a failing startup or liveness probe restarts the container. Periods and initial delays
  are multiplied by `probe_scale`; timeouts are not.
- image pulls: a failing `images(ref)` is ErrImagePull, then ImagePullBackOff until the retry.
- restarts (restartPolicy Always/OnFailure): the first restart is immediate, later ones wait
  10 s, 20 s, 40 s ... up to 5 min (`Backoff`), shown as CrashLoopBackOff.
- deletion: a pod with a deletionTimestamp gets one SIGTERM, SIGKILL after its grace period (capped by
  `max_grace_seconds`), and is then removed from the store (delete with grace 0).
Every stdout line goes to `on_stdout_line(pod_metadata, line)`; stdout and stderr are appended to
`<state_dir>/pods/<namespace>_<pod>.log`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from modelops_local import oci
from modelops_local.kube.errors import KubeApiError, NotFoundError
from modelops_local.kube.jsoncopy import json_copy
from modelops_local.kube.patch import MERGE_PATCH
from modelops_local.kube.resources import PODS
from modelops_local.kube.store import KubeStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ImageResolver = Callable[[str], Path]
StdoutSink = Callable[[Obj, str], None]

NODE_NAME = "local-node"
# Where a local pod's processes listen: JSON {container name: port on 127.0.0.1}. Written by the
# kubelet when a container binds; read by the Service proxies (services.py).
HOST_PORTS_ANNOTATION = "local.modelops.io/host-ports"
POD_IP = "127.0.0.1"
# Host variables a pod process inherits (everything else comes from the pod spec).
PASS_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_PORT_FILE_POLL = 0.05


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 at second resolution, as the API server writes times."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Backoff:
    """Kubernetes' restart back-off: `initial` doubling to `maximum`, every delay times `scale`."""

    initial: float = 10.0
    maximum: float = 300.0
    scale: float = 1.0

    def nominal(self, failures: int) -> float:
        """The unscaled delay (seconds) after the `failures`-th consecutive failure (1-based)."""
        if failures <= 0:
            return 0.0
        return float(min(self.initial * (2 ** (failures - 1)), self.maximum))

    def restart_delay(self, exits: int) -> float:
        """Seconds to wait before restarting after the `exits`-th consecutive exit: 0 for the
        first (the kubelet restarts at once), then initial, 2*initial, ... capped; scaled."""
        return self.nominal(exits - 1) * self.scale

    def pull_delay(self, failures: int) -> float:
        """Seconds to wait before pulling again after the `failures`-th consecutive failure."""
        return self.nominal(failures) * self.scale

    @property
    def reset_after(self) -> float:
        """A container that ran this long (scaled) starts its back-off from scratch again."""
        return 2 * self.maximum * self.scale


def resolve_field_ref(pod: Mapping[str, Any], path: str) -> str | None:
    """The value of a downward-API `fieldRef.fieldPath` for `pod`, or None when not supported."""
    meta = pod.get("metadata") or {}
    match = _FIELD_LABEL.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName") or NODE_NAME,
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": POD_IP,
        "status.hostIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIPs": POD_IP,
    }
    if path in simple:
        value = simple[path]
        return "" if value is None else str(value)
    return None


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The container's `env` as the kubelet resolves it: plain values with `$(VAR)` references to
    earlier variables expanded, `valueFrom.fieldRef` from the pod. Other sources (secrets,
    config maps, resource fields) are skipped with a warning: the stand-in serves none of them."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if not name:
            continue
        if "value" in item or "valueFrom" not in item:
            raw = str(item.get("value") or "")
            env[name] = _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), raw)
            continue
        source = item.get("valueFrom") or {}
        field = (source.get("fieldRef") or {}).get("fieldPath")
        value = resolve_field_ref(pod, str(field)) if field else None
        if value is None:
            log.warning(
                "pod %s: env %s: unsupported valueFrom %s; left unset",
                (pod.get("metadata") or {}).get("name"),
                name,
                sorted(source),
            )
            continue
        env[name] = value
    return env


def process_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], rootfs: Path, port_file: Path
) -> dict[str, str]:
    """The whole environment of a container process: a few host variables, the container's env,
    then the contract variables, which always win (PORT=0: many pods share one host)."""
    env = {key: os.environ[key] for key in PASS_THROUGH_ENV if key in os.environ}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOSTNAME": str((pod.get("metadata") or {}).get("name", "")),
        }
    )
    env.update(container_env(pod, container))
    env.pop("SAGEMAKER_BIND_TO_PORT", None)
    env.update(
        {
            "SAGEMAKER_BASE_DIR": str(rootfs / "opt" / "ml"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in image_python_path(rootfs)),
            "SERVE_HOST": POD_IP,
            "PORT": "0",
            "SERVE_PORT_FILE": str(port_file),
        }
    )
    return env


def image_python_path(rootfs: Path) -> list[Path]:
    """What the image's Python imports from: /opt/program (its PYTHONPATH), then its venv's
    site-packages when a layer put packages there (a model's code/requirements.txt)."""
    site = rootfs / oci.site_packages().lstrip("/")
    return [rootfs / "opt" / "program", *([site] if site.is_dir() else [])]


def container_argv(container: Mapping[str, Any]) -> list[str]:
    """`command` + `args` (the image's default command `serve` when both are empty)."""
    argv = [str(a) for a in (container.get("command") or [])] + [str(a) for a in container.get("args") or []]
    return argv or ["serve"]


def resolve_program(rootfs: Path, program: str) -> Path:
    """Where `program` lives in the image: an absolute path inside the rootfs, or a name looked up
    in /opt/program/bin, /usr/local/bin, /usr/bin and /bin. FileNotFoundError when absent."""
    if program.startswith("/"):
        candidates = [rootfs / program.lstrip("/")]
    else:
        candidates = [
            rootfs / folder / program for folder in ("opt/program/bin", "usr/local/bin", "usr/bin", "bin")
        ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f'exec: "{program}": executable file not found in the image ({rootfs})')


def container_port(container: Mapping[str, Any], port: int | str) -> int | None:
    """The containerPort `port` names (a number, or a port name); None when a name is unknown."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    return None


class ProcessRegistry:
    """Every pod process a controller started; `kill_all` is the safety net (stop, atexit, GC)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self.closed = False

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a process in its own session and track it; RuntimeError once closed."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the controller is stopping; no new processes")
            process = subprocess.Popen(argv, start_new_session=True, **kwargs)
            self._processes[process.pid] = process
            return process

    def discard(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.pop(process.pid, None)

    def pids(self) -> list[int]:
        with self._lock:
            return [pid for pid, p in self._processes.items() if p.poll() is None]

    def kill_all(self) -> None:
        """SIGKILL every tracked process group and reap it (bounded); refuses new processes after."""
        with self._lock:
            self.closed = True
            processes = list(self._processes.values())
            self._processes.clear()
        for process in processes:
            signal_group(process, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2)


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process's group (it leads its own session); quiet when already gone."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            process.send_signal(sig)


def probe_once(
    probe: Mapping[str, Any], container: Mapping[str, Any], host_port: int | None
) -> tuple[bool, str]:
    """Run one probe against the process's bound port: (success, message). httpGet succeeds on
    200-399, tcpSocket on connect; exec and grpc probes are not run and count as success."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    handler = probe.get("httpGet") or probe.get("tcpSocket")
    if handler is None:
        return True, ""
    port_ref = handler.get("port")
    if container_port(container, port_ref if port_ref is not None else 0) is None:
        return False, f"unable to find port {port_ref!r} in the container's ports"
    if host_port is None:
        return False, "dial tcp 127.0.0.1: connect: connection refused (not listening yet)"
    if "tcpSocket" in probe:
        try:
            with socket.create_connection((POD_IP, host_port), timeout=timeout):
                return True, ""
        except OSError as exc:
            return False, f"dial tcp {POD_IP}:{host_port}: {exc}"
    path = str(handler.get("path") or "/")
    connection = http.client.HTTPConnection(POD_IP, host_port, timeout=timeout)
    try:
        headers = {str(h.get("name")): str(h.get("value")) for h in handler.get("httpHeaders") or []}
        connection.request("GET", path, headers={"User-Agent": "kube-probe/1.30", **headers})
        response = connection.getresponse()
        response.read()
        if 200 <= response.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "http://{POD_IP}:{host_port}{path}": {type(exc).__name__}: {exc}'
    finally:
        connection.close()


class _Probe:
    """Consecutive-result bookkeeping for one probe of one container run."""

    def __init__(self, spec: Mapping[str, Any], scale: float, started: float) -> None:
        self.spec = spec
        self.period = max(float(spec.get("periodSeconds") or 10) * scale, 0.02)
        self.next_due = started + float(spec.get("initialDelaySeconds") or 0) * scale
        self.success_threshold = int(spec.get("successThreshold") or 1)
        self.failure_threshold = int(spec.get("failureThreshold") or 3)
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool, now: float) -> None:
        self.next_due = now + self.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1

    @property
    def passed(self) -> bool:
        return self.successes >= self.success_threshold

    @property
    def failed(self) -> bool:
        return self.failures >= self.failure_threshold


class _Container:
    """One container of a pod: image pull, process, probes, restarts. Driven by its pod worker."""

    def __init__(self, worker: PodWorker, spec: Obj) -> None:
        self.worker = worker
        self.spec = spec
        self.name = str(spec.get("name", ""))
        self.image = str(spec.get("image", ""))
        self.rootfs: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.readers: list[threading.Thread] = []
        self.port: int | None = None
        self.port_file: Path | None = None
        self.restart_count = 0
        self.attempts = 0  # start attempts (after a successful pull)
        self.ever_ran = False
        self.exits = 0  # consecutive exits, for the back-off
        self.pull_failures = 0
        self.next_action = 0.0  # monotonic: when to pull/start next
        self.waiting: tuple[str, str] = ("ContainerCreating", "")
        self.waiting_since_pull_error = 0.0
        self.started_at: str | None = None
        self.started_mono = 0.0
        self.last_state: Obj = {}
        self.terminated: Obj | None = None  # a final state (restartPolicy says no restart)
        self.started = False
        self.ready = False
        self.startup: _Probe | None = None
        self.readiness: _Probe | None = None
        self.liveness: _Probe | None = None

    # --- state machine ------------------------------------------------------------------------------

    def step(self, now: float) -> float:
        """Advance the container; returns when (monotonic) it next needs attention."""
        if self.terminated is not None:
            return now + 3600
        if self.process is None:
            if now < self.next_action:
                if self.waiting[0] == "ErrImagePull":
                    if now < self.waiting_since_pull_error:
                        return self.waiting_since_pull_error
                    self.waiting = ("ImagePullBackOff", f'Back-off pulling image "{self.image}"')
                return self.next_action
            self._start(now)
            if self.process is None:
                if self.waiting[0] == "ErrImagePull":
                    return min(self.next_action, self.waiting_since_pull_error)
                return self.next_action
            return now + _PORT_FILE_POLL
        if self.process.poll() is not None:
            self._exited(now, reason=None)
            return now
        if self.port is None:
            self._read_port()
        return self._run_probes(now)

    def _pull(self) -> Path:
        policy = self.spec.get("imagePullPolicy")
        cache = self.worker.kubelet.pulled
        if policy != "Always" and self.image in cache:
            return cache[self.image]
        rootfs = Path(self.worker.kubelet.images(self.image))
        cache[self.image] = rootfs
        return rootfs

    def _start(self, now: float) -> None:
        if self.rootfs is None:
            try:
                self.rootfs = self._pull()
            except Exception as exc:
                self.pull_failures += 1
                delay = self.worker.kubelet.backoff.pull_delay(self.pull_failures)
                self.next_action = now + delay
                # ErrImagePull for a moment, then ImagePullBackOff until the next attempt.
                self.waiting_since_pull_error = now + min(delay / 2, 1.0)
                self.waiting = ("ErrImagePull", f'failed to pull image "{self.image}": {exc}')
                log.warning("pod %s: %s", self.worker.ref, self.waiting[1])
                return
            self.pull_failures = 0
        if self.attempts:
            self.restart_count += 1
        self.attempts += 1
        argv = container_argv(self.spec)
        run_dir = self.worker.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port_file = run_dir / f"{self.name}-{self.restart_count}.port"
        with contextlib.suppress(FileNotFoundError):
            self.port_file.unlink()
        self.port = None
        try:
            program = resolve_program(self.rootfs, argv[0])
            workdir = self.spec.get("workingDir")
            cwd = self.rootfs / str(workdir).lstrip("/") if workdir else self.rootfs / "opt" / "program"
            if not cwd.is_dir():
                cwd = self.rootfs
            env = process_env(self.worker.pod, self.spec, self.rootfs, self.port_file)
            self.process = self.worker.kubelet.registry.spawn(
                [self.worker.kubelet.python, str(program), *argv[1:]],
                cwd=str(cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (OSError, RuntimeError) as exc:
            self.started_at = timestamp()
            self._record_exit(now, 128, "StartError", str(exc))
            return
        self.ever_ran = True
        self.started_at = timestamp()
        self.started_mono = now
        self.started = False
        self.ready = False
        scale = self.worker.kubelet.probe_scale
        self.startup = (
            _Probe(self.spec["startupProbe"], scale, now) if self.spec.get("startupProbe") else None
        )
        self.readiness = (
            _Probe(self.spec["readinessProbe"], scale, now) if self.spec.get("readinessProbe") else None
        )
        self.liveness = (
            _Probe(self.spec["livenessProbe"], scale, now) if self.spec.get("livenessProbe") else None
        )
        self.readers = [
            threading.Thread(
                target=self.worker.pump,
                args=(self.process.stdout, True),
                name=f"pod-out-{self.name}",
                daemon=True,
            ),
            threading.Thread(
                target=self.worker.pump,
                args=(self.process.stderr, False),
                name=f"pod-err-{self.name}",
                daemon=True,
            ),
        ]
        for reader in self.readers:
            reader.start()
        log.info("pod %s: container %s started (pid %s)", self.worker.ref, self.name, self.process.pid)

    def _read_port(self) -> None:
        if self.port_file is None:
            return
        try:
            text = self.port_file.read_text().strip()
        except OSError:
            return
        if text.isdigit():
            self.port = int(text)
            self.worker.ports_changed = True

    def _run_probes(self, now: float) -> float:
        due = [now + (_PORT_FILE_POLL if self.port is None else 5.0)]
        if not self.started:
            if self.startup is None:
                self.started = True
            elif now >= self.startup.next_due:
                ok, message = probe_once(self.startup.spec, self.spec, self.port)
                self.startup.record(ok, now)
                if self.startup.passed:
                    self.started = True
                    if self.readiness is not None:
                        self.readiness.next_due = max(now, self.readiness.next_due)
                elif self.startup.failed:
                    self._kill_for_probe(now, "startup", message)
                    return now
            if not self.started:
                assert self.startup is not None
                return min(*due, self.startup.next_due)
        if self.readiness is None:
            self.ready = True
        elif now >= self.readiness.next_due:
            ok, message = probe_once(self.readiness.spec, self.spec, self.port)
            self.readiness.record(ok, now)
            if self.readiness.passed:
                self.ready = True
            elif self.readiness.failed:
                if self.ready:
                    log.info("pod %s: readiness probe failed: %s", self.worker.ref, message)
                self.ready = False
        if self.liveness is not None and now >= self.liveness.next_due:
            ok, message = probe_once(self.liveness.spec, self.spec, self.port)
            self.liveness.record(ok, now)
            if self.liveness.failed:
                self._kill_for_probe(now, "liveness", message)
                return now
        for probe in (self.readiness, self.liveness):
            if probe is not None:
                due.append(probe.next_due)
        return min(due)

    def _kill_for_probe(self, now: float, which: str, message: str) -> None:
        log.warning(
            "pod %s: container %s failed %s probe, will be restarted: %s",
            self.worker.ref,
            self.name,
            which,
            message,
        )
        self.stop(self.worker.grace_seconds())
        self._exited(time.monotonic(), reason=None)  # the exit code decides: Completed / Error

    def _exited(self, now: float, reason: str | None) -> None:
        process = self.process
        assert process is not None
        code = process.poll()
        code = 137 if code is None else (128 - code if code < 0 else code)
        self._join_readers()
        self.worker.kubelet.registry.discard(process)
        self.process = None
        self._record_exit(now, code, reason or ("Completed" if code == 0 else "Error"), "")

    def _record_exit(self, now: float, code: int, reason: str, message: str) -> None:
        terminated: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at,
            "finishedAt": timestamp(),
        }
        if message:
            terminated["message"] = message[:1024]
        self.started = self.ready = False
        self.port = None
        policy = (self.worker.pod.get("spec") or {}).get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            self.terminated = terminated
            return
        backoff = self.worker.kubelet.backoff
        if self.started_mono and now - self.started_mono >= backoff.reset_after:
            self.exits = 0
        self.exits += 1
        delay = backoff.restart_delay(self.exits)
        self.last_state = {"terminated": terminated}
        self.next_action = now + delay
        if delay > 0:
            nominal = int(backoff.nominal(self.exits - 1))
            pod = self.worker.pod["metadata"]
            self.waiting = (
                "CrashLoopBackOff",
                f"back-off {nominal}s restarting failed container={self.name} "
                f"pod={pod['name']}_{pod.get('namespace')}({pod.get('uid')})",
            )
        else:
            self.waiting = ("ContainerCreating", "")
        log.warning("pod %s: container %s exited with %s (%s)", self.worker.ref, self.name, code, reason)

    # --- termination ----------------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        if self.process is not None:
            signal_group(self.process, sig)

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone (bounded)."""
        self.signal(signal.SIGTERM)
        self.await_exit(grace)

    def await_exit(self, grace: float) -> None:
        """Wait `grace` seconds for the signalled process to end, then SIGKILL it (bounded). Sends
        no SIGTERM of its own: the kubelet sends one stop signal, and a second one means "skip the
        drain" to a server such as `serve`."""
        process = self.process
        if process is None:
            return
        try:
            process.wait(max(grace, 0.0))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    def _join_readers(self) -> None:
        for reader in self.readers:
            reader.join(2)
        self.readers = []

    # --- status ---------------------------------------------------------------------------------------

    def status(self) -> Obj:
        state: Obj
        if self.terminated is not None:
            state = {"terminated": dict(self.terminated)}
        elif self.process is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image if self.rootfs is not None else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": state,
            "lastState": json_copy(self.last_state),
        }
        if self.process is not None:
            status["containerID"] = f"local://{self.process.pid}"
        return status


class PodWorker(threading.Thread):
    """Runs one pod until it is deleted (or the kubelet stops), publishing its status."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta.get('namespace')}-{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.uid = str(meta["uid"])
        self.namespace = str(meta.get("namespace"))
        self.pod_name = str(meta["name"])
        self.ref = f"{self.namespace}/{self.pod_name}"
        self.run_dir = kubelet.state_dir / "pods" / f"{self.namespace}_{self.pod_name}.run"
        self.log_path = kubelet.state_dir / "pods" / f"{self.namespace}_{self.pod_name}.log"
        self.wake = threading.Event()
        self.containers = [_Container(self, c) for c in (pod.get("spec") or {}).get("containers") or []]
        self._lock = threading.Lock()
        self._terminate: tuple[float, bool] | None = None  # (grace, delete the pod after)
        self._published: Obj | None = None
        self._conditions: dict[str, tuple[str, str]] = {}  # type -> (status, lastTransitionTime)
        self._start_time = timestamp()
        self._log_lock = threading.Lock()
        self._log: IO[bytes] | None = None
        self.finished = threading.Event()
        self.ports_changed = False

    # --- control (other threads) --------------------------------------------------------------------

    def terminate(self, grace: float, *, delete: bool) -> None:
        """Ask the worker to stop the pod's processes (SIGTERM, SIGKILL after `grace`) and end;
        with `delete`, remove the pod from the store afterwards."""
        with self._lock:
            if self._terminate is None or grace < self._terminate[0]:
                self._terminate = (grace, delete or (self._terminate or (0.0, False))[1])
        self.wake.set()

    def grace_seconds(self) -> float:
        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return min(float(grace if grace is not None else 30), self.kubelet.max_grace_seconds)

    def host_port(self, target: int | str) -> int | None:
        """The local port that serves container port `target` (number or name), when running."""
        number = int(target) if isinstance(target, int) or str(target).isdigit() else None
        for container in self.containers:
            ports = container.spec.get("ports") or []
            if any(p.get("name") == target or p.get("containerPort") == number for p in ports):
                return container.port
        if number is not None:
            running = [c.port for c in self.containers if c.port is not None]
            return running[0] if len(running) == 1 else None
        return None

    # --- the worker loop ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            self._publish()
            while True:
                with self._lock:
                    request = self._terminate
                if request is not None:
                    self._shutdown(*request)
                    return
                now = time.monotonic()
                due = min([c.step(now) for c in self.containers] or [now + 3600])
                if self.ports_changed:
                    self._publish_ports()
                if not self._publish():
                    return  # the pod is gone or replaced
                wait = min(max(due - time.monotonic(), 0.0), self.kubelet.resync_seconds * 4)
                if wait > 0:
                    self.wake.wait(wait)
                self.wake.clear()
        except Exception:
            log.exception("pod %s: worker failed", self.ref)
            for container in self.containers:
                container.stop(0)
        finally:
            with self._log_lock:
                if self._log is not None:
                    self._log.close()
                    self._log = None
            self.finished.set()

    def _shutdown(self, grace: float, delete: bool) -> None:
        for container in self.containers:
            container.signal(signal.SIGTERM)  # every container at once, then one deadline for all
        deadline = time.monotonic() + grace
        for container in self.containers:
            container.await_exit(max(deadline - time.monotonic(), 0.0))
            if container.process is not None:
                container._join_readers()
                self.kubelet.registry.discard(container.process)
                container.process = None
        if delete and not self.kubelet.stopping.is_set():
            try:
                self.kubelet.store.delete(
                    PODS,
                    self.namespace,
                    self.pod_name,
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
            except NotFoundError:
                pass
            except KubeApiError as exc:
                log.warning("pod %s: final delete failed: %s", self.ref, exc)

    def pump(self, stream: IO[bytes] | None, is_stdout: bool) -> None:
        """Copy one output stream of a container to the pod log (and stdout lines to the sink)."""
        if stream is None:
            return
        meta = json_copy(self.pod["metadata"])
        sink = self.kubelet.on_stdout_line
        try:
            for raw in iter(stream.readline, b""):
                with self._log_lock:
                    if self._log is not None:
                        self._log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                        self._log.flush()
                if is_stdout and sink is not None:
                    try:
                        sink(meta, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                    except Exception:
                        log.exception("pod %s: on_stdout_line failed", self.ref)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()
            self.wake.set()

    # --- status ------------------------------------------------------------------------------------

    def _condition(self, kind: str, value: bool) -> Obj:
        status = "True" if value else "False"
        previous = self._conditions.get(kind)
        if previous is None or previous[0] != status:
            self._conditions[kind] = (status, timestamp())
        return {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._conditions[kind][1],
        }

    def _phase(self) -> str:
        if any(not c.ever_ran and c.terminated is None for c in self.containers):
            return "Pending"
        if self.containers and all(c.terminated is not None for c in self.containers):
            failed = any(int((c.terminated or {}).get("exitCode", 1)) != 0 for c in self.containers)
            return "Failed" if failed else "Succeeded"
        return "Running"

    def status(self, qos_class: str | None) -> Obj:
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        status: Obj = {
            "phase": self._phase(),
            "conditions": [
                self._condition("Initialized", True),
                self._condition("Ready", ready),
                self._condition("ContainersReady", ready),
                self._condition("PodScheduled", True),
            ],
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": self._start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if qos_class:
            status["qosClass"] = qos_class
        return status

    def _publish_ports(self) -> None:
        """Record the containers' bound ports in the pod's HOST_PORTS_ANNOTATION (JSON
        {container: port}), where Service proxies look them up."""
        self.ports_changed = False
        ports = {c.name: c.port for c in self.containers if c.port is not None}
        patch = {"metadata": {"annotations": {HOST_PORTS_ANNOTATION: json.dumps(ports, sort_keys=True)}}}
        try:
            self.kubelet.store.patch(PODS, self.namespace, self.pod_name, patch, MERGE_PATCH)
        except KubeApiError as exc:
            log.warning("pod %s: recording host ports failed: %s", self.ref, exc)

    def _publish(self) -> bool:
        """Write the status when it changed; False when the pod is gone (or is another pod now)."""
        try:
            current = self.kubelet.store.get(PODS, self.namespace, self.pod_name)
        except NotFoundError:
            return False
        if current["metadata"].get("uid") != self.uid:
            return False
        self.pod = current
        status = self.status((current.get("status") or {}).get("qosClass"))
        if status == self._published and current.get("status") == status:
            return True
        body = json_copy(current)
        body["status"] = status
        body["metadata"].pop("resourceVersion", None)
        try:
            self.kubelet.store.update(body, "status")
        except NotFoundError:
            return False
        except KubeApiError as exc:
            log.warning("pod %s: status update failed: %s", self.ref, exc)
            return True
        self._published = status
        return True


class Kubelet:
    """Runs the pods bound to `node_name` (see the module docstring)."""

    def __init__(
        self,
        store: KubeStore,
        images: ImageResolver,
        *,
        state_dir: Path,
        python: str,
        on_stdout_line: StdoutSink | None,
        node_name: str = NODE_NAME,
        backoff: Backoff | None = None,
        probe_scale: float = 1.0,
        max_grace_seconds: float = 30.0,
        resync_seconds: float = 0.25,
        registry: ProcessRegistry | None = None,
    ) -> None:
        self.store = store
        self.images = images
        self.state_dir = Path(state_dir)
        self.python = python
        self.on_stdout_line = on_stdout_line
        self.node_name = node_name
        self.backoff = backoff or Backoff()
        self.probe_scale = probe_scale
        self.max_grace_seconds = max_grace_seconds
        self.resync_seconds = resync_seconds
        self.registry = registry or ProcessRegistry()
        self.pulled: dict[str, Path] = {}
        self.stopping = threading.Event()
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()

    def runs(self, pod: Mapping[str, Any]) -> bool:
        """Whether this kubelet runs `pod` (bound to its node, or not bound at all)."""
        return (pod.get("spec") or {}).get("nodeName") in (None, "", self.node_name)

    def sync(self, pods: list[Obj]) -> None:
        """Start workers for new pods, terminate the deleted ones; `pods`: every pod in the store."""
        if self.stopping.is_set():
            return
        seen = set()
        with self._lock:
            for pod in pods:
                if not self.runs(pod):
                    continue
                meta = pod["metadata"]
                uid = str(meta["uid"])
                seen.add(uid)
                worker = self._workers.get(uid)
                if meta.get("deletionTimestamp"):
                    grace = min(float(meta.get("deletionGracePeriodSeconds") or 0), self.max_grace_seconds)
                    if worker is None:
                        worker = self._start(pod)
                        worker.terminate(0.0, delete=True)
                    else:
                        worker.terminate(grace, delete=True)
                elif worker is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    self._start(pod)
            for uid, worker in list(self._workers.items()):
                if uid not in seen:
                    worker.terminate(min(2.0, self.max_grace_seconds), delete=False)
                if worker.finished.is_set():
                    del self._workers[uid]

    def _start(self, pod: Obj) -> PodWorker:
        worker = PodWorker(self, pod)
        self._workers[worker.uid] = worker
        worker.start()
        return worker

    def host_port(self, namespace: str, pod: str, target: int | str) -> int | None:
        """The local port serving `target` (a container port number or name) of a running pod."""
        with self._lock:
            workers = [w for w in self._workers.values() if w.namespace == namespace and w.pod_name == pod]
        for worker in workers:
            if not worker.finished.is_set():
                return worker.host_port(target)
        return None

    def pids(self) -> list[int]:
        """The pids of the pod processes now running."""
        return self.registry.pids()

    def stop(self, timeout: float) -> None:
        """Terminate every pod process (SIGTERM, SIGKILL after at most `timeout`), join the workers."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers.values())
        grace = min(self.max_grace_seconds, max(timeout - 1.0, 0.0))
        for worker in workers:
            worker.terminate(grace, delete=False)
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.1))
        self.registry.kill_all()
        with self._lock:
            self._workers.clear()
