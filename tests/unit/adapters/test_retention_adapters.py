"""The retention clean-up's adapters against moto: ECR's DescribeImages (every page) and
BatchDeleteImage (failures reported, at most 100 ids), the state table's model list and history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from modelops.adapters.codebuild import EcrRepository
from modelops.adapters.store import StateStore
from moto import mock_aws

from tests.ecr_images import push_image
from tests.state_table import create_state_table

REGION = "us-east-1"


class Counting:
    """The boto3 client, counting calls per operation (to see that pages were followed)."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, {}  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(**kwargs)

        return call


class PagedEcr(Counting):
    """moto answers DescribeImages in one page whatever `maxResults` says; ECR pages (at most
    `maxResults`, default 100, then `nextToken`). This pages moto's answer the way ECR does."""

    def describe_images(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["describe_images"] = self.calls.get("describe_images", 0) + 1
        start = int(kwargs.pop("nextToken", 0))
        size = int(kwargs.pop("maxResults", 100))
        details = self.client.describe_images(**kwargs)["imageDetails"]
        page: dict[str, Any] = {"imageDetails": details[start : start + size]}
        if start + size < len(details):
            page["nextToken"] = str(start + size)
        return page


@pytest.fixture
def aws(offline_aws: None) -> Iterator[None]:
    with mock_aws():
        yield


def _push(ecr: Any, n: int, tag: str | None) -> str:
    return push_image(ecr, "serving", n, tag)


def test_ecr_images_lists_every_page_with_tags_and_push_time(aws: None) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    uri = ecr.create_repository(repositoryName="serving")["repository"]["repositoryUri"]
    digests = {_push(ecr, n, f"churn-v{n}-run{n:05d}") for n in range(1, 1006)}
    untagged = _push(ecr, 5000, None)
    counting = PagedEcr(ecr)
    images = EcrRepository(counting, name="serving", uri=uri)

    listed = images.images()

    assert images.uri == uri
    assert {i.digest for i in listed} == digests | {untagged}
    assert counting.calls == {"describe_images": 2}  # 1,006 images: two pages of at most 1,000
    by_digest = {i.digest: i for i in listed}
    assert by_digest[untagged].tags == ()
    one = next(i for i in listed if i.tags == ("churn-v7-run00007",))
    assert one.pushed_at.tzinfo is not None


def test_ecr_images_delete_removes_by_digest_and_reports_failures(aws: None) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    uri = ecr.create_repository(repositoryName="serving")["repository"]["repositoryUri"]
    a, b, c = (_push(ecr, n, f"t{n}") for n in (1, 2, 3))
    images = EcrRepository(ecr, name="serving", uri=uri)
    unknown = "sha256:" + "0" * 64

    failures = images.delete([a, c, unknown])

    assert [i.digest for i in images.images()] == [b]
    assert [(f.digest, f.code) for f in failures] == [(unknown, "ImageNotFound")]
    assert images.delete([]) == []
    with pytest.raises(ValueError, match="at most 100"):
        images.delete([b] * 101)
    assert [i.digest for i in images.images()] == [b]


def test_state_store_lists_every_model_and_reads_history_newest_first(aws: None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_state_table(ddb, "state")
    counting = Counting(ddb)
    store = StateStore("state", counting)
    pad = "x" * 3000  # 450 records of ~3 KB: more than one 1 MB page
    for m in range(30):
        store.put_model_document(f"m{m:02d}", {"name": f"m{m:02d}"})
        store.put_doc(f"m{m:02d}", "LOCK", {"owner": "someone"})  # not a model config
    for i in range(450):
        store.put_doc(
            "m01", f"HISTORY#2026-12-01T00:{i // 60:02d}:{i % 60:02d}+00:00#run-{i}", {"i": i, "pad": pad}
        )
    store.put_doc("m02", "HISTORY#2026-12-02T00:00:00+00:00#r", {"i": -1})

    assert store.model_names() == [f"m{m:02d}" for m in range(30)]
    history = [record["i"] for record in store.history("m01")]
    assert history == list(range(449, -1, -1))
    assert counting.calls["query"] >= 2 and counting.calls["scan"] >= 2  # pages were followed
    assert [r["i"] for r in store.history("m02")] == [-1]
    assert list(store.history("m03")) == []
