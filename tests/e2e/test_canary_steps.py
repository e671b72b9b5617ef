"""A three-step canary on the local runtime through a Gateway API HTTPRoute: at each step the
canary answers its step's share of the model Service's traffic (counted by the answers'
model_version), then the version is promoted."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_local.demo import SteadyTraffic

pytestmark = pytest.mark.timeout(900)
MODEL = "e2e-steps"
STEPS = [10, 25, 50]


def test_three_httproute_steps_give_the_canary_each_steps_share_then_promote(driver):
    # Given a model routed by an HTTPRoute (the gateway_api manifests: its stable Service, the route
    # parented to the model Service, the Role that may patch it), stepping 10/25/50, its first
    # version (no traffic yet) 1 s per step
    def put(bake_seconds: int) -> Any:
        return driver.model(
            MODEL,
            canary={
                "router": "gateway_api",
                "steps": STEPS,
                "bake_seconds": bake_seconds,
                "min_requests": 10,
            },
            kubernetes={"stable_service": f"{MODEL}-stable", "http_route": MODEL},
        )

    config = put(bake_seconds=1)
    v1 = driver.run(MODEL, driver.dataset(MODEL, 1500, 11), "v1.csv")
    assert v1.status == "SUCCEEDED" and v1.record["status"] == "promoted", v1.record
    route = driver.cloud.kube_store.get("httproutes", "e2e", MODEL)
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]

    # When a better version rolls out under 40 predictions/s on the model's Service, 6 s per step
    config = put(bake_seconds=6)
    traffic = SteadyTraffic(
        driver.cloud.service_url("e2e", MODEL), [[12, 80, 3, 20, 1, 1]], rate_per_second=40
    ).start()
    try:
        v2 = driver.run(MODEL, driver.dataset(MODEL, 4000, 12), "v2.csv")
    finally:
        traffic.stop()

    # Then it is promoted after three steps, each baked and analysed
    assert v2.status == "SUCCEEDED" and v2.record["status"] == "promoted", v2.record
    states = [name for _, name in v2.states]
    assert states.count("ShiftTraffic") == 3 and states.count("AnalyzeCanary") == 3
    steps = v2.record["traffic_steps"]
    assert [(s["weight"], s["reached"], s["verdict"]) for s in steps] == [
        (w, float(w), "pass") for w in STEPS
    ]
    # And at each step the canary answered the step's share of the requests (within 3 points),
    # counted from just after the weight was set until the next step (the last: until promotion
    # began, after which the stable serves the new version too)
    new = str(v2.record["version"])
    promotion = next(at for at, name in v2.states if name == "CanaryPassed")
    ends = [s["at"] - 0.2 for s in steps[1:]] + [promotion]
    shares = []
    for step, end in zip(steps, ends, strict=True):
        answers = [a for a in traffic.answers if step["at"] + 0.5 <= a.at < end and a.status == 200]
        canary = sum(1 for a in answers if a.version == new)
        assert len(answers) >= 100, (step, len(answers))
        shares.append(100.0 * canary / len(answers))
    assert all(abs(share - weight) <= 3 for share, weight in zip(shares, STEPS, strict=True)), shares
    # And it ends promoted: the route back at 100/0 on the stable, which runs the new version
    route = driver.cloud.kube_store.get("httproutes", "e2e", MODEL)
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    assert driver.image(config) == v2.record["image"]
    assert driver.deployment(config, "canary")["spec"]["replicas"] == 0
    # And no request failed along the way
    assert traffic.summary().get("stable", {}).get("failed", 0) == 0, traffic.summary()
    assert traffic.summary().get("canary", {}).get("failed", 0) == 0, traffic.summary()
    print(f"measured canary share per step {STEPS}: {[round(s, 1) for s in shares]}")
    driver.retire(config)
