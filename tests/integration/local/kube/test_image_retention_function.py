"""The image_retention function end to end: its handler over moto's ECR and DynamoDB, reading the
Deployments from the Kubernetes stand-in over HTTPS as the group the shipped Role binds for it
(`modelops-image-retention`: get on the model's two Deployments, nothing else)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client
from modelops import wiring
from modelops.adapters.kube import KubeClient
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.ports import Kube
from modelops.steps.build import image_tag
from moto import mock_aws

from modelops_local.kube import KubeApiServer, KubeStore
from modelops_local.kube.rbac import RoleAuthorizer
from modelops_local.manifests import render_manifests
from tests.ecr_images import push_image
from tests.integration.workflow.harness import Context, load_handler
from tests.state_table import create_state_table

ROOT = Path(__file__).resolve().parents[4]
TOKENS = {"admin-token": "admin", "retention-token": "retention-fn"}


def _push(ecr: Any, n: int, tag: str) -> str:
    return push_image(ecr, "modelops-serving", n, tag)


class RetentionServices(wiring.Services):
    """The AWS adapters over moto; Kubernetes is the stand-in, reached with the clean-up's token."""

    def __init__(self, kube: Kube) -> None:
        super().__init__()
        self._kube = kube

    def kube(self) -> Kube:
        return self._kube


@pytest.fixture
def world(offline_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        uri = ecr.create_repository(repositoryName="modelops-serving")["repository"]["repositoryUri"]
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(ddb, "state")
        for key, value in {
            "TABLE_NAME": "state",
            "STACK_NAME": "modelops",
            "IMAGE_REPOSITORY_NAME": "modelops-serving",
            "IMAGE_REPOSITORY_URI": uri,
            "RETENTION_GRACE_HOURS": "1e-9",  # every image pushed before the call is past it
        }.items():
            monkeypatch.setenv(key, value)

        # Given model churn (keep_promoted 1): v1-v3 promoted, v4 rolled back; a team's own image
        config = load_config_file(ROOT / "models" / "churn.yaml")
        document = {**config.to_document(), "retention": {"keep_promoted": 1}}
        store = StateStore("state", ddb)
        store.put_model_document("churn", document)
        digests = {v: _push(ecr, v, image_tag("churn", str(v), f"run-0000000{v}")) for v in (1, 2, 3, 4)}
        digests[0] = _push(ecr, 99, "team-training-image")
        for v, status in ((1, "promoted"), (2, "promoted"), (3, "promoted"), (4, "rolled_back")):
            store.put_doc(
                "churn",
                f"HISTORY#2026-12-0{v}T00:00:00+00:00#run-{v}",
                {"status": status, "version": str(v), "image": f"{uri}@{digests[v]}"},
            )

        # And the cluster: stable runs v2 (someone rolled back to it by hand), the canary v4 at 0 replicas
        kube_store = KubeStore()
        for obj in render_manifests("churn", config.kubernetes.namespace, f"{uri}@{digests[2]}", "2", 2):
            if obj["kind"] in ("Namespace", "Deployment"):
                kube_store.create(obj, namespace=obj["metadata"].get("namespace"))
        canary = kube_store.get(
            "Deployment", config.kubernetes.namespace, config.kubernetes.canary_deployment
        )
        canary["spec"]["template"]["spec"]["containers"][0]["image"] = f"{uri}@{digests[4]}"
        kube_store.update(canary, namespace=config.kubernetes.namespace)
        rbac = render_manifests("churn", config.kubernetes.namespace, "repo/model:1", "0", 0)
        authorize = RoleAuthorizer(rbac, {"retention-fn": ["modelops-image-retention"]})
        server = KubeApiServer(kube_store, authenticate=TOKENS.get, authorize=authorize).start()
        (tmp_path / "ca.pem").write_bytes(server.ca_pem)
        configuration = client.Configuration(
            host=server.url,
            ssl_ca_cert=str(tmp_path / "ca.pem"),
            api_key={"authorization": "Bearer retention-token"},
        )
        configuration.retries = 0
        api = client.ApiClient(configuration)
        try:
            with wiring.installed(RetentionServices(KubeClient(api))):
                yield {"ecr": ecr, "digests": digests, "rbac": rbac, "server": server}
        finally:
            api.close()
            server.stop()


def _stored(ecr: Any) -> set[str]:
    return {d["imageDigest"] for d in ecr.describe_images(repositoryName="modelops-serving")["imageDetails"]}


def test_the_function_deletes_only_what_nothing_needs(world: dict[str, Any]) -> None:
    handler = load_handler("image_retention").handler
    ecr, digests = world["ecr"], world["digests"]

    # When it runs as a dry run first, Then it names v1 and deletes nothing
    dry = handler({"dry_run": True}, Context("modelops-image-retention"))
    assert dry["blocked"] is None and [e["digest"] for e in dry["deleted"]] == [digests[1]]
    assert _stored(ecr) == set(digests.values())

    # When it runs for real (the schedule's input)
    report = handler({"dry_run": False}, Context("modelops-image-retention"))

    # Then v1 is gone; v2 (stable), v3 (last promoted), v4 (canary) and the team's image stay
    assert [e["digest"] for e in report["deleted"]] == [digests[1]] and report["failures"] == []
    assert _stored(ecr) == {digests[0], digests[2], digests[3], digests[4]}
    reasons = {e["digest"]: e["reasons"] for e in report["kept"]}
    assert reasons[digests[2]] == ["stable Deployment of churn"]
    assert reasons[digests[3]] == ["promoted version 3 of churn (last 1)"]
    assert reasons[digests[4]] == ["canary Deployment of churn"]
    # And it only ever read: two GETs per run, by name, as the retention group
    calls = [r for r in world["server"].requests if "deployments" in r[1]]
    assert calls and all(r[0] == "GET" and r[3] == "retention-fn" for r in calls)


def test_without_its_rbac_the_function_deletes_nothing_and_names_the_model(world: dict[str, Any]) -> None:
    # Given the clean-up's identity is mapped to no group (its access entry is missing)
    world["server"].authorize = RoleAuthorizer(world["rbac"], {"retention-fn": []})
    handler = load_handler("image_retention").handler

    report = handler({}, Context("modelops-image-retention"))

    assert report["blocked"]["model"] == "churn" and "Forbidden" in report["blocked"]["reason"]
    assert report["deleted"] == [] and _stored(world["ecr"]) == set(world["digests"].values())


def test_a_mistyped_request_is_refused_before_anything_is_read(world: dict[str, Any]) -> None:
    handler = load_handler("image_retention").handler
    with pytest.raises(Exception, match="dryrun"):
        handler({"dryrun": True}, Context("modelops-image-retention"))
    assert _stored(world["ecr"]) == set(world["digests"].values())
