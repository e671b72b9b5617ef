"""The Kubernetes fake's patch faults, which the workflow's fault-matrix rows rely on: a fault
before the patch changes nothing, one after it leaves the patch applied, each fires `times` times."""

from __future__ import annotations

import pytest
from modelops.errors import KubeUnavailableError

from tests.integration.fake_kube import FakeKube, deployment

IMAGE = "repo@sha256:" + "1" * 64
NEW = [
    {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "repo@sha256:" + "2" * 64}
]


def fresh() -> FakeKube:
    kube = FakeKube()
    kube.add(deployment("churn-stable", "stable", IMAGE, 3))
    return kube


def image(kube: FakeKube) -> str:
    return str(kube.deployments["churn-stable"]["spec"]["template"]["spec"]["containers"][0]["image"])


def fail() -> None:
    raise KubeUnavailableError("patch deployments.apps models/churn-stable: API server answered 500: boom")


def test_a_fault_before_the_patch_changes_nothing_and_fires_its_times_only():
    kube = fresh()
    fault = kube.on_patch("churn-stable", before=lambda ops: fail(), times=2)
    for _ in range(2):
        with pytest.raises(KubeUnavailableError, match="500"):
            kube.patch_deployment("models", "churn-stable", NEW)
        assert image(kube) == IMAGE and kube.deployments["churn-stable"]["metadata"]["generation"] == 1
    # the third patch meets no fault
    kube.patch_deployment("models", "churn-stable", NEW)
    assert fault.fired == 2 and image(kube).endswith("2" * 64)


def test_a_fault_after_the_patch_raises_with_the_patch_applied():
    kube = fresh()
    fault = kube.on_patch("churn-stable", after=fail)
    with pytest.raises(KubeUnavailableError):
        kube.patch_deployment("models", "churn-stable", NEW)
    assert fault.fired == 1 and image(kube).endswith("2" * 64)
    assert kube.deployments["churn-stable"]["metadata"]["generation"] == 2
    # the same patch again (a retry) changes no spec: no new generation
    kube.patch_deployment("models", "churn-stable", NEW)
    assert kube.deployments["churn-stable"]["metadata"]["generation"] == 2


def test_a_fault_on_another_deployment_does_not_fire():
    kube = fresh()
    fault = kube.on_patch("churn-canary", before=lambda ops: fail())
    kube.patch_deployment("models", "churn-stable", NEW)
    assert fault.fired == 0 and image(kube).endswith("2" * 64)
