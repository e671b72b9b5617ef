"""ValidateDataset: is the run's CSV something its model can train on? Also which object under a
model's prefix is the newest (ResolveRequest and AcquireLock ask)."""

from __future__ import annotations

from typing import Any

from modelops.config import ModelConfig
from modelops.dataset import DatasetReport, validate_csv
from modelops.errors import DatasetInvalidError
from modelops.ports import ObjectStore
from modelops.run import DatasetObject, Run


def validate_dataset(run: Run, *, objects: ObjectStore) -> dict[str, Any]:
    """Rows, the label distribution (or the regression target's summary) and the smoke sample;
    DatasetInvalidError naming the file, line and column when the data does not fit the schema."""
    report = dataset_report(run.config, run.dataset, objects)
    summary: dict[str, Any] = {"rows": report.rows, "smoke_sample": report.smoke_sample}
    if report.target is not None:
        summary["target"] = report.target
    else:
        summary["labels"] = report.label_distribution
    return summary


def dataset_report(config: ModelConfig, ds: DatasetObject, objects: ObjectStore) -> DatasetReport:
    """The object checked against the model's schema (its smoke rows picked with a fixed seed, so
    the same data gives the same rows); DatasetInvalidError when it is gone, too large or unfit."""
    size = objects.size(ds.bucket, ds.key, ds.version_id)
    if size is None:
        raise DatasetInvalidError(f"{ds.uri}: object not found (deleted after the trigger?)")
    if size > config.data.schema_.max_bytes:
        raise DatasetInvalidError(f"{ds.uri}: {size} bytes exceeds max_bytes {config.data.schema_.max_bytes}")
    return validate_csv(
        objects.read(ds.bucket, ds.key, ds.version_id),
        config.data.schema_,
        name=ds.uri,
        task=config.data.task,
        smoke_size=config.canary.smoke_sample_size,
    )


def newest_object(objects: ObjectStore, bucket: str, prefix: str) -> tuple[str, str]:
    """(key, ETag) of the most recently modified non-empty object under `prefix`; S3 keeps
    LastModified to the second, so among objects of the same second the greatest key wins (name
    uploads by time). DatasetInvalidError when there is none."""
    newest = None
    for obj in objects.list(bucket, prefix):
        if obj.key.endswith("/") or obj.size == 0:
            continue
        if newest is None or (obj.last_modified, obj.key) > (newest.last_modified, newest.key):
            newest = obj
    if newest is None:
        raise DatasetInvalidError(f"no dataset under s3://{bucket}/{prefix}; upload a CSV there first")
    return newest.key, newest.etag
