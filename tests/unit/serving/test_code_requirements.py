"""A model's code/requirements.txt: what it may say, refused before pip runs (no network here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from model_server import code_requirements as cr

ROOT = Path(__file__).resolve().parents[3]
PINS = ROOT / "serving_image"


def _code(tmp_path: Path, text: str) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "requirements.txt").write_text(text)
    return code


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_server.code_requirements", *args],
        cwd=ROOT / "serving_image",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_names_versions_extras_markers_and_comments_are_read(tmp_path):
    code = _code(
        tmp_path,
        "# ours\ninflection==0.5.1  # slugs\n\nRapid_Fuzz[full]>=3,<4\nnumpy>=2 ; python_version >= '3'\n",
    )

    found = cr.read_requirements(code / "requirements.txt")

    assert [(r.line, r.name, r.specifier) for r in found] == [
        (2, "inflection", "==0.5.1"),
        (4, "rapid-fuzz", "<4,>=3"),
        (5, "numpy", ">=2"),
    ]
    cr.check(found, cr.read_pins(PINS))  # numpy>=2 accepts the image's numpy: no conflict


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--extra-index-url https://example.com/simple", "pip options are not accepted"),
        ("-r other.txt", "pip options are not accepted"),
        ("-e .", "pip options are not accepted"),
        ("tool @ https://example.com/tool-1.0-py3-none-any.whl", "URLs and paths are not accepted"),
        ("./wheels/tool-1.0-py3-none-any.whl", "URLs and paths are not accepted"),
        ("git+https://example.com/tool.git", "URLs and paths are not accepted"),
        ("tool >>> 1", "not a requirement"),
    ],
)
def test_anything_but_a_package_from_the_index_is_refused_naming_the_line(tmp_path, line, says):
    code = _code(tmp_path, f"inflection==0.5.1\n{line}\n")

    with pytest.raises(cr.RequirementsError) as caught:
        cr.read_requirements(code / "requirements.txt")

    assert "line 2" in str(caught.value) and says in str(caught.value), caught.value


def test_a_requirement_that_would_change_a_pinned_version_fails_naming_the_package(tmp_path):
    pins = cr.read_pins(PINS)
    code = _code(tmp_path, f"inflection==0.5.1\nnumpy<2\nscikit_learn!={pins['scikit-learn']}\n")

    with pytest.raises(cr.RequirementsError) as caught:
        cr.check(cr.read_requirements(code / "requirements.txt"), pins)

    message = str(caught.value)
    assert f"line 2 'numpy<2' conflicts with the image's numpy=={pins['numpy']}" in message
    assert f"scikit-learn=={pins['scikit-learn']}" in message and "inflection" not in message


def test_the_build_step_fails_before_pip_runs_and_installs_nothing(tmp_path):
    # Given a conflicting requirement and an install target
    code = _code(tmp_path, "inflection==0.5.1\nnumpy==1.26.4\n")
    target = tmp_path / "site"

    # When the image build's step runs
    done = _cli("install", str(code), str(PINS), "--prefix", str(target))

    # Then it exits 1 naming numpy and the image's version, and nothing was installed
    assert done.returncode == 1, done
    assert "'numpy==1.26.4' conflicts with the image's numpy==" in done.stderr, done.stderr
    assert not target.exists()


def test_a_model_without_requirements_installs_nothing(tmp_path):
    (tmp_path / "code").mkdir()

    done = _cli("install", str(tmp_path / "code"), str(PINS))

    assert done.returncode == 0 and "nothing to install" in done.stdout, done
    assert cr.ensure(tmp_path / "code", install_missing=False) is None


def test_serve_never_installs_it_names_the_missing_package(tmp_path):
    code = _code(tmp_path, "numpy>=2\nmodelops-no-such-package==1.0\n")

    with pytest.raises(cr.RequirementsError) as caught:
        cr.ensure(code, install_missing=False)

    assert "modelops-no-such-package==1.0 not installed in this image" in str(caught.value)
    assert "numpy" not in str(caught.value)  # the image's own numpy satisfies numpy>=2
