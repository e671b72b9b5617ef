"""Versions promoted before `VERSION#<v>` records existed (they began with the approval gate and
`rollback --to`): `modelops rollback --to` rebuilds the record from what those runs did keep, so
ResolveRequest reads it as any other.

What an older promoted run kept, and where the rest comes from:

| VERSION# field                      | from                                                          |
|-------------------------------------|---------------------------------------------------------------|
| version, image (by digest), run_id  | its HISTORY# record (status `promoted`)                       |
| dataset, model_artifact, metric, value | the same record (`dataset`, `evaluation`)                  |
| package_arn, group                  | the model registry: the version its run registered (run_id)   |
| smoke_sample                        | its dataset object, as ValidateDataset picks them (same seed) |

Anything missing is refused, saying which record lacks what and what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelops.config import ModelConfig
from modelops.errors import DatasetInvalidError, RequestError
from modelops.ports import ModelRegistry, ObjectStore
from modelops.run import DatasetObject
from modelops.steps.dataset import dataset_report
from modelops.steps.notify import SMOKE_ROWS_KEPT


@dataclass(frozen=True)
class OlderVersions:
    """Where a version's record is rebuilt from: the run history, the data bucket, the registry
    (the model's package group, `<stack>-<model>` as RegisterModel names it)."""

    history: Iterable[dict[str, Any]]  # the model's HISTORY# records, newest first
    objects: ObjectStore
    registry: ModelRegistry
    group: str


def recover_version(
    config: ModelConfig, version: str, *, now: bool, older: OlderVersions
) -> dict[str, Any] | None:
    """VERSION#<version> rebuilt from the run that promoted it (for the caller to store once the
    version passes `restorable`); None when no run history names the version either; RequestError when it names it but the version cannot be
    brought back (never promoted, no digest, not in the registry, no smoke rows without `now`)."""
    model = config.name
    runs = [r for r in older.history if str(r.get("version")) == str(version) and r.get("image")]
    if not runs:
        return None
    promoted = next((r for r in runs if r.get("status") == "promoted"), None)
    if promoted is None:
        raise RequestError(
            f"version {version} of {model} was never promoted (its run {runs[0].get('run_id')} ended "
            f"{runs[0].get('status')}): only a version that served as the stable can be brought back"
        )
    run_id, image = str(promoted["run_id"]), str(promoted["image"])
    where = f"version {version} of {model} predates version records; its run {run_id}"
    if "@sha256:" not in image:
        raise RequestError(
            f"{where} recorded the image {image} without a digest, so the exact image cannot be "
            "brought back; deploy it by hand or retrain"
        )
    registered = older.registry.find_version(older.group, run_id)
    if registered is None or str(registered.version) != str(version):
        raise RequestError(
            f"{where} has no version {version} in the model package group {older.group} "
            f"(found {registered.version if registered else 'none'} for the run); it cannot be recorded "
            "as a registry version"
        )
    evaluation = promoted.get("evaluation") or {}
    dataset = DatasetObject.model_validate(promoted.get("dataset") or {})
    smoke = _smoke_rows(config, dataset, older.objects, where=where, now=now)
    return {
        "version": str(version),
        "image": image,
        "package_arn": registered.package_arn,
        "group": older.group,
        "model_artifact": evaluation.get("model_artifact"),
        "metric": evaluation.get("metric"),
        "value": evaluation.get("candidate"),
        "dataset": dataset.to_payload(),
        "smoke_sample": smoke,
        "run_id": run_id,
        "status": "promoted",
        "promoted_at": promoted.get("finished_at"),
        "finished_at": promoted.get("finished_at"),
        "recovered_from": "run history",
    }


def _smoke_rows(
    config: ModelConfig, dataset: DatasetObject, objects: ObjectStore, *, where: str, now: bool
) -> list[list[float | str | None]]:
    """The rows ValidateDataset picked from the version's dataset (the same seed and size); with
    `now` (no canary, no smoke test) a dataset that is gone is no obstacle."""
    try:
        report = dataset_report(config, dataset, objects)
    except DatasetInvalidError as exc:
        if now:
            return []
        raise RequestError(
            f"{where} kept no smoke rows and its training data cannot give them ({exc}); "
            "`--now --reason R` brings it back without the canary's smoke test"
        ) from None
    return report.smoke_sample[:SMOKE_ROWS_KEPT]
