"""`make demo`'s story, as a test: v1 deployed, v2 promoted through a canary, v3 rolled back on its
canary alarm, with steady traffic that never fails on the stable variant."""

from __future__ import annotations

import pytest

from modelops_local.demo import run_demo

pytestmark = pytest.mark.timeout(600)


def test_the_demo_story_holds(cloud, tmp_path):
    # Given a fresh local runtime
    # When the demo's story runs on it
    code, facts = run_demo(cloud, tmp_path, lambda _: None)

    # Then every expectation held
    assert facts["failures"] == [] and code == 0
    outcomes = [run.record.get("status") for run in facts["runs"]]
    assert outcomes == ["promoted", "promoted", "rolled_back"]
    # And the bad version (the team's script: its model fails on new customers) was judged better,
    # passed the smoke test, and its canary alarm fired and caused the rollback
    bad = facts["runs"][2]
    assert bad.record["evaluation"]["decision"] == "better", bad.record
    assert "SmokeTest" in [name for _, name in bad.states] and bad.record["error"] == "CanaryAlarmError"
    # And under steady load nothing failed on stable; only the faulty canary's own requests failed
    counts = facts["traffic_counts"]
    assert counts["stable"]["failed"] == 0 and counts["stable"]["ok"] > 500
    assert counts["canary"]["failed"] > 0
    assert "?" not in counts
    # And the report was written with the state graph and the traffic charts
    report = (tmp_path / "demo-report.html").read_text()
    assert report.count("<section>") == 3 and "rollback" in report and "polyline" in report
