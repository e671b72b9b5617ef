"""Script mode in the product layer: training.script's validation, the deterministic code archive,
and the training job's `code` channel and `entry_point` hyperparameter."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from modelops.config import load_config_file, parse_config
from modelops.errors import ConfigError
from modelops.script_code import pack_folder

from tests.unit.domain.test_config import training_request

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "script_mode"
S3_CODE = "s3://b/code/churn/" + "a" * 64 + ".tar.gz"


def _doc(**training):
    doc = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    doc["training"] = {**doc["training"], **training}
    return doc


def test_the_shipped_script_mode_example_is_valid():
    config = load_config_file(EXAMPLE / "tiers.yaml")
    assert config.training.script is not None
    assert (config.training.script.entry_point, config.training.script.source) == ("train.py", ".")
    assert (EXAMPLE / config.training.script.source / config.training.script.entry_point).is_file()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            {"entry_point": "../train.py", "source": "."},
            "training.script.entry_point: '../train.py' must be a plain relative path",
        ),
        (
            {"entry_point": "/opt/train.py", "source": "."},
            "must be a plain relative path inside the code folder",
        ),
        ({"entry_point": "train.sh", "source": "."}, "'train.sh' must name a .py file"),
        (
            {"entry_point": "train.py", "source": "s3://b/code/x.zip"},
            "training.script.source: 's3://b/code/x.zip' must be s3://<bucket>/<key>.tar.gz",
        ),
        (
            {"entry_point": "train.py", "source": "https://example.com/c.tar.gz"},
            "must be an s3:// URI of a .tar.gz or a local folder",
        ),
        ({"source": "."}, "training.script.entry_point: Field required"),
        (
            {"entry_point": "train.py", "source": ".", "image": "x"},
            "training.script.image: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_script_section_names_the_field(script, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(script=script))
    assert message in str(err.value)


def test_a_script_excludes_a_built_in_algorithm_and_owns_its_hyperparameters():
    script = {"entry_point": "train.py", "source": S3_CODE}
    with pytest.raises(
        ConfigError, match="training.script and training.algorithm 'xgboost' exclude each other"
    ):
        parse_config(_doc(script=script, algorithm="xgboost"))
    with pytest.raises(
        ConfigError, match="set training.script.entry_point, not training.hyperparameters.entry_point"
    ):
        parse_config(_doc(script=script, hyperparameters={"entry_point": "x.py"}))
    with pytest.raises(ConfigError, match=r"\['script_timeout_seconds'\] apply to training.script only"):
        parse_config(_doc(hyperparameters={"script_timeout_seconds": 60}))
    # With its own image (one built FROM the serving image, say) and a timeout: valid
    config = parse_config(
        _doc(script=script, image="123.dkr.ecr/x:1", hyperparameters={"script_timeout_seconds": 60})
    )
    assert config.training.script is not None and config.training.image


def test_the_job_gets_the_code_channel_and_the_entry_point():
    config = parse_config(
        _doc(script={"entry_point": "src/train.py", "source": S3_CODE}, hyperparameters={"C": 2})
    )

    request = training_request(config)

    code = [c for c in request["InputDataConfig"] if c["ChannelName"] == "code"]
    assert code == [
        {
            "ChannelName": "code",
            "ContentType": "application/x-tar",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": S3_CODE,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]
    assert (
        request["HyperParameters"]["entry_point"] == "src/train.py" and request["HyperParameters"]["C"] == "2"
    )
    # Without a script: neither
    plain = training_request(parse_config(_doc()))
    assert "entry_point" not in plain["HyperParameters"]
    assert [c["ChannelName"] for c in plain["InputDataConfig"]] == ["train"]


def test_a_local_source_never_reaches_a_training_job():
    config = parse_config(_doc(script={"entry_point": "train.py", "source": "./code"}))
    with pytest.raises(
        ConfigError, match=r"training.script.source './code' is a local folder.*modelops model put"
    ):
        training_request(config)


def test_the_same_folder_packs_to_the_same_bytes(tmp_path):
    folder = tmp_path / "code"
    (folder / "lib").mkdir(parents=True)
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "lib" / "features.py").write_text("X = 1\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")

    first = pack_folder(folder, entry_point="train.py")
    os.utime(folder / "train.py", (1_000_000, 1_000_000))  # a touched file: same content, same archive
    second = pack_folder(folder, entry_point="train.py")

    assert first.data == second.data and first.sha256 == second.sha256
    assert first.key("tiers") == f"code/tiers/{first.sha256}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(first.data)) as tar:
        assert [m.name for m in tar.getmembers()] == ["lib/features.py", "train.py"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    (folder / "train.py").write_text("print('changed')\n")
    assert pack_folder(folder, entry_point="train.py").sha256 != first.sha256


def test_packing_refuses_a_missing_entry_point_or_folder(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "fit.py").write_text("")
    with pytest.raises(
        ConfigError,
        match=r"training.script.entry_point: 'train.py' is not in .*code \(it holds \['fit.py'\]\)",
    ):
        pack_folder(tmp_path / "code", entry_point="train.py")
    with pytest.raises(ConfigError, match="training.script.source: .*nope is not a folder"):
        pack_folder(tmp_path / "nope", entry_point="train.py")
