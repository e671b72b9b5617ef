"""Issue 14 on the local runtime: an approval that times out, and `modelops abort` in each phase
(canary, bake, approval wait, promotion, watch), each rolled back with the stable left on (or put
back to) the version it served and the model's lock released.

One test, one model, one runtime, shortest times: two trained versions, then every case is a
restore run (`modelops rollback --to 1`: the same rollout states, no training or build) aborted
or timed out, so each case costs a canary's start and its rollback only. A wait that is aborted
ends at once, so the waits are long where a case aborts them (no race with their end) and 1 s
where a case must pass them. The rules and every refusal: tests/integration/workflow/test_rollout_control.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from modelops.adapters.aws import client

from modelops_cli.main import main

pytestmark = pytest.mark.timeout(600)
MODEL = "e2e-abort"
LONG = 120  # a wait that the case ends itself (abort), never by its timeout
#: the promotion's patch of the stable, held this long (under the client's read timeout, 5 s), so
#: the `promoting` phase lasts long enough to be aborted in
PROMOTE_STALL_SECONDS = 3.0


def test_an_approval_timeout_and_an_abort_in_each_phase_roll_back_and_release_the_lock(
    driver, cli_environment, capsys
):
    stack = driver.cloud.info.stack_name
    client.cache_clear()  # the CLI's clients, on the runtime's endpoint
    store, sfn = driver.cloud.store(), driver.cloud.client("stepfunctions")
    quick = {"bake_seconds": 1, "watch_seconds": 1, "min_requests": 0}
    config = driver.model(MODEL, canary=quick)
    # Given two trained versions promoted in turn (the second serves)
    v1 = driver.run(MODEL, driver.dataset(MODEL, 1500, 11), "v1.csv").record
    v2 = driver.run(MODEL, driver.dataset(MODEL, 4000, 12), "v2.csv").record
    assert v1["status"] == "promoted" and v2["status"] == "promoted", (v1, v2)
    assert driver.image(config) == v2["image"] != v1["image"]
    timings: dict[str, float] = {}

    def cli(*argv: str) -> None:
        assert main(["--stack", stack, *argv]) == 0, capsys.readouterr().err

    def restore_v1(**sections: dict[str, Any]) -> str:
        """Put the model's config for the case, start `rollback --to` version 1; its execution."""
        driver.model(MODEL, **sections)
        capsys.readouterr()
        cli("rollback", "--model", MODEL, "--to", str(v1["version"]), "--reason", "e2e")
        name = capsys.readouterr().out.split("started ", 1)[1].split(":", 1)[0]
        return next(arn for arn in driver.executions() if arn.endswith(f":{name}"))

    def in_phase(phase: str) -> dict[str, Any]:
        waits = phase in ("bake", "approval", "watch")
        return driver.wait_for(
            lambda: (
                (r := store.get_rollout(MODEL))
                and r.get("phase") == phase
                and (not waits or r.get("task_token"))
                and r
            ),
            f"phase {phase}",
            timeout=120,
        )

    def rolled_back(arn: str, error: str) -> dict[str, Any]:
        """The run ended rolled back for `error`: v2 serves, canary at 0, no rollout, lock free."""
        driver.wait_for(
            lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", "its end", 120
        )
        record = driver.record(MODEL, arn.rsplit(":", 1)[-1])
        assert record["status"] == "rolled_back" and record["error"] == error, record
        assert driver.image(config) == v2["image"]
        assert driver.deployment(config, "stable")["status"]["readyReplicas"] == 2
        assert driver.deployment(config, "canary")["spec"]["replicas"] == 0
        assert store.lock_holder(MODEL) is None and store.get_rollout(MODEL) is None
        assert store.get_doc(MODEL, "CHAMPION")["version"] == v2["version"]
        return record

    def stable_generation() -> int:
        return int(driver.deployment(config, "stable")["metadata"]["generation"])

    # --- an approval nobody gives: rolled back when approval.timeout_seconds passes ---------------
    started, before = time.monotonic(), stable_generation()
    arn = restore_v1(canary=quick, approval={"required": True, "timeout_seconds": 1})
    record = rolled_back(arn, "ApprovalTimeoutError")
    assert "within approval.timeout_seconds=1" in record["cause"]
    assert stable_generation() == before  # the stable was never touched
    timings["approval timeout"] = time.monotonic() - started

    # --- abort in each phase ------------------------------------------------------------------------
    long_bake = {**quick, "bake_seconds": LONG}
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("canary", long_bake, {"required": False}),
        ("bake", long_bake, {"required": False}),
        ("approval", quick, {"required": True, "timeout_seconds": LONG}),
        ("promoting", long_bake, {"required": False}),
        ("watch", {**long_bake, "watch_seconds": LONG}, {"required": False}),
    ]
    k = config.kubernetes
    for phase, canary, approval in cases:
        started, before = time.monotonic(), stable_generation()
        if phase == "canary":  # the smoke test held 2 s: the canary phase outlasts the CLI's call
            driver.cloud.kube_faults.add(
                "create",
                "services/proxy",
                status=None,
                delay=2.0,
                namespace=k.namespace,
                name=k.canary_service,
            )
        if phase == "promoting":
            driver.cloud.kube_faults.add(
                "patch",
                "deployments",
                status=None,
                delay=PROMOTE_STALL_SECONDS,
                namespace=k.namespace,
                name=k.stable_deployment,
            )
        arn = restore_v1(canary=canary, approval=approval)
        if phase in ("promoting", "watch"):
            in_phase("bake")
            cli("promote", "--model", MODEL, "--reason", "e2e: skip the bake")
        in_phase(phase)
        cli("abort", "--model", MODEL, "--reason", f"e2e: abort in {phase}")
        record = rolled_back(arn, "AbortRequestedError")
        assert f"in phase {phase}: e2e: abort in {phase}" in record["cause"], record
        if phase in ("canary", "bake", "approval"):
            assert stable_generation() == before  # never promoted: the stable untouched
        timings[f"abort in {phase}"] = time.monotonic() - started
    driver.retire(config)
    print("\nrollout aborts, seconds per case: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
