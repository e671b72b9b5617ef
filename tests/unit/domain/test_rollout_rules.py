from __future__ import annotations

import copy

import jsonpatch
import pytest
from modelops.deployments import image_patch, rollout_status
from modelops.errors import KubeInvalidError, RolloutFailedError

IMAGE = "123.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "a" * 64


def _deployment(**status):
    return {
        "metadata": {"name": "churn-canary", "namespace": "models", "generation": 2},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "churn"}},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "envoy:1"},
                        {
                            "name": "model",
                            "image": "old@sha256:" + "b" * 64,
                            "env": [{"name": "MODELOPS_VERSION", "value": "3"}],
                        },
                    ]
                },
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            **status,
        },
    }


def test_patch_targets_the_named_container_guarded_by_test_op():
    # Given a Deployment whose model container is second
    deployment = _deployment()
    # When the image patch is built and applied with an RFC 6902 implementation
    ops = image_patch(deployment, container="model", image=IMAGE, replicas=1, version="4", run_id="r1")
    patched = jsonpatch.apply_patch(copy.deepcopy(deployment), ops)
    # Then only that container changed, with version env and annotations
    assert ops[0] == {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "model"}
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "envoy:1" and containers[1]["image"] == IMAGE
    assert containers[1]["env"][0]["value"] == "4"
    assert patched["spec"]["replicas"] == 1
    assert patched["spec"]["template"]["metadata"]["annotations"]["modelops.io/version"] == "4"


def test_test_op_fails_if_container_moved():
    deployment = _deployment()
    ops = image_patch(deployment, container="model", image=IMAGE)
    moved = copy.deepcopy(deployment)
    moved["spec"]["template"]["spec"]["containers"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)


def test_image_must_be_pinned_by_digest():
    with pytest.raises(KubeInvalidError, match="not pinned by digest"):
        image_patch(_deployment(), container="model", image="repo:latest")


def test_missing_container_is_named():
    with pytest.raises(KubeInvalidError, match="no container 'web'"):
        image_patch(_deployment(), container="web", image=IMAGE)


@pytest.mark.parametrize(
    ("meta", "status", "done", "message"),
    [
        ({"generation": 3}, {}, False, "spec update to be observed"),
        ({}, {"updatedReplicas": 1}, False, "1 out of 2 new replicas"),
        ({}, {"replicas": 3}, False, "1 old replicas are pending termination"),
        ({}, {"availableReplicas": 1}, False, "1 of 2 updated replicas are available"),
        ({}, {}, True, "successfully rolled out"),
    ],
)
def test_rollout_status_like_kubectl(meta, status, done, message):
    deployment = _deployment(**status)
    deployment["metadata"].update(meta)
    result = rollout_status(deployment, container="model", expected_image=None)
    assert result.done is done and message in result.message


def test_progress_deadline_exceeded_fails():
    deployment = _deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
            }
        ]
    )
    deployment["status"]["updatedReplicas"] = 1
    with pytest.raises(RolloutFailedError, match="progress deadline"):
        rollout_status(deployment, container="model", expected_image=None)


def test_someone_else_changed_the_image():
    with pytest.raises(RolloutFailedError, match="changed by someone else"):
        rollout_status(_deployment(), container="model", expected_image=IMAGE)
