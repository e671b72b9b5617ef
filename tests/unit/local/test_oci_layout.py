"""The pure-Python OCI image builder: a real image layout, deterministic, safely unpackable."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from modelops_local import oci
from modelops_local.oci import ImageConfig, LayerSpec, build_image, read_manifest, resolve_tag, unpack_image

CONFIG = ImageConfig(
    cmd=["serve"],
    env={"PATH": "/opt/program/bin:/usr/bin", "PYTHONPATH": "/opt/program"},
    user="10001",
    exposed_ports=["8080"],
    working_dir="/opt/program",
    labels={"io.modelops.model": "churn"},
)


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    code = tmp_path / "code"
    (code / "bin").mkdir(parents=True)
    (code / "bin" / "serve").write_text("#!/usr/bin/env python3\nprint('serve')\n")
    (code / "bin" / "serve").chmod(0o755)
    (code / "model_server").mkdir()
    (code / "model_server" / "__init__.py").write_text('"""pkg"""\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"\x00model-bytes\xff" * 100)
    (model / "metadata.json").write_text('{"task": "binary_classification"}')
    return code, model


def _layers(code: Path, model: Path) -> list[LayerSpec]:
    return [LayerSpec(code, "/opt/program"), LayerSpec(model, "/opt/ml/model")]


def test_layout_blobs_and_descriptors_follow_the_spec(tmp_path, sources):
    # When an image is built from the serving code and a model
    layout = tmp_path / "layout"
    image = build_image(layout, "modelops/churn", "v1", _layers(*sources), CONFIG)

    # Then the layout has its marker and an index naming the manifest by tag
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == oci.MEDIA_INDEX
    [entry] = index["manifests"]
    assert entry == {
        "mediaType": oci.MEDIA_MANIFEST,
        "digest": image.digest,
        "size": len(image.manifest_bytes),
        "annotations": {
            "org.opencontainers.image.ref.name": "v1",
            "io.modelops.image.repository": "modelops/churn",
        },
    }
    # And every blob is stored under blobs/sha256/<sha256 of its bytes>
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert image.digest == "sha256:" + hashlib.sha256(image.manifest_bytes).hexdigest()
    # And the manifest and config carry the right media types, sizes and diff_ids
    manifest = read_manifest(layout, image.digest)
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST and manifest["schemaVersion"] == 2
    assert manifest["config"]["mediaType"] == oci.MEDIA_CONFIG
    assert manifest["config"]["digest"] == image.config_digest
    config = oci.read_config(layout, manifest)
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) == 2
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        assert layer["mediaType"] == oci.MEDIA_LAYER_GZIP
        assert layer["size"] == len(blob)
        assert diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert config["config"]["User"] == "10001"
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["config"]["Cmd"] == ["serve"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert resolve_tag(layout, "v1") == image.digest
    assert image.reference == f"modelops/churn@{image.digest}"


def test_same_inputs_give_the_same_digest(tmp_path, sources):
    # Given the same sources built twice, the second time after their mtimes changed
    first = build_image(tmp_path / "a", "r", "t", _layers(*sources), CONFIG)
    for path in sources[0].rglob("*"):
        path.touch()
    second = build_image(tmp_path / "b", "r", "t", _layers(*sources), CONFIG)

    # Then layers, config and manifest are byte-identical
    assert second.digest == first.digest
    assert second.layers == first.layers

    # But a changed model file changes the image
    (sources[1] / "metadata.json").write_text('{"task": "regression"}')
    assert build_image(tmp_path / "c", "r", "t", _layers(*sources), CONFIG).digest != first.digest


def test_layer_entries_are_sorted_and_owned_by_root_at_epoch(tmp_path, sources):
    tar_bytes = oci.layer_tar(LayerSpec(sources[0], "/opt/program"))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["opt", "opt/program"]
    assert names[2:] == sorted(names[2:])
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert next(m for m in members if m.name == "opt/program/bin/serve").mode == 0o755


def test_unpack_reproduces_the_files(tmp_path, sources):
    # Given a built image
    code, model = sources
    image = build_image(tmp_path / "layout", "r", "t", _layers(code, model), CONFIG)

    # When it is unpacked into a root folder
    root = unpack_image(tmp_path / "layout", image.digest, tmp_path / "rootfs")

    # Then every file is where the layers put it, with its bytes and exec bit
    for source, target in ((code, root / "opt/program"), (model, root / "opt/ml/model")):
        for path in source.rglob("*"):
            if path.is_file():
                copy = target / path.relative_to(source)
                assert copy.read_bytes() == path.read_bytes()
                assert bool(copy.stat().st_mode & 0o100) == bool(path.stat().st_mode & 0o100)


def test_retagging_replaces_only_that_tag(tmp_path, sources):
    layout = tmp_path / "layout"
    v1 = build_image(layout, "r", "v1", _layers(*sources), CONFIG)
    (sources[1] / "metadata.json").write_text("{}")
    v2 = build_image(layout, "r", "v2", _layers(*sources), CONFIG)
    again = build_image(layout, "r", "v1", _layers(*sources), CONFIG)
    assert resolve_tag(layout, "v2") == v2.digest == again.digest
    assert resolve_tag(layout, "v1") == again.digest != v1.digest
    assert len(json.loads((layout / "index.json").read_text())["manifests"]) == 2


def test_a_corrupted_blob_is_detected(tmp_path, sources):
    layout = tmp_path / "layout"
    image = build_image(layout, "r", "t", _layers(*sources), CONFIG)
    layer = layout / "blobs" / "sha256" / image.layers[1].digest.split(":")[1]
    data = layer.read_bytes()
    layer.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one flipped byte
    with pytest.raises(oci.BlobDigestMismatchError, match=image.layers[1].digest):
        unpack_image(layout, image.digest, tmp_path / "rootfs")


# --- hostile layers ------------------------------------------------------------------------------
def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, file bytes or None, symlink target or None) -> an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image_of(layout: Path, layer_tars: list[bytes]) -> str:
    """An image made of hand-written layers (as another builder could produce)."""
    oci.init_layout(layout)
    descriptors, diff_ids = [], []
    for raw in layer_tars:
        gz = gzip.compress(raw, mtime=0)
        descriptors.append(
            {"mediaType": oci.MEDIA_LAYER_GZIP, "digest": oci.write_blob(layout, gz), "size": len(gz)}
        )
        diff_ids.append(oci.sha256_digest(raw))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.MEDIA_MANIFEST,
        "config": {
            "mediaType": oci.MEDIA_CONFIG,
            "digest": oci.write_blob(layout, config),
            "size": len(config),
        },
        "layers": descriptors,
    }
    return oci.write_blob(layout, json.dumps(manifest).encode())


def test_path_traversal_is_refused(tmp_path):
    digest = _image_of(tmp_path / "layout", [_tar([("ok.txt", b"ok", None), ("../escaped.txt", b"x", None)])])
    with pytest.raises(oci.UnsafeLayerError, match=r"\.\./escaped\.txt"):
        unpack_image(tmp_path / "layout", digest, tmp_path / "rootfs")
    assert not (tmp_path / "escaped.txt").exists()


def test_writing_through_a_symlink_is_refused(tmp_path):
    # Given a lower layer with a symlink to outside the root and an upper layer writing through it
    outside = tmp_path / "outside"
    outside.mkdir()
    digest = _image_of(
        tmp_path / "layout",
        [_tar([("etc", None, str(outside))]), _tar([("etc/passwd", b"root::0:0", None)])],
    )

    # Then unpacking stops before anything lands outside the root
    with pytest.raises(oci.UnsafeLayerError, match="through symlink"):
        unpack_image(tmp_path / "layout", digest, tmp_path / "rootfs")
    assert list(outside.iterdir()) == []


def test_whiteouts_delete_lower_layer_files(tmp_path):
    digest = _image_of(
        tmp_path / "layout",
        [
            _tar(
                [
                    ("app", None, None),
                    ("app/old.py", b"old", None),
                    ("app/keep.py", b"keep", None),
                    ("cache/x", b"x", None),
                ]
            ),
            _tar([("app/.wh.old.py", b"", None), ("cache/.wh..wh..opq", b"", None), ("cache/y", b"y", None)]),
        ],
    )
    root = unpack_image(tmp_path / "layout", digest, tmp_path / "rootfs")
    assert sorted(p.name for p in (root / "app").iterdir()) == ["keep.py"]
    assert sorted(p.name for p in (root / "cache").iterdir()) == ["y"]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (optional cross-check)")
def test_skopeo_reads_the_layout(tmp_path, sources):
    image = build_image(tmp_path / "layout", "r", "v1", _layers(*sources), CONFIG)
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'layout'}:v1"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == image.manifest_bytes


def test_the_serving_image_spec_packs_code_and_model_without_caches(tmp_path, sources):
    # Given the repository's serving image folder (which may hold __pycache__ from test runs) and a model
    serving_image = Path(__file__).resolve().parents[3] / "serving_image"
    layers, config = oci.serving_image_spec(serving_image, sources[1], labels={"io.modelops.version": "3"})

    # When the image is built and unpacked
    image = build_image(tmp_path / "layout", "serving", "v3", layers, config)
    root = unpack_image(tmp_path / "layout", image.digest, tmp_path / "rootfs")

    # Then the programs, the package and the model sit where the Dockerfile puts them
    assert (root / "opt/program/bin/serve").stat().st_mode & 0o111
    assert (root / "opt/program/bin/train").is_file()
    assert (root / "opt/program/model_server/server.py").is_file()
    assert (root / "opt/ml/model/metadata.json").read_bytes() == (sources[1] / "metadata.json").read_bytes()
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    # And the config runs `serve` as the non-root user on 8080, like the Dockerfile
    cfg = oci.read_config(tmp_path / "layout", read_manifest(tmp_path / "layout", image.digest))["config"]
    assert (cfg["Cmd"], cfg["User"], cfg["ExposedPorts"]) == (["serve"], "10001", {"8080/tcp": {}})
    assert "PYTHONPATH=/opt/program" in cfg["Env"]
    # And rebuilding gives the same digest
    assert build_image(tmp_path / "again", "serving", "v3", layers, config).digest == image.digest
