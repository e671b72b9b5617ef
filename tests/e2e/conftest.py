"""One local runtime (`LocalCloud`) for the end-to-end tests, with helpers to drive runs.

Each test uses its own model (its own namespace, Deployments, alarms and lock), so the tests share
the runtime's start-up cost but not their state.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from modelops.config import ModelConfig, load_config_file

from modelops_local.cloud import ROOT, LocalCloud, LocalSettings
from modelops_local.demo import RunResult, find_new_execution_arn, follow
from modelops_local.sample_data import generate_churn_csv
from tests.e2e.sfn_history import history
from tests.waiting import wait_for

T = TypeVar("T")
BASE_CONFIG = ROOT / "models" / "churn-local.yaml"
KUBE_READ_TIMEOUT_SECONDS = 5


class Driver:
    def __init__(self, cloud: LocalCloud, workdir: Path) -> None:
        self.cloud = cloud
        self.workdir = workdir

    def model(self, name: str, **sections: dict[str, Any]) -> ModelConfig:
        """churn-local.yaml renamed to `name` (its own namespace objects), sections overridden."""
        doc = load_config_file(BASE_CONFIG).to_document()
        doc["name"] = name
        doc["kubernetes"].update(
            {
                "namespace": "e2e",
                "stable_deployment": f"{name}-stable",
                "canary_deployment": f"{name}-canary",
                "service": name,
                "canary_service": f"{name}-canary",
                "initial_replicas": 2,
            }
        )
        # The shortest windows: most tests judge what happens before the bake or after the watch,
        # and no traffic reaches a first version's canary; a test whose canary must be analysed
        # under traffic, or whose watch must be open long enough to fire an alarm in, says so.
        # No e2e test judges latency, and on a loaded 2-core host a fresh pod's p99 over a few
        # dozen requests is its slowest one: tens, at times hundreds, of ms of scheduling against
        # a 2-20 ms stable (57.8 ms against 19.0 ms rolled back an XGBoost canary under a CPU hog).
        # So the ratio counts only 250 ms above stable and the ceiling is 2 s; the latency rules
        # are proven in tests/unit/domain/test_canary_analysis.py and by the demo's defaults.
        doc["canary"].update(
            {
                "bake_seconds": 2,
                "watch_seconds": 1,
                "min_latency_increase_ms": 250,
                "max_latency_p99_ms": 2000,
            }
        )
        for section, values in sections.items():
            doc[section] = {**(doc.get(section) or {}), **values}
        config = ModelConfig.model_validate(doc)
        self.cloud.put_model(config)
        return config

    def executions(self) -> set[str]:
        return set(self.statuses())

    def statuses(self) -> dict[str, str]:
        """Every execution's ARN and status, from ListExecutions (one call per 1,000)."""
        sfn = self.cloud.client("stepfunctions")
        arns: dict[str, str] = {}
        kwargs: dict[str, Any] = {"stateMachineArn": self.cloud.info.state_machine_arn, "maxResults": 1000}
        for _ in range(20):
            page = sfn.list_executions(**kwargs)
            arns.update({e["executionArn"]: e["status"] for e in page["executions"]})
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        return arns

    def dataset(self, name: str, rows: int, seed: int) -> bytes:
        return generate_churn_csv(self.workdir / f"{name}-{rows}-{seed}.csv", rows, seed).read_bytes()

    def upload(self, model: str, data: bytes, key_name: str) -> str:
        return self.cloud.upload_dataset(model, data, key_name)

    def run(self, model: str, data: bytes, key_name: str, timeout: float = 240) -> RunResult:
        """Upload, find the execution it starts, follow it to the end, attach its history record."""
        known = self.executions()
        self.upload(model, data, key_name)
        sfn = self.cloud.client("stepfunctions")
        arn = find_new_execution_arn(sfn, self.cloud.info.state_machine_arn, known)
        _, result = follow(sfn, arn, lambda _: None, timeout=timeout)
        result.record = self.record(model, arn.rsplit(":", 1)[-1])
        return result

    def record(self, model: str, run_id: str) -> dict[str, Any]:
        records = self.cloud.store().query_docs(model, "HISTORY#", limit=50)
        return next((r for r in records if r.get("run_id") == run_id), {})

    def deployment(self, config: ModelConfig, which: str) -> dict[str, Any]:
        k = config.kubernetes
        name = k.stable_deployment if which == "stable" else k.canary_deployment
        return self.cloud.kube_store.get("Deployment", k.namespace, name)

    def image(self, config: ModelConfig, which: str = "stable") -> str:
        return str(self.deployment(config, which)["spec"]["template"]["spec"]["containers"][0]["image"])

    def retire(self, config: ModelConfig) -> None:
        """Scale the model's Deployments to 0 so later tests have the CPU."""
        k = config.kubernetes
        for name in (k.stable_deployment, k.canary_deployment):
            self.cloud.kube_store.patch(
                "Deployment", k.namespace, name, {"spec": {"replicas": 0}}, "application/merge-patch+json"
            )

    @staticmethod
    def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
        return wait_for(probe, what, timeout, interval=0.2)


def _environment() -> dict[str, str]:
    """os.environ without the variable pytest rewrites for every test phase."""
    return {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    before = _environment()
    settings = LocalSettings(
        state_dir=tmp_path_factory.mktemp("local-cloud"),
        # The workflow's poll of training, builds and rollouts (the stack's PollIntervalSeconds: 30
        # by default, 2 for `modelops local`): a run waits for it after each of those steps, and
        # the tests run about forty of them.
        poll_interval_seconds=1,
        # The rollout function's Kubernetes read timeout (20 s by default): the fault matrix waits
        # one out per stalled patch, and no request of a healthy run comes near it.
        extra_parameters={"KubeReadTimeoutSeconds": KUBE_READ_TIMEOUT_SECONDS},
    )
    running = LocalCloud(settings).start()
    try:
        yield running
    finally:
        running.stop()
    # The runtime never touches this process's environment (tests/integration/local/test_fence.py)
    assert _environment() == before


@pytest.fixture
def cli_environment(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What `eval "$(modelops local env)"` does in a user's shell, for a test that runs the CLI's
    `main` in this process: the environment points at the runtime, the CLI's cached clients are
    rebuilt from it, and both are put back afterwards."""
    from modelops.adapters.aws import client

    for key, value in cloud.endpoints.environment().items():
        monkeypatch.setenv(key, value)
    client.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        client.cache_clear()


@pytest.fixture(scope="session")
def driver(cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Driver:
    return Driver(cloud, tmp_path_factory.mktemp("e2e-data"))


#: `E2E_TIMELINE=FILE pytest -m e2e ...` appends one JSON line per test to FILE.<worker>: the test's
#: wall-clock start and end and, for every execution started meanwhile, each state it entered and
#: when (tools/e2e_timeline.py prints where each test's time went). Off by default: reading the
#: histories costs a few seconds after a burst.
TIMELINE = os.environ.get("E2E_TIMELINE")


@pytest.fixture(autouse=True)
def _timeline(request: pytest.FixtureRequest) -> Iterator[None]:
    if not TIMELINE or "cloud" not in request.fixturenames:
        yield
        return
    cloud: LocalCloud = request.getfixturevalue("cloud")
    sfn = cloud.client("stepfunctions")
    started = time.time()
    yield
    ended = time.time()
    executions = []
    kwargs: dict[str, Any] = {"stateMachineArn": cloud.info.state_machine_arn, "maxResults": 1000}
    for _ in range(50):
        page = sfn.list_executions(**kwargs)
        executions += [e for e in page["executions"] if e["startDate"].timestamp() >= started - 1]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    runs = []
    for execution in executions:
        arn = execution["executionArn"]
        events = history(sfn, arn)
        stop = execution.get("stopDate")
        runs.append(
            {
                "name": arn.rsplit(":", 1)[-1],
                "status": execution["status"],
                "start": execution["startDate"].timestamp(),
                "stop": stop.timestamp() if stop else None,
                "states": [
                    (e["timestamp"].timestamp(), e["stateEnteredEventDetails"]["name"])
                    for e in events
                    if "stateEnteredEventDetails" in e
                ],
            }
        )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    line = {"test": request.node.nodeid, "worker": worker, "start": started, "end": ended, "runs": runs}
    with open(f"{TIMELINE}.{worker}", "a") as out:
        out.write(json.dumps(line) + "\n")
