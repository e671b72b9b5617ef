"""The drift loop on the local runtime: after the demo model's version is promoted, the demo
client shifts its traffic (`modelops local demo --drift`'s `shifted_customers`); the drift monitor's
PSI crosses the threshold, the drift alarm fires, and a retrain run starts with trigger `drift`
carrying the figures. The time from the shift to the run's start is printed and written to
<pytest basetemp>/drift-loop.json."""

from __future__ import annotations

import json

import pytest

from modelops_local.demo import DRIFT_SETTINGS, run_drift_demo

pytestmark = pytest.mark.timeout(900)


def test_shifted_traffic_starts_a_retrain_on_the_drift_trigger(cloud, driver, tmp_path, tmp_path_factory):
    # Given the demo's churn model (as its own model, drifty) with the drift monitor on, its first
    # version promoted and steady traffic like the training data's; When the demo client shifts
    # its traffic
    config = driver.model("drifty", drift=DRIFT_SETTINGS)
    lines: list[str] = []
    code, facts = run_drift_demo(cloud, tmp_path, lines.append, versions=1, config=config)

    # Then a run started on the drift trigger, with the monitor's figures that raised the alarm
    assert facts["failures"] == [] and code == 0, "\n".join(lines)
    request = facts["drift_request"]
    assert request["trigger"] == "drift" and request["reason"].startswith("drift: PSI")
    figures = request["drift"]
    assert figures["drifted"] and figures["max_psi"] > DRIFT_SETTINGS["threshold"]
    assert figures["max_feature"] in {"tenure_months", "monthly_charges"}
    assert figures["samples"] >= DRIFT_SETTINGS["min_samples"]
    # And the version's baseline was recorded with its champion
    champion = cloud.store().get_doc("drifty", "CHAMPION")
    assert champion["baseline"]["artifact"].endswith("model.tar.gz") and champion["baseline"]["features"] == 6
    # And the drift run ended (it retrains the same data: its candidate ties and is rejected), lock free
    assert facts["drift_run_status"] == "SUCCEEDED"
    assert cloud.store().lock_holder("drifty") is None
    # And nothing the stable variant served failed meanwhile
    assert facts["traffic_counts"]["stable"]["failed"] == 0
    seconds = facts["shift_to_start_seconds"]
    out = tmp_path_factory.getbasetemp() / "drift-loop.json"
    out.write_text(json.dumps({"shift_to_start_seconds": seconds, "figures": figures}, indent=2))
    print(f"\ndrift loop: shift -> retrain run started in {seconds:.1f} s; PSI {figures['psi']}")
    driver.retire(config)
