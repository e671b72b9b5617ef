from __future__ import annotations

from modelops.canary import AlarmState, VariantMetrics, alarm_name, analyze, parse_alarm_name
from modelops.config import CanaryConfig

CFG = CanaryConfig(
    replicas=1,
    min_requests=50,
    max_error_rate=0.02,
    max_error_rate_increase=0.01,
    max_latency_p99_ms=500,
    max_latency_ratio=1.5,
)
STABLE = VariantMetrics(requests=1000, errors=5, latency_p99_ms=40)


def test_healthy_canary_passes():
    report = analyze(CFG, canary=VariantMetrics(200, 1, 45), stable=STABLE, alarms=[])
    assert report.verdict == "pass" and report.reasons == []


def test_minimum_request_guard():
    report = analyze(CFG, canary=VariantMetrics(10, 0, 30), stable=STABLE, alarms=[])
    assert report.verdict == "fail" and "fewer than min_requests 50" in report.reasons[0]


def test_a_first_version_with_no_production_traffic_is_judged_without_the_request_guard():
    # Given nothing serves the model yet (no stable replicas): no traffic and no baseline
    idle = VariantMetrics(requests=0, errors=0, latency_p99_ms=None)
    # When the canary is analyzed as a first version
    report = analyze(CFG, canary=VariantMetrics(3, 0, 30), stable=idle, alarms=[], first_version=True)
    # Then the guard is a note, not a reason
    assert report.verdict == "pass" and "first version" in report.notes[0]


def test_a_first_version_still_fails_on_its_alarm_and_its_errors():
    idle = VariantMetrics(requests=0, errors=0, latency_p99_ms=None)
    alarm = AlarmState("p-churn-canary-error-rate", "ALARM", "canary")
    report = analyze(CFG, canary=VariantMetrics(3, 0, 30), stable=idle, alarms=[alarm], first_version=True)
    assert report.verdict == "fail" and "is in ALARM" in report.reasons[0]
    report = analyze(CFG, canary=VariantMetrics(10, 5, 30), stable=idle, alarms=[], first_version=True)
    assert report.verdict == "fail" and any("exceeds max_error_rate" in r for r in report.reasons)


def test_error_rate_absolute_and_relative():
    report = analyze(CFG, canary=VariantMetrics(200, 10, 40), stable=STABLE, alarms=[])
    assert report.verdict == "fail"
    assert any("exceeds max_error_rate" in r for r in report.reasons)
    assert any("exceeds stable" in r for r in report.reasons)


def test_latency_ratio_against_stable():
    report = analyze(CFG, canary=VariantMetrics(200, 0, 100), stable=STABLE, alarms=[])
    assert report.verdict == "fail" and "1.5x" in report.reasons[0]


def test_latency_ratio_needs_an_absolute_increase_too():
    # Given a fast model: stable p99 2 ms, the canary's 15 ms (a fresh pod's slow first slices)
    fast = VariantMetrics(requests=1000, errors=0, latency_p99_ms=2)
    # Then 7.5x is not a regression while the canary is under 20 ms (min_latency_increase_ms) above stable
    report = analyze(CFG, canary=VariantMetrics(200, 0, 15), stable=fast, alarms=[])
    assert report.verdict == "pass", report.reasons
    # And past the margin the ratio counts again
    report = analyze(CFG, canary=VariantMetrics(200, 0, 22.5), stable=fast, alarms=[])
    assert report.verdict == "fail" and "more than 20 ms above it" in report.reasons[0]
    # And a margin of 0 restores the pure ratio
    strict = CFG.model_copy(update={"min_latency_increase_ms": 0})
    assert analyze(strict, canary=VariantMetrics(200, 0, 15), stable=fast, alarms=[]).verdict == "fail"


def test_canary_alarm_fails_stable_alarm_is_only_noted():
    alarms = [
        AlarmState("p-churn-canary-error-rate", "ALARM", "canary"),
        AlarmState("p-churn-stable-latency-p99", "ALARM", "stable"),
    ]
    report = analyze(CFG, canary=VariantMetrics(200, 0, 40), stable=STABLE, alarms=alarms)
    assert report.verdict == "fail" and len(report.reasons) == 1
    assert "not counted against the canary" in report.notes[0]


def test_preexisting_alarm_reported_and_blocks_only_if_canary():
    stable_pre = AlarmState("p-churn-stable-error-rate", "ALARM", "stable", preexisting=True)
    ok = analyze(CFG, canary=VariantMetrics(200, 0, 40), stable=STABLE, alarms=[stable_pre])
    assert ok.verdict == "pass" and "already in ALARM" in ok.notes[0]
    canary_pre = AlarmState("p-churn-canary-error-rate", "ALARM", "canary", preexisting=True)
    blocked = analyze(CFG, canary=VariantMetrics(200, 0, 40), stable=STABLE, alarms=[canary_pre])
    assert blocked.verdict == "fail" and "since before the canary started" in blocked.reasons[0]


def test_alarm_names_round_trip_and_foreign_alarms_ignored():
    name = alarm_name("modelops-", "fraud-v2", "canary", "error-rate")
    assert parse_alarm_name(name, "modelops-") == ("fraud-v2", "canary", "error-rate")
    assert parse_alarm_name("other-stack-fraud-canary-error-rate", "modelops-") is None
    assert parse_alarm_name("modelops-fraud-canary-cpu", "modelops-") is None
