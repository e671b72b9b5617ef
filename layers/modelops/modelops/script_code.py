"""Script mode's code: pack a team's local folder into a deterministic .tar.gz and store it.

The same folder gives the same bytes (names sorted, fixed times, owners and permissions, gzip
without a name or time), so the same S3 key `code/<model>/<sha256>.tar.gz`: putting an unchanged
model config again uploads nothing new and changes nothing in the stored document.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelops.config import ModelConfig, TrainingScript
from modelops.errors import ConfigError
from modelops.ports import ObjectStore

# Left out of the archive: what Python and editors write beside the code, and version control.
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", ".mypy_cache", ".pytest_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
MAX_CODE_BYTES = 100 * 1024 * 1024  # a code folder, not a dataset: SageMaker downloads it every run


@dataclass(frozen=True)
class CodeArchive:
    data: bytes
    sha256: str
    files: tuple[str, ...]

    def key(self, model: str) -> str:
        return f"code/{model}/{self.sha256}.tar.gz"


def regular_files(folder: Path, *, what: str, max_bytes: int, hint: str) -> list[tuple[str, Path]]:
    """The folder's regular files as (posix name, path), sorted, without what Python, editors and
    version control leave beside them; ConfigError (named `what`) when the folder is missing, holds
    a symbolic link or more than `max_bytes` (`hint` says what to do then)."""
    if not folder.is_dir():
        raise ConfigError(f"{what}: {folder} is not a folder")
    files: list[tuple[str, Path]] = []
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIPPED_DIRS for part in rel.parts) or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        if path.is_symlink():
            raise ConfigError(f"{what}: {path} is a symbolic link; the folder must hold regular files only")
        if path.is_file():
            total += path.stat().st_size
            if total > max_bytes:
                raise ConfigError(
                    f"{what}: {folder} holds more than {max_bytes // (1024 * 1024)} MiB; {hint}"
                )
            files.append((rel.as_posix(), path))
    return files


def pack_folder(folder: Path, *, entry_point: str) -> CodeArchive:
    """The folder's regular files as a reproducible .tar.gz; ConfigError names the problem (the
    folder is missing, the entry point is not in it, a symbolic link, too big)."""
    what = "training.script.source"
    if not folder.is_dir():
        raise ConfigError(f"{what}: {folder} is not a folder (expected a local folder or an s3:// URI)")
    files = regular_files(
        folder,
        what=what,
        max_bytes=MAX_CODE_BYTES,
        hint="keep data out of the code folder (the training data comes from the train channel)",
    )
    names = [name for name, _ in files]
    if entry_point not in names:
        raise ConfigError(
            f"training.script.entry_point: {entry_point!r} is not in {folder} "
            f"(it holds {names[:10]}{'...' if len(names) > 10 else ''})"
        )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    return CodeArchive(data=data, sha256=hashlib.sha256(data).hexdigest(), files=tuple(names))


def publish_script_code(
    config: ModelConfig, *, base_dir: Path, bucket: str, objects: ObjectStore
) -> ModelConfig:
    """The config with a local training.script.source packed, uploaded to
    s3://<bucket>/code/<model>/<sha256>.tar.gz and replaced by that URI; unchanged otherwise.
    A relative folder is relative to `base_dir` (the config file's folder)."""
    script = config.training.script
    if script is None or script.is_s3:
        return config
    folder = Path(script.source).expanduser()
    archive = pack_folder(
        folder if folder.is_absolute() else base_dir / folder, entry_point=script.entry_point
    )
    key = archive.key(config.name)
    objects.put(bucket, key, archive.data, content_type="application/x-tar")
    uploaded = TrainingScript(entry_point=script.entry_point, source=f"s3://{bucket}/{key}")
    return config.model_copy(update={"training": config.training.model_copy(update={"script": uploaded})})
