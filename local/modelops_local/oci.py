"""A pure-Python OCI image builder: writes a real OCI image layout (image-layout spec 1.0).

    <layout>/oci-layout                      {"imageLayoutVersion": "1.0.0"}
    <layout>/index.json                      image index; one manifest per tag, annotated with
                                             org.opencontainers.image.ref.name = <tag>
    <layout>/blobs/sha256/<hex>              layers (tar+gzip), config, manifests

Layers are built from folders mapped to image paths (the serving code at /opt/program, the model
at /opt/ml/model) and are deterministic: sorted entries, fixed mtime/uid/gid, normalised modes and
a gzip header without name or time, so the same inputs always give the same digests. No base image:
the local runtime runs the image's programs with the host's Python; on AWS, CodeBuild builds the
real image from serving_image/Dockerfile.

Specs: https://github.com/opencontainers/image-spec (image-layout.md, manifest.md, config.md,
image-index.md, layer.md for whiteouts).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY_ANNOTATION = "io.modelops.image.repository"
LAYOUT_VERSION = "1.0.0"
FIXED_MTIME = 0  # 1970-01-01: reproducible layers (like SOURCE_DATE_EPOCH=0)
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_TAG_RE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_index_lock = threading.Lock()


class OciError(Exception):
    """The layout, a blob or a build input is not what the OCI spec requires."""


class BlobDigestMismatchError(OciError):
    """A blob's bytes do not hash to the digest that names it (corruption or tampering)."""


class UnsafeLayerError(OciError):
    """A layer entry would be written outside the root folder (path traversal, link escape)."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer: the files of `source` (a folder) placed under `image_path` in the image."""

    source: Path
    image_path: str
    uid: int = 0
    gid: int = 0
    # Names (fnmatch patterns, matched per path component) left out, like a .dockerignore.
    exclude: tuple[str, ...] = ("__pycache__", "*.pyc")
    # When given, only the source's top-level entries matching one of these patterns (COPY a b dest/).
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of the image config (config.md `config` object) plus platform."""

    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"
    created: str = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class BuiltImage:
    digest: str  # the manifest's digest: what `repo@sha256:...` pins
    manifest_bytes: bytes
    config_digest: str
    size: int  # of the manifest
    repository: str
    tag: str
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]

    @property
    def reference(self) -> str:
        """`<repository>@sha256:...`, the pinned reference a Deployment uses."""
        return f"{self.repository}@{self.digest}"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(
    layout_dir: Path, repository: str, tag: str, layers: Sequence[LayerSpec], config: ImageConfig
) -> BuiltImage:
    """Write the layers, config and manifest as blobs and tag the manifest in index.json."""
    _check_tag(tag)
    if not repository or any(c.isspace() for c in repository):
        raise OciError(f"repository {repository!r} must be a non-empty name without spaces")
    if not layers:
        raise OciError("an image needs at least one layer")
    init_layout(layout_dir)
    descriptors, diff_ids = [], []
    for spec in layers:
        tar_bytes = layer_tar(spec)
        gz = _gzip(tar_bytes)
        descriptors.append(Descriptor(MEDIA_LAYER_GZIP, write_blob(layout_dir, gz), len(gz)))
        diff_ids.append(sha256_digest(tar_bytes))
    config_bytes = _canonical(_config_document(config, diff_ids, layers))
    config_desc = Descriptor(MEDIA_CONFIG, write_blob(layout_dir, config_bytes), len(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc.to_dict(),
        "layers": [d.to_dict() for d in descriptors],
    }
    manifest_bytes = _canonical(manifest)
    digest = write_blob(layout_dir, manifest_bytes)
    tag_image(layout_dir, Descriptor(MEDIA_MANIFEST, digest, len(manifest_bytes)), repository, tag)
    return BuiltImage(
        digest=digest,
        manifest_bytes=manifest_bytes,
        config_digest=config_desc.digest,
        size=len(manifest_bytes),
        repository=repository,
        tag=tag,
        layers=tuple(descriptors),
        diff_ids=tuple(diff_ids),
    )


def init_layout(layout_dir: Path) -> None:
    """Create the oci-layout marker, blobs/sha256/ and an empty index.json if missing."""
    (layout_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = layout_dir / "oci-layout"
    if not marker.exists():
        _write_atomically(marker, _canonical({"imageLayoutVersion": LAYOUT_VERSION}))
    index = layout_dir / "index.json"
    if not index.exists():
        _write_atomically(index, _canonical({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}))


def write_blob(layout_dir: Path, data: bytes) -> str:
    """Store `data` under blobs/sha256/<hex> (idempotent); returns its digest."""
    digest = sha256_digest(data)
    path = blob_path(layout_dir, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
    return digest


def blob_path(layout_dir: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise OciError(f"digest {digest!r} is not sha256:<64 lowercase hex>")
    return layout_dir / "blobs" / "sha256" / hexdigest


def read_blob(layout_dir: Path, digest: str) -> bytes:
    """A blob's bytes, verified against its digest (BlobDigestMismatchError otherwise)."""
    path = blob_path(layout_dir, digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OciError(f"blob {digest} not found in {layout_dir}") from None
    if sha256_digest(data) != digest:
        raise BlobDigestMismatchError(f"blob {path} does not hash to {digest}")
    return data


def read_manifest(layout_dir: Path, digest: str) -> dict[str, Any]:
    """The image manifest stored under `digest`, digest-verified and checked to be a manifest."""
    manifest = _json_blob(layout_dir, digest, "manifest")
    if manifest.get("mediaType", MEDIA_MANIFEST) != MEDIA_MANIFEST or manifest.get("schemaVersion") != 2:
        raise OciError(
            f"blob {digest} is not an OCI image manifest (mediaType {manifest.get('mediaType')!r})"
        )
    return manifest


def read_config(layout_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    return _json_blob(layout_dir, manifest["config"]["digest"], "config")


def read_index(layout_dir: Path) -> dict[str, Any]:
    try:
        index = json.loads((layout_dir / "index.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OciError(f"{layout_dir} is not an OCI layout: index.json missing") from None
    except ValueError as exc:
        raise OciError(f"{layout_dir}/index.json is not valid JSON: {exc}") from None
    return dict(index)


def resolve_tag(layout_dir: Path, tag: str, repository: str | None = None) -> str:
    """The manifest digest index.json names for `tag` (and `repository`, when given)."""
    for entry in read_index(layout_dir).get("manifests", []):
        annotations = entry.get("annotations") or {}
        if annotations.get(REF_NAME) == tag and repository in (None, annotations.get(REPOSITORY_ANNOTATION)):
            return str(entry["digest"])
    raise OciError(f"no image tagged {tag!r} in {layout_dir}/index.json")


def unpack_image(layout_dir: Path, digest: str, dest: Path) -> Path:
    """Apply the image's layers in order into `dest` (a root folder); returns `dest`.

    Every blob is digest-checked and every layer's uncompressed tar is checked against the config's
    diff_ids. Entries that would land outside `dest` (absolute paths, `..`, writes through a
    symlink, hard links to outside files) raise UnsafeLayerError. Whiteouts (`.wh.<name>`,
    `.wh..wh..opq`) delete what lower layers wrote, as layer.md describes.
    """
    manifest = read_manifest(layout_dir, digest)
    config = read_config(layout_dir, manifest)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        raise OciError(f"image {digest}: {len(layers)} layers but {len(diff_ids)} diff_ids in the config")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        data = read_blob(layout_dir, layer["digest"])
        media = layer.get("mediaType")
        if media == MEDIA_LAYER_GZIP:
            data = gzip.decompress(data)
        elif media != "application/vnd.oci.image.layer.v1.tar":
            raise OciError(f"layer {layer['digest']}: unsupported mediaType {media!r}")
        if sha256_digest(data) != diff_id:
            raise BlobDigestMismatchError(
                f"layer {layer['digest']}: uncompressed tar does not match diff_id {diff_id}"
            )
        _apply_layer(data, root, layer["digest"])
    return dest


# --- the modelops serving image -------------------------------------------------------------------
def site_packages() -> str:
    """The venv's site-packages in the image, for the Python running the local runtime (the
    Dockerfile's /opt/venv is made by the base image's Python; locally the host's plays it)."""
    return f"/opt/venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def serving_image_spec(
    serving_image_dir: Path, model_dir: Path | None, *, labels: Mapping[str, str] | None = None
) -> tuple[list[LayerSpec], ImageConfig]:
    """Layers and config like serving_image/Dockerfile's, for tests that need an image without a
    build (the local CodeBuild interprets the Dockerfile itself: dockerfile.py): the code at
    /opt/program, the model's files at /opt/ml/model (omit `model_dir` for the training image).

    A local pod runs `python <rootfs>/opt/program/bin/serve` with SAGEMAKER_BASE_DIR=<rootfs>/opt/ml.
    """
    layers = [
        LayerSpec(serving_image_dir / "model_server", "/opt/program/model_server"),
        # the image's pins, constraints of a model's code/requirements.txt (not the build stage's)
        LayerSpec(serving_image_dir, "/opt/program", include=("requirements.txt",)),
        LayerSpec(serving_image_dir / "bin", "/opt/program/bin"),
    ]
    if model_dir is not None:
        layers.append(LayerSpec(model_dir, "/opt/ml/model", uid=10001, gid=10001))
    config = ImageConfig(
        cmd=["serve"],
        env={
            "PATH": "/opt/program/bin:/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": "/opt/program",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        },
        working_dir="/opt/program",
        user="10001",
        exposed_ports=["8080"],
        labels=dict(labels or {}),
    )
    return layers, config


# --- layer building ------------------------------------------------------------------------------
def layer_tar(spec: LayerSpec) -> bytes:
    """The uncompressed, deterministic tar of one layer."""
    source = spec.source
    if not source.is_dir():
        raise OciError(f"layer source {source} is not a folder")
    target = _image_path(spec.image_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for parent in reversed(target.parents[:-1] if target.parts else ()):
            tar.addfile(_dir_info(str(parent), spec))
        if target.parts:
            tar.addfile(_dir_info(str(target), spec))
        for path in _walk_sorted(source, spec.exclude, spec.include):
            rel = path.relative_to(source).as_posix()
            name = f"{target}/{rel}" if target.parts else rel
            _add_entry(tar, path, name, spec)
    return buf.getvalue()


def _walk_sorted(root: Path, exclude: Sequence[str], include: Sequence[str] = ()) -> Iterator[Path]:
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in exclude):
            continue
        if include and not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in include):
            continue
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_sorted(entry, exclude)


def _add_entry(tar: tarfile.TarFile, path: Path, name: str, spec: LayerSpec) -> None:
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode):
        tar.addfile(_dir_info(name, spec))
    elif stat.S_ISLNK(st.st_mode):
        info = _info(name, spec, tarfile.SYMTYPE, 0o777)
        info.linkname = os.readlink(path)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        info = _info(name, spec, tarfile.REGTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.size = st.st_size
        with path.open("rb") as handle:
            tar.addfile(info, handle)
    else:
        raise OciError(f"{path}: only files, folders and symlinks can go into a layer")


def _dir_info(name: str, spec: LayerSpec) -> tarfile.TarInfo:
    return _info(name, spec, tarfile.DIRTYPE, 0o755)


def _info(name: str, spec: LayerSpec, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = FIXED_MTIME
    info.uid, info.gid = spec.uid, spec.gid
    info.uname = info.gname = ""
    return info


def _image_path(path: str) -> PurePosixPath:
    pure = PurePosixPath("/" + path.strip("/"))
    if ".." in pure.parts:
        raise OciError(f"image path {path!r} must not contain '..'")
    return pure.relative_to("/")


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that varies between builds
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def _config_document(config: ImageConfig, diff_ids: list[str], layers: Sequence[LayerSpec]) -> dict[str, Any]:
    runtime: dict[str, Any] = {}
    if config.env:
        runtime["Env"] = [f"{k}={v}" for k, v in config.env.items()]
    if config.entrypoint is not None:
        runtime["Entrypoint"] = list(config.entrypoint)
    if config.cmd is not None:
        runtime["Cmd"] = list(config.cmd)
    if config.working_dir:
        runtime["WorkingDir"] = config.working_dir
    if config.user:
        runtime["User"] = config.user
    if config.exposed_ports:
        runtime["ExposedPorts"] = {_port(p): {} for p in config.exposed_ports}
    if config.labels:
        runtime["Labels"] = dict(config.labels)
    return {
        "created": config.created,
        "architecture": config.architecture,
        "os": config.os,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {
                "created": config.created,
                "created_by": f"modelops oci: COPY {spec.source.name} /{_image_path(spec.image_path)}",
            }
            for spec in layers
        ],
    }


def _port(port: str) -> str:
    return port if "/" in port else f"{port}/tcp"


def _check_tag(tag: str) -> None:
    # distribution-spec tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    if not 1 <= len(tag) <= 128 or tag[0] in ".-" or not set(tag) <= _TAG_RE_CHARS:
        raise OciError(f"tag {tag!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")


def tag_image(layout_dir: Path, descriptor: Descriptor, repository: str, tag: str) -> None:
    """Name `descriptor` (a manifest) `repository:tag` in index.json, replacing that tag's old entry."""
    with _index_lock:
        index = read_index(layout_dir)
        kept = [
            entry
            for entry in index.get("manifests", [])
            if not (
                (entry.get("annotations") or {}).get(REF_NAME) == tag
                and (entry.get("annotations") or {}).get(REPOSITORY_ANNOTATION) in (None, repository)
            )
        ]
        entry = descriptor.to_dict()
        entry["annotations"] = {REF_NAME: tag, REPOSITORY_ANNOTATION: repository}
        index.update({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [*kept, entry]})
        _write_atomically(layout_dir / "index.json", _canonical(index))


def _json_blob(layout_dir: Path, digest: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_blob(layout_dir, digest))
    except ValueError as exc:
        raise OciError(f"{what} blob {digest} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OciError(f"{what} blob {digest} is not a JSON object")
    return doc


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- layer extraction ----------------------------------------------------------------------------
def _apply_layer(tar_bytes: bytes, root: Path, layer: str) -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            rel = _safe_relative(member.name, layer)
            if rel is None:
                continue  # the root folder itself
            parent = _safe_parent(root, rel, layer, member.name)
            base = rel.name
            if base == OPAQUE_WHITEOUT:
                for child in list(parent.iterdir()):
                    _remove(child)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                _remove(parent / base[len(WHITEOUT_PREFIX) :])
                continue
            target = parent / base
            if member.isdir():
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                target.mkdir(exist_ok=True)
                target.chmod(member.mode & 0o7777 | 0o700)
            elif member.isfile():
                _remove(target)
                source = tar.extractfile(member)
                assert source is not None
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                target.chmod(member.mode & 0o777 | 0o600)
            elif member.issym():
                _remove(target)
                os.symlink(member.linkname, target)
            elif member.islnk():
                link_rel = _safe_relative(member.linkname, layer)
                if link_rel is None:
                    raise UnsafeLayerError(f"layer {layer}: hard link {member.name!r} points at the root")
                link_source = _safe_parent(root, link_rel, layer, member.linkname) / link_rel.name
                if link_source.is_symlink() or not link_source.is_file():
                    raise UnsafeLayerError(
                        f"layer {layer}: hard link {member.name!r} -> {member.linkname!r} is not a regular file in the image"
                    )
                _remove(target)
                os.link(link_source, target)
            # character/block devices and FIFOs are skipped: an unprivileged rootfs cannot hold them


def _safe_relative(name: str, layer: str) -> PurePosixPath | None:
    pure = PurePosixPath(name)
    parts = [p for p in pure.parts if p not in ("", ".", "/")]
    if ".." in parts:
        raise UnsafeLayerError(f"layer {layer}: entry {name!r} contains '..'")
    return PurePosixPath(*parts) if parts else None


def _safe_parent(root: Path, rel: PurePosixPath, layer: str, name: str) -> Path:
    """The existing parent folder of `rel` under `root`, created if missing, never via a symlink."""
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise UnsafeLayerError(
                f"layer {layer}: entry {name!r} would be written through symlink {current}"
            )
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise UnsafeLayerError(f"layer {layer}: entry {name!r} needs {current} to be a folder")
    return current


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
