"""Image retention: delete serving images nothing needs, never one that serves or may serve again.

Every model's serving images share one ECR repository. An image is kept when any of these holds
(the report says which, per image):

- a container of the model's stable or canary Deployment references it (read live from the
  cluster, for every model with a stored config; if one model's Deployments cannot be read, the
  clean-up deletes nothing and names the model);
- it is one of the model's last `retention.keep_promoted` promoted versions (the run history), the
  versions `modelops rollback --to` can bring back;
- the model's champion record or its active rollout names it (the image a rollback restores);
- it was pushed less than the grace period ago (a build in flight, a canary about to start);
- it is untagged (left to the repository's lifecycle rule; see template.yaml), or it has a tag the
  workflow's build does not make (`<model>-v<version>-<run>` for a known model): an image someone
  else pushed is not ours to delete.

Everything else is deleted in batches of at most 100 (BatchDeleteImage), unless `dry_run`.
Races with a rollout are covered by construction: a rollout only ever points a Deployment at a
freshly built image (inside the grace period), the recorded previous stable (kept), or a promoted
version (`rollback --to`: kept while among the last K).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops.config import ModelConfig, parse_config
from modelops.errors import ModelopsError
from modelops.ports import DELETE_BATCH, ImageCatalog, Kube, ModelCatalog, StoredImage


class RetentionBlockedError(ModelopsError):
    """What serves could not be established for a model: nothing may be deleted."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"model {model}: {reason}")
        self.model = model
        self.reason = reason


@dataclass
class _KeepSet:
    by_digest: dict[str, list[str]] = field(default_factory=dict)
    by_tag: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reference: tuple[str | None, str | None] | None, reason: str) -> None:
        if reference is None:
            return
        digest, tag = reference
        if digest:
            self.by_digest.setdefault(digest, []).append(reason)
        elif tag:
            self.by_tag.setdefault(tag, []).append(reason)

    def reasons(self, image: StoredImage) -> list[str]:
        found = list(self.by_digest.get(image.digest, []))
        for tag in image.tags:
            found.extend(self.by_tag.get(tag, []))
        return found


def repository_reference(image: str, repository_uri: str) -> tuple[str | None, str | None] | None:
    """(digest, tag) of an image reference into `repository_uri`; None for another repository."""
    name, _, digest = image.partition("@")
    tag = None
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        name, tag = name.rsplit(":", 1)
    if name.lower() != repository_uri.lower() or not (digest or tag):
        return None
    return (digest or None, tag)


def _images_in(document: Any) -> Iterator[str]:
    """Every string inside a JSON-like document (the image references among them are kept)."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for value in document.values():
            yield from _images_in(value)
    elif isinstance(document, list):
        for value in document:
            yield from _images_in(value)


def _pod_images(deployment: dict[str, Any]) -> list[str]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    containers = [*spec.get("containers", []), *spec.get("initContainers", [])]
    return [str(c.get("image", "")) for c in containers if c.get("image")]


def _config(catalog: ModelCatalog, model: str) -> ModelConfig:
    document = catalog.get_model_document(model)
    if document is None:
        raise RetentionBlockedError(model, "its config disappeared while the clean-up ran")
    try:
        return parse_config(document, source=f"stored config of model {model}")
    except ModelopsError as exc:
        raise RetentionBlockedError(model, str(exc)) from None


def _what_model_needs(
    model: str, *, catalog: ModelCatalog, kube: Callable[[], Kube], repository_uri: str, keep: _KeepSet
) -> None:
    config = _config(catalog, model)
    k = config.kubernetes
    for variant, name in (("stable", k.stable_deployment), ("canary", k.canary_deployment)):
        try:
            deployment = kube().get_deployment(k.namespace, name)
        except Exception as exc:  # any reason we cannot see what it runs
            raise RetentionBlockedError(
                model, f"cannot read Deployment {k.namespace}/{name}: {type(exc).__name__}: {exc}"
            ) from None
        for image in _pod_images(deployment):
            keep.add(repository_reference(image, repository_uri), f"{variant} Deployment of {model}")
    promoted: list[str] = []
    for record in catalog.history(model):
        if len(promoted) >= config.retention.keep_promoted:
            break
        version = str(record.get("version"))
        if record.get("status") != "promoted" or version in promoted or not record.get("image"):
            continue
        promoted.append(version)
        keep.add(
            repository_reference(str(record["image"]), repository_uri),
            f"promoted version {version} of {model} (last {config.retention.keep_promoted})",
        )
    for what, document in (
        ("champion", catalog.get_doc(model, "CHAMPION")),
        ("active rollout", catalog.get_rollout(model)),
    ):
        for text in _images_in(document or {}):
            keep.add(repository_reference(text, repository_uri), f"{what} record of {model}")


def _build_tag(models: Iterable[str]) -> re.Pattern[str]:
    """The tags steps.build.image_tag makes for these models: `<model>-v<version>-<run id tail>`."""
    names = "|".join(re.escape(m) for m in sorted(models, key=len, reverse=True)) or "(?!)"
    return re.compile(rf"(?:{names})-v\d+-[A-Za-z0-9_.\-]{{1,8}}")


def clean_up_images(
    *,
    catalog: ModelCatalog,
    kube: Callable[[], Kube],
    images: ImageCatalog,
    grace_seconds: float,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Delete the serving images nothing keeps (module docstring); the report of what was kept and
    why, what was (or, with `dry_run`, would be) deleted, and failures. `blocked` names the model
    whose needs could not be read: then nothing is deleted. `kube` connects to the cluster when the
    first model's Deployments are read (no models, no connection); a failure there blocks too."""
    now = now or datetime.now(UTC)
    kube = functools.cache(kube)
    stored = images.images()
    models = catalog.model_names()
    keep = _KeepSet()
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "repository": images.uri,
        "models": len(models),
        "images": len(stored),
        "blocked": None,
        "kept": [],
        "deleted": [],
        "failures": [],
    }
    try:
        for model in models:
            _what_model_needs(model, catalog=catalog, kube=kube, repository_uri=images.uri, keep=keep)
    except RetentionBlockedError as exc:
        report["blocked"] = {"model": exc.model, "reason": exc.reason}
        report["kept"] = [_entry(i, ["nothing is deleted: " + str(exc)]) for i in stored]
        return report
    ours = _build_tag(models)
    doomed: list[StoredImage] = []
    for image in sorted(stored, key=lambda i: (i.pushed_at, i.digest)):
        reasons = keep.reasons(image)
        age = (now - image.pushed_at).total_seconds()
        if age < grace_seconds:
            reasons.append(
                f"pushed {age / 3600:.1f} h ago, within the {grace_seconds / 3600:g} h grace period"
            )
        if not image.tags:
            reasons.append("untagged: left to the repository's lifecycle rule")
        foreign = [t for t in image.tags if not ours.fullmatch(t)]
        if foreign:
            reasons.append(f"tags {foreign} were not made by the workflow's build for a known model")
        if reasons:
            report["kept"].append(_entry(image, reasons))
        else:
            doomed.append(image)
    report["deleted"] = [_entry(i) for i in doomed]
    if dry_run:
        return report
    for start in range(0, len(doomed), DELETE_BATCH):
        batch = [i.digest for i in doomed[start : start + DELETE_BATCH]]
        for failure in images.delete(batch):
            report["failures"].append(
                {"digest": failure.digest, "code": failure.code, "reason": failure.reason}
            )
    failed = {f["digest"] for f in report["failures"]}
    report["deleted"] = [e for e in report["deleted"] if e["digest"] not in failed]
    return report


def _entry(image: StoredImage, reasons: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "digest": image.digest,
        "tags": list(image.tags),
        "pushed_at": image.pushed_at.isoformat(timespec="seconds"),
    }
    if reasons is not None:
        entry["reasons"] = reasons
    return entry


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report's counts (for a log line)."""
    return {
        "dry_run": report["dry_run"],
        "images": report["images"],
        "models": report["models"],
        "kept": len(report["kept"]),
        "deleted": len(report["deleted"]),
        "failures": len(report["failures"]),
        "blocked": report["blocked"],
    }
