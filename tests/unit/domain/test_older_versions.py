"""`rollback --to` a version promoted before VERSION# records existed (modelops.older_versions):
the record rebuilt from the run history, the registry and the version's data, or a refusal that
says which record lacks what and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelops.config import load_config_file
from modelops.errors import RequestError
from modelops.older_versions import OlderVersions, recover_version
from modelops.ports import ObjectInfo, RegisteredVersion

from tests.integration.workflow.test_workflow import CSV, KEY

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_config_file(ROOT / "models" / "churn.yaml")
IMAGE = "r.example/churn@sha256:" + "a" * 64
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/modelops-churn/1"


class Bucket:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def size(self, bucket: str, key: str, version_id: str | None = None) -> int | None:
        return len(self.objects[key]) if key in self.objects else None

    def read(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        return self.objects[key]

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        raise AssertionError("not listed")

    def put(self, bucket: str, key: str, body: bytes, *, content_type: str) -> str | None:
        raise AssertionError("nothing written")


class Registry:
    def __init__(self, versions: dict[str, RegisteredVersion]) -> None:
        self.versions = versions  # by run id

    def find_version(self, group: str, run_id: str) -> RegisteredVersion | None:
        assert group == "modelops-churn"
        return self.versions.get(run_id)

    def ensure_group(self, group: str, description: str) -> None:
        raise AssertionError("nothing created")

    def create_version(self, group: str, **kwargs: Any) -> RegisteredVersion:
        raise AssertionError("nothing created")

    def set_approval(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing changed")


def old_record(
    version: str = "1", status: str = "promoted", image: str = IMAGE, run_id: str = "churn-s3-1"
) -> dict:
    """A HISTORY# record as runs wrote it before VERSION# records (no traffic steps, approval, restore)."""
    return {
        "run_id": run_id,
        "model": "churn",
        "status": status,
        "finished_at": "2026-10-01T06:00:00+00:00",
        "trigger": "s3",
        "dataset": {"bucket": "data", "key": KEY, "version_id": None},
        "version": version,
        "image": image,
        "evaluation": {"metric": "auc", "candidate": 0.81, "model_artifact": "s3://b/m.tar.gz"},
    }


def older(
    history: list[dict], registry: dict[str, RegisteredVersion] | None = None, data: bool = True
) -> OlderVersions:
    return OlderVersions(
        history=history,
        objects=Bucket({KEY: CSV} if data else {}),
        registry=Registry({"churn-s3-1": RegisteredVersion("1", ARN)} if registry is None else registry),
        group="modelops-churn",
    )


def test_a_promoted_version_is_rebuilt_from_its_runs_records_the_registry_and_its_data():
    history = [old_record("2", run_id="churn-s3-2"), old_record("1")]
    doc = recover_version(CONFIG, "1", now=False, older=older(history))
    assert doc is not None
    assert (doc["version"], doc["image"], doc["package_arn"], doc["group"]) == (
        "1",
        IMAGE,
        ARN,
        "modelops-churn",
    )
    assert (doc["metric"], doc["value"], doc["model_artifact"]) == ("auc", 0.81, "s3://b/m.tar.gz")
    assert doc["promoted_at"] == "2026-10-01T06:00:00+00:00" and doc["recovered_from"] == "run history"
    # the rows ValidateDataset picks from the same data (same size and seed)
    assert len(doc["smoke_sample"]) == CONFIG.canary.smoke_sample_size
    assert all(len(row) == 6 for row in doc["smoke_sample"])


def test_a_version_no_run_names_is_left_to_the_unknown_version_message():
    assert recover_version(CONFIG, "7", now=False, older=older([old_record("1")])) is None


@pytest.mark.parametrize(
    ("history", "registry", "data", "now", "message"),
    [
        (
            [old_record(status="rolled_back")],
            None,
            True,
            False,
            "version 1 of churn was never promoted (its run churn-s3-1 ended rolled_back)",
        ),
        (
            [old_record(image="r.example/churn:v1")],
            None,
            True,
            False,
            "version 1 of churn predates version records; its run churn-s3-1 recorded the image "
            "r.example/churn:v1 without a digest, so the exact image cannot be brought back",
        ),
        (
            [old_record()],
            {},
            True,
            False,
            "its run churn-s3-1 has no version 1 in the model package group modelops-churn (found none",
        ),
        (
            [old_record()],
            None,
            False,
            False,
            "kept no smoke rows and its training data cannot give them (s3://data/"
            f"{KEY}: object not found (deleted after the trigger?)); `--now --reason R` brings it back without the canary's smoke test",
        ),
    ],
)
def test_what_cannot_be_brought_back_is_refused_saying_why(history, registry, data, now, message):
    with pytest.raises(RequestError) as refused:
        recover_version(CONFIG, "1", now=now, older=older(history, registry, data))
    assert message in str(refused.value)


def test_with_now_a_version_whose_data_is_gone_needs_no_smoke_rows():
    doc = recover_version(CONFIG, "1", now=True, older=older([old_record()], data=False))
    assert doc is not None and doc["smoke_sample"] == [] and doc["image"] == IMAGE
