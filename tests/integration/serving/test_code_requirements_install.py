"""A model whose code needs a package the image does not carry (tests/model_code/with_requirements:
inflection, from the package index): script mode installs it to train and judge, the image build's
step installs it where `serve` finds it, and `serve` alone never installs anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_server import code_requirements

from tests.integration.models.test_serving_script_mode import TIER, _train, _unseen_rows

ROOT = Path(__file__).resolve().parents[3]
CODE = ROOT / "tests" / "model_code" / "with_requirements"
SERVING = ROOT / "serving_image"


def _serve_load(model_dir: Path, *extra_path: Path) -> subprocess.CompletedProcess[str]:
    """load_model + predict in a fresh Python, as `serve` would (no install), with `extra_path`
    (an image's site-packages) importable."""
    script = (
        "import json, sys\n"
        "from model_server.artifact import load_model\n"
        "from model_server.errors import ModelLoadError\n"
        "try:\n"
        f"    model = load_model(__import__('pathlib').Path({str(model_dir)!r}))\n"
        "except ModelLoadError as exc:\n"
        "    print(exc, file=sys.stderr); sys.exit(3)\n"
        "rows = json.loads(sys.stdin.read())\n"
        "print(json.dumps(model.estimator.predict(rows).tolist()))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(_unseen_rows(4)),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [SERVING, *extra_path]))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("req"), {**TIER, "entry_point": "train.py"}, CODE)


def test_script_mode_installs_the_teams_requirements_to_train_and_ships_them(model_dir):
    # The script imported inflection (installed from requirements.txt under the image's pins)
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["model_file"] == "model.joblib"
    assert (model_dir / "code" / "requirements.txt").read_bytes() == (CODE / "requirements.txt").read_bytes()
    # ...and the same model as the next run's champion is judged (loaded with its package) too
    second = _train(
        model_dir.parent / "second", {**TIER, "entry_point": "train.py"}, CODE, champion=model_dir
    )
    assert json.loads((second / "evaluation.json").read_text())["champion"] is not None


def test_serve_names_the_missing_package_then_loads_once_the_build_installed_it(model_dir, tmp_path):
    # Without the image build's install, serve refuses the model naming the package
    bare = _serve_load(model_dir)
    assert bare.returncode == 3, bare
    assert "inflection==0.5.1 not installed in this image" in bare.stderr, bare.stderr

    # The image build's step (the Dockerfile's serving stage; --prefix: a venv-shaped folder)
    venv = tmp_path / "venv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_server.code_requirements",
            "install",
            str(model_dir / "code"),
            str(SERVING),
            "--prefix",
            str(venv),
        ],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "installed inflection==0.5.1, numpy>=2" in done.stdout, done.stdout
    site = code_requirements.site_packages(venv)
    assert (site / "inflection.py").is_file() and not (site / "numpy").exists()  # only what it lacked

    # Then serve loads it and answers
    served = _serve_load(model_dir, site)
    assert served.returncode == 0, served.stderr
    assert len(json.loads(served.stdout)) == 4
