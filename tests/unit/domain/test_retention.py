"""Image retention (steps/retention.py) with fakes of its three ports: 20 models, 60 builds.

The expected keep set is built here from how the fixture was made (which image each Deployment
runs, which versions were promoted), not from the module's own rules."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from modelops.config import load_config_file
from modelops.errors import KubeNotFoundError, KubeUnavailableError
from modelops.ports import DeleteFailure, StoredImage
from modelops.steps.build import image_tag
from modelops.steps.retention import clean_up_images, repository_reference

ROOT = Path(__file__).resolve().parents[3]
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GRACE = 24 * 3600.0
BASE = load_config_file(ROOT / "models" / "churn.yaml").to_document()


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


@dataclass
class FakeCatalog:
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # oldest first
    docs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_names(self) -> list[str]:
        return sorted(self.configs)

    def get_model_document(self, model: str) -> dict[str, Any] | None:
        return self.configs.get(model)

    def get_doc(self, model: str, sk: str) -> dict[str, Any] | None:
        return self.docs.get((model, sk))

    def get_rollout(self, model: str) -> dict[str, Any] | None:
        return self.rollouts.get(model)

    def history(self, model: str) -> Iterator[dict[str, Any]]:
        yield from reversed(self.histories.get(model, []))


class FakeKube:
    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.failing: dict[tuple[str, str], Exception] = {}

    def put(self, namespace: str, name: str, *images: str) -> None:
        containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
        self.deployments[(namespace, name)] = {"spec": {"template": {"spec": {"containers": containers}}}}

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) in self.failing:
            raise self.failing[(namespace, name)]
        if (namespace, name) not in self.deployments:
            raise KubeNotFoundError(f"deployments {name} not found in {namespace}")
        return self.deployments[(namespace, name)]

    def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        raise AssertionError("the clean-up must never patch a Deployment")

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        raise AssertionError("the clean-up must never call a Service")


class FakeImages:
    """ECR's behaviour for what the clean-up calls: BatchDeleteImage refuses more than 100 ids and
    reports an unknown digest as an ImageNotFound failure."""

    uri = REPO

    def __init__(self) -> None:
        self.stored: dict[str, StoredImage] = {}
        self.batches: list[list[str]] = []

    def push(self, digest: str, tags: tuple[str, ...], pushed_at: datetime) -> str:
        self.stored[digest] = StoredImage(digest, tags, pushed_at)
        return f"{REPO}@{digest}"

    def images(self) -> list[StoredImage]:
        return list(self.stored.values())

    def delete(self, digests: list[str]) -> list[DeleteFailure]:
        assert 1 <= len(digests) <= 100, len(digests)
        self.batches.append(list(digests))
        failures = []
        for digest in digests:
            if self.stored.pop(digest, None) is None:
                failures.append(DeleteFailure(digest, "ImageNotFound", "Requested image not found"))
        return failures


@dataclass
class Fleet:
    catalog: FakeCatalog
    kube: FakeKube
    images: FakeImages
    must_keep: dict[str, str]  # digest -> why (from how the fixture was made)
    builds: int


def _config(name: str, namespace: str, keep_promoted: int) -> dict[str, Any]:
    doc = {**BASE, "name": name, "retention": {"keep_promoted": keep_promoted}}
    doc["kubernetes"] = {
        **BASE["kubernetes"],
        "namespace": namespace,
        "stable_deployment": f"{name}-stable",
        "canary_deployment": f"{name}-canary",
        "service": name,
        "canary_service": f"{name}-canary",
    }
    return doc


def _fleet(seed: int = 15) -> Fleet:
    """20 models in 3 namespaces and 60 builds: 58 over 200 days (model m00 is retrained once, 200
    days ago: the image the old count rule expired; the others get the remaining 57 at random, each
    ending promoted, rolled back or failed) and two in flight (pushed minutes ago, in no history)."""
    rng = random.Random(seed)
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    must_keep: dict[str, str] = {}
    models = [f"m{i:02d}" for i in range(20)]
    owners = ["m00"] + [rng.choice(models[1:]) for _ in range(57)]
    for i, model in enumerate(models):
        catalog.configs[model] = _config(model, f"ns-{i % 3}", keep_promoted=1 + i % 3)
    versions: dict[str, int] = {}
    stable: dict[str, str] = {}
    canary: dict[str, str] = {}
    promoted: dict[str, list[str]] = {}
    for n, model in enumerate(owners):
        version = versions[model] = versions.get(model, 0) + 1
        pushed = NOW - timedelta(days=200 - n * 3, minutes=rng.randint(0, 600))
        run_id = f"run-{model}-{version}-{n:08d}"
        image = images.push(_digest(n + 1), (image_tag(model, str(version), run_id),), pushed)
        status = (
            "promoted" if model == "m00" else rng.choice(["promoted", "promoted", "rolled_back", "failed"])
        )
        if status != "failed":
            canary[model] = image  # the canary ran it; after a rollback it sits at 0 replicas, image kept
        if status == "promoted":
            stable[model] = image
            promoted.setdefault(model, []).append(image)
        catalog.histories.setdefault(model, []).append(
            {"run_id": run_id, "model": model, "status": status, "version": str(version), "image": image}
        )
    for model in ("m03", "m07"):  # builds in flight: pushed 10 minutes ago, not yet deployed
        version = versions[model] = versions.get(model, 0) + 1
        n = len(images.stored) + 1
        image = images.push(
            _digest(n), (image_tag(model, str(version), f"inflight-{model}"),), NOW - timedelta(minutes=10)
        )
        must_keep[image.split("@")[1]] = "in flight"
    for i, model in enumerate(models):
        namespace = f"ns-{i % 3}"
        kube.put(
            namespace,
            f"{model}-stable",
            stable.get(model, "public.ecr.aws/modelops/no-version-yet:bootstrap"),
        )
        kube.put(
            namespace,
            f"{model}-canary",
            canary.get(model, "public.ecr.aws/modelops/no-version-yet:bootstrap"),
        )
        for image in (stable.get(model), canary.get(model)):
            if image:
                must_keep[image.split("@")[1]] = f"serving {model}"
        keep_k = 1 + i % 3
        for image in promoted.get(model, [])[-keep_k:]:
            must_keep.setdefault(image.split("@")[1], f"recent promoted {model}")
    return Fleet(catalog, kube, images, must_keep, builds=len(images.stored))


def test_twenty_models_sixty_builds_only_what_nothing_needs_is_deleted() -> None:
    # Given 20 models and 60 builds (2 of them in flight), every Deployment readable
    fleet = _fleet()
    assert fleet.builds == 60 and len(fleet.catalog.configs) == 20
    before = set(fleet.images.stored)
    assert fleet.catalog.histories["m00"][0]["status"] == "promoted"  # m00: one build, 200 days old

    # When the clean-up runs
    report = clean_up_images(
        catalog=fleet.catalog, kube=lambda: fleet.kube, images=fleet.images, grace_seconds=GRACE, now=NOW
    )

    # Then no serving, recently promoted or in-flight image is gone, and every other one is
    after = set(fleet.images.stored)
    assert report["blocked"] is None and report["failures"] == []
    assert set(fleet.must_keep) <= after, {d: fleet.must_keep[d] for d in set(fleet.must_keep) - after}
    assert after == set(fleet.must_keep)
    deleted = before - after
    assert {e["digest"] for e in report["deleted"]} == deleted
    assert len(deleted) >= 10, "the fixture should leave plenty to delete"
    # the rarely retrained model's only image survives 59 newer builds
    m00_image = fleet.catalog.histories["m00"][0]["image"].split("@")[1]
    assert m00_image in after
    kept = {e["digest"]: e["reasons"] for e in report["kept"]}
    assert any("stable Deployment of m00" in r for r in kept[m00_image])
    assert kept.keys() == after


def test_a_promoted_version_beyond_keep_promoted_is_deleted_unless_it_serves() -> None:
    # Given one model (keep_promoted 2) promoted v1..v4, stable on v4, canary on v3's rollback
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    catalog.configs["churn"] = _config("churn", "models", keep_promoted=2)
    refs = {}
    for v in range(1, 6):
        refs[v] = images.push(
            _digest(v), (image_tag("churn", str(v), f"run-{v:08d}"),), NOW - timedelta(days=30 - v)
        )
    history = [
        ("1", "promoted"),
        ("2", "promoted"),
        ("3", "promoted"),
        ("4", "promoted"),
        ("5", "rolled_back"),
    ]
    catalog.histories["churn"] = [{"version": v, "status": s, "image": refs[int(v)]} for v, s in history]
    kube.put("models", "churn-stable", refs[4])
    kube.put("models", "churn-canary", refs[5])

    report = clean_up_images(catalog=catalog, kube=lambda: kube, images=images, grace_seconds=GRACE, now=NOW)

    # Then v3 and v4 (the last 2 promoted) and v5 (canary) stay; v1 and v2 go
    assert sorted(images.stored) == [_digest(3), _digest(4), _digest(5)]
    assert sorted(e["digest"] for e in report["deleted"]) == [_digest(1), _digest(2)]
    reasons = {e["digest"]: e["reasons"] for e in report["kept"]}
    assert reasons[_digest(4)] == [
        "stable Deployment of churn",
        "promoted version 4 of churn (last 2)",
    ]
    assert reasons[_digest(5)] == ["canary Deployment of churn"]


@pytest.mark.parametrize(
    "error",
    [KubeUnavailableError("connection refused"), KubeNotFoundError("deployments m11-canary not found")],
)
def test_one_unreadable_deployment_deletes_nothing_and_names_the_model(error: Exception) -> None:
    # Given the fleet, and model m11's canary Deployment cannot be read
    fleet = _fleet()
    fleet.kube.failing[("ns-2", "m11-canary")] = error
    before = set(fleet.images.stored)

    report = clean_up_images(
        catalog=fleet.catalog, kube=lambda: fleet.kube, images=fleet.images, grace_seconds=GRACE, now=NOW
    )

    assert set(fleet.images.stored) == before and fleet.images.batches == []
    assert report["blocked"]["model"] == "m11"
    assert "ns-2/m11-canary" in report["blocked"]["reason"]
    assert report["deleted"] == [] and len(report["kept"]) == len(before)


def test_a_model_whose_stored_config_is_invalid_blocks_the_clean_up() -> None:
    fleet = _fleet()
    fleet.catalog.configs["m05"] = {**fleet.catalog.configs["m05"], "retention": {"keep_promoted": 0}}
    report = clean_up_images(
        catalog=fleet.catalog, kube=lambda: fleet.kube, images=fleet.images, grace_seconds=GRACE, now=NOW
    )
    assert report["blocked"]["model"] == "m05"
    assert "retention.keep_promoted" in report["blocked"]["reason"]
    assert fleet.images.batches == []


def test_dry_run_reports_the_same_deletions_and_deletes_nothing() -> None:
    fleet, twin = _fleet(), _fleet()
    before = set(fleet.images.stored)
    dry = clean_up_images(
        catalog=fleet.catalog,
        kube=lambda: fleet.kube,
        images=fleet.images,
        grace_seconds=GRACE,
        now=NOW,
        dry_run=True,
    )
    real = clean_up_images(
        catalog=twin.catalog, kube=lambda: twin.kube, images=twin.images, grace_seconds=GRACE, now=NOW
    )
    assert set(fleet.images.stored) == before and fleet.images.batches == []
    assert dry["dry_run"] is True
    assert [e["digest"] for e in dry["deleted"]] == [e["digest"] for e in real["deleted"]]


def test_deletes_in_batches_of_at_most_100() -> None:
    # Given 250 old builds of one model that nothing references
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    catalog.configs["churn"] = _config("churn", "models", keep_promoted=1)
    for n in range(1, 251):
        images.push(_digest(n), (image_tag("churn", str(n), f"run-{n:08d}"),), NOW - timedelta(days=3))
    kube.put("models", "churn-stable", "public.ecr.aws/modelops/no-version-yet:bootstrap")
    kube.put("models", "churn-canary", "public.ecr.aws/modelops/no-version-yet:bootstrap")

    report = clean_up_images(catalog=catalog, kube=lambda: kube, images=images, grace_seconds=GRACE, now=NOW)

    assert [len(b) for b in images.batches] == [100, 100, 50]
    assert images.stored == {} and len(report["deleted"]) == 250


def test_images_not_made_by_the_workflow_are_left_alone() -> None:
    # Given old images: a team's training image pushed here, an untagged one, a build of a model
    # with no stored config, one of ours tagged by hand as well, and a plain build of ours
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    catalog.configs["churn"] = _config("churn", "models", keep_promoted=1)
    old = NOW - timedelta(days=90)
    images.push(_digest(1), ("team-train-2026",), old)
    images.push(_digest(2), (), old)
    images.push(_digest(3), (image_tag("gone", "1", "run-00000001"),), old)
    images.push(_digest(4), (image_tag("churn", "1", "run-00000001"), "prod"), old)
    images.push(_digest(5), (image_tag("churn", "2", "run-00000002"),), old)
    kube.put(
        "models", "churn-stable", f"{REPO}:{image_tag('churn', '9', 'run-00000009')}"
    )  # by tag, not ours here
    kube.put("models", "churn-canary", "public.ecr.aws/modelops/no-version-yet:bootstrap")

    report = clean_up_images(catalog=catalog, kube=lambda: kube, images=images, grace_seconds=GRACE, now=NOW)

    assert sorted(images.stored) == [_digest(1), _digest(2), _digest(3), _digest(4)]
    reasons = {e["digest"]: " ".join(e["reasons"]) for e in report["kept"]}
    assert "untagged" in reasons[_digest(2)]
    assert "not made by the workflow" in reasons[_digest(3)]
    assert "'prod'" in reasons[_digest(4)]


def test_a_deployment_that_names_an_image_by_tag_keeps_it() -> None:
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    catalog.configs["churn"] = _config("churn", "models", keep_promoted=1)
    tag = image_tag("churn", "1", "run-00000001")
    images.push(_digest(1), (tag,), NOW - timedelta(days=90))
    kube.put("models", "churn-stable", f"{REPO}:{tag}")
    kube.put("models", "churn-canary", "busybox:1", f"{REPO}:{tag}@{_digest(1)}")

    report = clean_up_images(catalog=catalog, kube=lambda: kube, images=images, grace_seconds=GRACE, now=NOW)

    assert list(images.stored) == [_digest(1)]
    assert report["kept"][0]["reasons"] == ["canary Deployment of churn", "stable Deployment of churn"]


def test_the_active_rollout_and_the_champion_record_keep_their_images() -> None:
    catalog, kube, images = FakeCatalog(), FakeKube(), FakeImages()
    catalog.configs["churn"] = _config("churn", "models", keep_promoted=1)
    for n in (1, 2, 3):
        images.push(_digest(n), (image_tag("churn", str(n), f"run-{n:08d}"),), NOW - timedelta(days=40))
    catalog.rollouts["churn"] = {
        "run_id": "r",
        "previous_stable": {"image": f"{REPO}@{_digest(1)}", "replicas": 2},
    }
    catalog.docs[("churn", "CHAMPION")] = {"version": "2", "image": f"{REPO}@{_digest(2)}"}
    kube.put("models", "churn-stable", "public.ecr.aws/modelops/no-version-yet:bootstrap")
    kube.put("models", "churn-canary", "public.ecr.aws/modelops/no-version-yet:bootstrap")

    clean_up_images(catalog=catalog, kube=lambda: kube, images=images, grace_seconds=GRACE, now=NOW)

    assert sorted(images.stored) == [_digest(1), _digest(2)]


def test_repository_reference() -> None:
    assert repository_reference(f"{REPO}@{_digest(1)}", REPO) == (_digest(1), None)
    assert repository_reference(f"{REPO}:v1", REPO) == (None, "v1")
    assert repository_reference(f"{REPO}:v1@{_digest(1)}", REPO) == (_digest(1), "v1")
    assert repository_reference(f"{REPO}-other@{_digest(1)}", REPO) is None
    assert repository_reference("localhost:5000/x:1", "localhost:5000/x") == (None, "1")
    assert repository_reference(REPO, REPO) is None


def test_the_cluster_is_reached_only_when_a_model_needs_reading() -> None:
    # Given no models: nothing connects to the cluster, and the builds of unknown models stay
    images = FakeImages()
    images.push(_digest(1), (image_tag("ghost", "1", "run-00000001"),), NOW - timedelta(days=90))

    def unreachable() -> FakeKube:
        raise KubeUnavailableError("DescribeCluster: cluster modelops not found")

    report = clean_up_images(
        catalog=FakeCatalog(), kube=unreachable, images=images, grace_seconds=GRACE, now=NOW
    )
    assert report["blocked"] is None and list(images.stored) == [_digest(1)]

    # Given a model: the failed connection blocks the clean-up, naming it
    fleet = _fleet()
    report = clean_up_images(
        catalog=fleet.catalog, kube=unreachable, images=fleet.images, grace_seconds=GRACE, now=NOW
    )
    assert report["blocked"]["model"] == "m00" and "cluster modelops not found" in report["blocked"]["reason"]
    assert fleet.images.batches == []
