"""Issue 5, section 1: faults during a rollout, on the local runtime, with steady prediction load on
the model's (stable) Service throughout.

Each test uses its own model: version 1 is deployed once, then each fault is one run of a better
candidate (the champion stays version 1 while the candidates are rolled back). For every fault the
test asserts the final state (the expected image on the stable Deployment, the canary at 0, the lock
free, the execution's and the run record's status) and that no stable request failed, and records
its figures in `<pytest basetemp>/fault-matrix.json` with one summary line (`pytest -s` shows them).

Only the rows whose point is real processes, real traffic and real timing are here: canary pods
that crash-loop or never get ready, and the Kubernetes API's errors reaching the product's client over
HTTP with its read timeout actually firing. The rows about workflow decisions (a stopped execution,
the other API-fault runs, a rollout worker killed or timed out mid-patch, alarms in each phase,
training and build faults, a dead lock holder) run at the integration tier, one test per row:
tests/integration/workflow/test_fault_matrix.py (README "Fault matrix" says which row is where).
Covered elsewhere: an alarm in the watch window (test_pipeline_cases.py, and here with API faults),
a training failure (test_pipeline_cases.py), an alarm during the bake (test_demo_story.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelops.config import ModelConfig

from modelops_local.demo import SteadyTraffic, find_new_execution_arn
from tests.e2e.sfn_history import history

pytestmark = pytest.mark.timeout(900)

ROWS = [[12, 80, 3, 20, 1, 1], [40, 55, 1, 35, 12, 0], [3, 99, 6, 5, 0, 3]]
#: Short windows: a 5 s bake with 10 canary requests asked for, a 3 s watch. These tests judge
#: faults, not latency (the driver's models tolerate a loaded host's tail latency: conftest.py).
FAST = {"bake_seconds": 5, "watch_seconds": 3, "min_requests": 10, "ready_timeout_seconds": 30}
V1 = (1500, 11)
BETTER = (4000, 12)  # beats version 1 every time (the champion stays v1 while candidates roll back)


# --- figures -------------------------------------------------------------------------------------
class Matrix:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def record(self, fault: str, test: str, **figures: Any) -> None:
        row = {"fault": fault, "test": test, **figures}
        self.rows.append(row)
        self.path.write_text(json.dumps(self.rows, indent=2, default=str))
        shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k != "states")
        print(f"\nFAULT {fault} [{test}]: {shown}", flush=True)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    result = Matrix(tmp_path_factory.getbasetemp() / "fault-matrix.json")
    yield result
    print(f"\nfault matrix: {len(result.rows)} faults, figures in {result.path}")
    for row in result.rows:
        print(
            f"  {row['fault']:<48} stable failed {row.get('stable_failed')}, canary failed "
            f"{row.get('canary_failed')}, final {row.get('final')}, rollback {row.get('rollback_seconds')}"
        )


# --- following one run ---------------------------------------------------------------------------
class Run:
    def __init__(self, driver: Any, config: ModelConfig, arn: str, started: float) -> None:
        self.driver, self.config, self.arn, self.started = driver, config, arn, started
        self.sfn = driver.cloud.client("stepfunctions")

    @property
    def run_id(self) -> str:
        return self.arn.rsplit(":", 1)[-1]

    def states(self) -> list[tuple[float, str]]:
        events = history(self.sfn, self.arn)
        return [
            (e["timestamp"].timestamp(), e["stateEnteredEventDetails"]["name"])
            for e in events
            if "stateEnteredEventDetails" in e
        ]

    def failures(self) -> list[tuple[str, str]]:
        """(error, cause) of every task that failed in the run (each one the workflow retried or caught)."""
        events = history(self.sfn, self.arn, data=True)
        details = [
            e.get("lambdaFunctionFailedEventDetails") or e.get("taskFailedEventDetails") for e in events
        ]
        return [(d.get("error", ""), d.get("cause", "")) for d in details if d]

    def entered(self, name: str) -> float | None:
        return next((at for at, state in self.states() if state == name), None)

    def status(self) -> str:
        return str(self.sfn.describe_execution(executionArn=self.arn)["status"])

    def wait_state(self, name: str, timeout: float = 120) -> float:
        def probe() -> float | None:
            at = self.entered(name)
            if at is None and self.status() != "RUNNING":
                raise AssertionError(f"{self.run_id} ended before {name}: {self.states()[-6:]}")
            return at

        return self.driver.wait_for(probe, f"{self.run_id} to enter {name}", timeout=timeout)

    def wait_end(self, timeout: float = 240) -> str:
        self.driver.wait_for(lambda: self.status() != "RUNNING", f"{self.run_id} to end", timeout=timeout)
        return self.status()

    def record(self) -> dict[str, Any]:
        return dict(self.driver.record(self.config.name, self.run_id))

    def seconds(self, start: str, end: str) -> float | None:
        a, b = self.entered(start), self.entered(end)
        return None if a is None or b is None else round(b - a, 2)


def start(driver: Any, config: ModelConfig, key: str, data: tuple[int, int] = BETTER) -> Run:
    known = driver.executions()
    started = time.time()
    driver.upload(config.name, driver.dataset(config.name, *data), key)
    cloud = driver.cloud
    arn = find_new_execution_arn(cloud.client("stepfunctions"), cloud.info.state_machine_arn, known)
    return Run(driver, config, arn, started)


@contextlib.contextmanager
def traffic_on(driver: Any, config: ModelConfig) -> Iterator[SteadyTraffic]:
    traffic = SteadyTraffic(driver.cloud.service_url(config.kubernetes.namespace, config.name), ROWS, 10.0)
    traffic.start()
    try:
        yield traffic
    finally:
        traffic.stop()


def deploy_v1(driver: Any, name: str, **canary: Any) -> tuple[ModelConfig, str]:
    config = driver.model(name, canary={**FAST, "bake_seconds": 2, "watch_seconds": 1})
    v1 = driver.run(name, driver.dataset(name, *V1), "v1.csv")
    assert v1.record.get("status") == "promoted", v1.record
    return driver.model(name, canary={**FAST, **canary}), driver.image(config)


def final_state(
    driver: Any,
    run: Run,
    traffic: SteadyTraffic,
    *,
    image: str,
    status: str,
    outcome: str,
    lock_free: bool = True,
) -> dict[str, Any]:
    """Assert the run's end state (stable on `image`, canary at 0 pods, lock free) and no failed
    stable request; return the figures."""
    config = run.config
    end = run.wait_end()
    driver.wait_for(
        lambda: driver.deployment(config, "canary")["status"].get("replicas", 0) == 0, "canary pods gone", 60
    )

    def stable_settled() -> bool:
        s = driver.deployment(config, "stable")["status"]
        return s.get("readyReplicas") == s.get("updatedReplicas") == s.get("replicas")

    driver.wait_for(stable_settled, "the stable Deployment settled", 60)
    time.sleep(1)  # a second more of traffic on the final state
    counts = traffic.summary(since=run.started)
    record = run.record()
    figures = {
        "stable_ok": counts.get("stable", {}).get("ok", 0),
        "stable_failed": counts.get("stable", {}).get("failed", 0),
        "canary_ok": counts.get("canary", {}).get("ok", 0),
        "canary_failed": counts.get("canary", {}).get("failed", 0),
        "unanswered": counts.get("?", {}).get("failed", 0),
        "final": f"{end}/{record.get('status')}",
        "error": record.get("error"),
        "stable_image_expected": driver.image(config) == image,
    }
    assert end == status and record.get("status") == outcome, (end, record)
    assert driver.image(config) == image, "the stable Deployment does not run the expected image"
    assert driver.deployment(config, "canary")["spec"]["replicas"] == 0
    if lock_free:  # (else a follow-up run has taken it)
        assert driver.cloud.store().lock_holder(config.name) is None
    assert driver.cloud.store().get_rollout(config.name) is None
    assert figures["stable_failed"] == 0 and figures["unanswered"] == 0, (
        figures,
        traffic.unanswered(run.started),
    )
    assert figures["stable_ok"] > 0
    return figures


def container_index(deployment: dict[str, Any], path: str, name: str) -> int:
    items = deployment["spec"]["template"]["spec"]["containers"][0][path]
    return next(i for i, item in enumerate(items) if item["name"] == name)


def json_patch(driver: Any, config: ModelConfig, which: str, ops: list[dict[str, Any]]) -> None:
    k = config.kubernetes
    name = k.canary_deployment if which == "canary" else k.stable_deployment
    driver.cloud.kube_store.patch("Deployment", k.namespace, name, ops, "application/json-patch+json")


def alarm(driver: Any, model: str, variant: str, reason: str) -> None:
    name = f"{driver.cloud.info.alarm_prefix}{model}-{variant}-error-rate"
    driver.cloud.set_alarm_state(name, "ALARM", reason)


def settle_alarms(driver: Any, model: str) -> None:
    """Put the model's alarms back to OK (the evaluator sets them from data again afterwards)."""
    cw = driver.cloud.client("cloudwatch")
    for variant in ("canary", "stable"):
        name = f"{driver.cloud.info.alarm_prefix}{model}-{variant}-error-rate"
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="e2e: reset")


# --- 1. a canary that never serves -----------------------------------------------------------------
def test_a_canary_that_crash_loops_or_never_gets_ready_leaves_v1_serving(driver, matrix):
    name = "e2e-f-ready"
    config, v1_image = deploy_v1(driver, name, ready_timeout_seconds=60)
    k, faults = config.kubernetes, driver.cloud.kube_faults
    canary = driver.deployment(config, "canary")
    env_index = container_index(canary, "env", "EMF_FLUSH_SECONDS")
    env_path = f"/spec/template/spec/containers/0/env/{env_index}/value"
    probe_path = "/spec/template/spec/containers/0/readinessProbe/httpGet/path"

    # Given the canary's next patch lands with a setting its pods cannot start with (serve exits 2:
    # EMF_FLUSH_SECONDS=0), and the canary Deployment has an 8 s progress deadline
    json_patch(
        driver, config, "canary", [{"op": "replace", "path": "/spec/progressDeadlineSeconds", "value": 8}]
    )
    crash = faults.add(
        "patch",
        "deployments",
        namespace=k.namespace,
        name=k.canary_deployment,
        status=None,
        rewrite=lambda ops: [*ops, {"op": "replace", "path": env_path, "value": "0"}],
    )
    with traffic_on(driver, config) as traffic:
        # When a better version rolls out
        run = start(driver, config, "crash.csv")
        # Then its pods crash-loop, the Deployment exceeds its progress deadline, and the run rolls back
        figures = final_state(driver, run, traffic, image=v1_image, status="FAILED", outcome="rolled_back")
    record = run.record()
    assert crash.fired == 1 and record["error"] == "RolloutFailedError", record
    assert "progress deadline" in record["cause"], record
    pods = driver.cloud.kube_store.list_object(
        "Pod", k.namespace, label_selector=f"app={name},variant=canary"
    )
    assert pods["items"] == []
    matrix.record(
        "canary pods crash-loop (progress deadline)",
        "test_a_canary_that_crash_loops...",
        **figures,
        rollback_seconds=run.seconds("Rollback", "RecordRollback"),
        deploy_to_rollback_seconds=run.seconds("DeployCanary", "Rollback"),
    )
    # (the platform's manifest fixed again)
    json_patch(
        driver,
        config,
        "canary",
        [
            {"op": "replace", "path": env_path, "value": "1"},
            {"op": "replace", "path": "/spec/progressDeadlineSeconds", "value": 300},
        ],
    )

    # Given the next canary patch lands with a readiness probe its pods never pass, and a 12 s
    # ready timeout in the model config
    config = driver.model(name, canary={**FAST, "ready_timeout_seconds": 12})
    faults.add(
        "patch",
        "deployments",
        namespace=k.namespace,
        name=k.canary_deployment,
        status=None,
        rewrite=lambda ops: [*ops, {"op": "replace", "path": probe_path, "value": "/never-ready"}],
    )
    with traffic_on(driver, config) as traffic:
        run = start(driver, config, "never-ready.csv")
        # Then the canary runs but is never ready (never in the Service), and the run rolls back
        figures = final_state(driver, run, traffic, image=v1_image, status="FAILED", outcome="rolled_back")
    record = run.record()
    assert record["error"] == "RolloutFailedError" and "ready_timeout_seconds=12" in record["cause"], record
    assert figures["canary_ok"] == 0 == figures["canary_failed"]
    matrix.record(
        "canary never becomes ready (ready timeout)",
        "test_a_canary_that_crash_loops...",
        **figures,
        rollback_seconds=run.seconds("Rollback", "RecordRollback"),
        deploy_to_rollback_seconds=run.seconds("DeployCanary", "Rollback"),
    )
    json_patch(driver, config, "canary", [{"op": "replace", "path": probe_path, "value": "/ping"}])
    driver.retire(config)


# --- 2. Kubernetes API errors through the real client, the read timeout firing -----------------------
#: One run, one kind of fault in each phase: the API server's 500 and 409 reach the product's client
#: over HTTP, and the stalled patch outlasts the client's real read timeout. (The other two rows of
#: the Latin square over canary, promotion and rollback, which decide nothing new once the client has
#: named the error, are at the integration tier: tests/integration/workflow/test_fault_matrix.py.)
KINDS = {"canary": "500", "promotion": "409", "rollback": "timeout"}


def arm(driver: Any, config: ModelConfig, which: str, kind: str, phase: str) -> Any:
    k = config.kubernetes
    name = k.canary_deployment if which == "canary" else k.stable_deployment
    where = {"namespace": k.namespace, "name": name}
    if kind == "500":  # twice; in the rollback five times, more than the old 4 retries allowed
        return driver.cloud.kube_faults.add(
            "patch", "deployments", status=500, times=5 if phase == "rollback" else 2, **where
        )
    if kind == "409":  # more than the rollout's own 3 re-reads, so the workflow retries too
        return driver.cloud.kube_faults.add("patch", "deployments", status=409, times=4, **where)
    # the client gives up after its read timeout (the stack's KubeReadTimeoutSeconds); the server
    # goes on and applies the patch
    read_timeout = float(driver.cloud.settings.extra_parameters["KubeReadTimeoutSeconds"])
    return driver.cloud.kube_faults.add("patch", "deployments", status=None, delay=read_timeout + 1, **where)


def test_kubernetes_api_errors_and_a_read_timeout_that_fires_are_retried_to_the_right_outcome(driver, matrix):
    name = "e2e-f-api"
    config, v1_image = deploy_v1(driver, name, watch_seconds=60)
    # Given faults on the canary's first patch and the stable's first patch (the promotion)
    canary_fault = arm(driver, config, "canary", KINDS["canary"], "canary")
    promotion_fault = arm(driver, config, "stable", KINDS["promotion"], "promotion")
    with traffic_on(driver, config) as traffic:
        run = start(driver, config, "api-0.csv")
        # When the version is promoted and, in its watch, the stable alarm fires while the
        # rollback's restore of the stable stalls past the client's read timeout
        run.wait_state("Watch", timeout=240)
        time.sleep(1)
        assert canary_fault.fired == canary_fault.times and promotion_fault.fired == promotion_fault.times
        rollback_fault = arm(driver, config, "stable", KINDS["rollback"], "rollback")
        alarm(driver, name, "stable", "e2e: stable errors after promotion")
        # Then every phase retried through its fault: rolled back to exactly v1's image
        figures = final_state(driver, run, traffic, image=v1_image, status="FAILED", outcome="rolled_back")
    settle_alarms(driver, name)
    record = run.record()
    assert record["error"] == "WatchAlarmError" and rollback_fault.fired == rollback_fault.times, record
    # And the stalled patch was given up on by the client's read timeout, then retried
    assert any(
        error == "KubeUnavailableError" and "Read timed out" in cause for error, cause in run.failures()
    ), run.failures()
    for phase, kind in KINDS.items():
        matrix.record(
            f"Kubernetes API {kind} during {phase}",
            "test_kubernetes_api_errors...",
            **figures,
            rollback_seconds=run.seconds("Rollback", "RecordRollback"),
        )
    driver.retire(config)
