"""The files CodeBuild uses to build the image: Dockerfile, requirements.txt, buildspec.yml."""

from __future__ import annotations

import re
from importlib.metadata import requires, version
from pathlib import Path

import pytest
import yaml

IMAGE_DIR = Path(__file__).resolve().parents[3] / "serving_image"


def _stages(dockerfile: str) -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        elif current:
            stages[current].append(line)
    return stages


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (IMAGE_DIR / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, pinned = line.partition("==")
            assert pinned, f"{line!r} is not pinned with =="
            pins[package] = pinned
    return pins


FORMAT_SETS = {"xgboost": "xgboost-cpu", "lightgbm": "lightgbm", "onnx": "onnxruntime"}


@pytest.mark.parametrize("name", ["requirements.txt", *(f"requirements-{s}.txt" for s in FORMAT_SETS)])
def test_requirements_pin_the_versions_the_tests_run_with(name):
    # Given the image's requirements (every image's, and each model format's set)
    pins = _pins(name)

    # Then every pin equals the version installed here, so the image serves what was tested
    assert {name: version(name) for name in pins} == pins
    # and no image carries treelite or tl2cgen (the build stage's, requirements-build.txt)
    assert not set(pins) & {"treelite", "tl2cgen"}


def test_every_image_has_the_base_and_each_format_set_only_its_library():
    base = _pins("requirements.txt")
    assert set(base) >= {"numpy", "scikit-learn", "scipy", "joblib", "httptools", "uvloop", "packaging"}
    assert not set(base) & set(FORMAT_SETS.values())
    for name, library in FORMAT_SETS.items():
        pins = _pins(f"requirements-{name}.txt")
        assert library in pins and not set(pins) & set(base), name
        # installed with --no-deps: each library's dependencies are in the base or in its own set
        for package in pins:
            needs = {
                re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower().replace("_", "-")
                for r in requires(package) or []
                if "extra ==" not in r
            }
            assert needs <= set(base) | set(pins), (name, package, needs - set(base) - set(pins))


def test_build_requirements_pin_the_versions_the_tests_run_with():
    # Given the model stage's extra requirements
    pins = _pins("requirements-build.txt")

    # Then they are treelite and tl2cgen (and their dependencies) as installed here
    assert set(pins) >= {"treelite", "tl2cgen"}
    assert {name: version(name) for name in pins} == pins


def test_dockerfile_is_multi_stage_non_root_and_serves_on_8080():
    stages = _stages((IMAGE_DIR / "Dockerfile").read_text())

    # The builder installs the pinned requirements into a venv; the final stages copy only the venv
    assert list(stages) == ["builder", "base", "runtime", "model", "serving"]
    assert any("pip install" in i and "-r /tmp/requirements.txt" in i for i in stages["builder"])
    assert not any("pip install" in i for i in stages["base"] + stages["runtime"] + stages["serving"])
    # ...and each format set apart in /opt/formats/<set>, on every image's PYTHONPATH; the training
    # image (runtime) carries them all, a serving image the ones the model stage chose
    for name in FORMAT_SETS:
        assert (
            f"RUN /opt/venv/bin/pip install --only-binary=:all: --no-deps --target /opt/formats/{name} "
            f"-r /tmp/requirements-{name}.txt"
        ) in stages["builder"]
    base_env = " ".join(i for i in stages["base"] if i.startswith("ENV "))
    assert "PYTHONPATH=/opt/program:/opt/formats/xgboost:/opt/formats/lightgbm:/opt/formats/onnx" in base_env
    assert stages["runtime"] == ["COPY --from=builder /opt/formats /opt/formats"]
    assert "COPY --from=model /formats /opt/formats" in stages["serving"]
    assert (
        "RUN /opt/venv/bin/python -m model_server.formats select /model /opt/formats /formats"
        in stages["model"]
    )
    assert not any("/opt/formats" in i and "COPY" in i for i in stages["serving"] if "from=model" not in i)
    # The serving stage installs the model's own code/requirements.txt as root, under the image's pins
    # (copied beside the code), then runs as 10001 again
    assert any(i.startswith("COPY requirements") and i.endswith(" /opt/program/") for i in stages["base"])
    serving = stages["serving"]
    (install,) = [i for i in serving if "model_server.code_requirements install" in i]
    assert "--mount=type=bind,from=model,source=/model,target=/tmp/model" in install
    assert install.endswith("install /tmp/model/code /opt/program")
    at = serving.index(install)
    assert serving[at - 1] == "USER root" and serving[at + 1] == "USER 10001"
    assert "COPY --from=builder /opt/venv /opt/venv" in stages["base"]
    # train and serve are on PATH, the process is not root, the port is exposed
    assert "PATH=/opt/program/bin:/opt/venv/bin:$PATH" in base_env
    assert any(i.startswith("COPY") and "bin/train" in i and "bin/serve" in i for i in stages["base"])
    for stage in ("base", "serving"):
        assert [i for i in stages[stage] if i.startswith("USER")][-1] == "USER 10001"
        assert "EXPOSE 8080" in stages[stage]
    assert not any(i.startswith("USER") for i in stages["runtime"])  # FROM base: 10001
    # The model stage unpacks the MODEL_ARTIFACT build argument into /opt/ml/model of the final image
    assert "ARG MODEL_ARTIFACT=model.tar.gz" in stages["model"]
    assert any("tar --extract" in i for i in stages["model"])
    assert "COPY --from=model --chown=10001:10001 /model /opt/ml/model" in stages["serving"]
    # ...after building the native predictor into it, with the code the image serves with, in a stage
    # whose compiler never reaches the final image
    assert "COPY model_server /opt/program/model_server" in stages["model"]
    assert "RUN /opt/venv/bin/python -m model_server.native build /model" in stages["model"]
    model_env = " ".join(i for i in stages["model"] if i.startswith("ENV "))
    assert "PYTHONPATH=/opt/program:/opt/formats/xgboost:/opt/formats/lightgbm:/opt/formats/onnx" in model_env
    # ...with the runtime's venv plus the build-time requirements (treelite, tl2cgen) in that stage only
    assert "COPY --from=builder /opt/venv /opt/venv" in stages["model"]
    assert any("pip install" in i and "requirements-build.txt" in i for i in stages["model"])


def test_the_model_stage_builds_on_the_same_python_as_the_runtime():
    text = (IMAGE_DIR / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    # Given the runtime's base image and the model stage's (which has gcc and Python's headers)
    runtime, build = args["PYTHON_IMAGE"], args["BUILD_IMAGE"]
    assert re.search(r"^FROM \$\{BUILD_IMAGE\} AS model$", text, re.MULTILINE)
    # Then both are the same Python minor version (the native predictor is built against its ABI)
    assert runtime.split(":")[1].split("-")[0] == build.split(":")[1].split("-")[0] == "3.11"


def test_the_copied_paths_exist():
    # Every path the Dockerfile copies from the context exists (the build context is serving_image/)
    for line in (IMAGE_DIR / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line and "${" not in line:
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for source in sources:
                assert (IMAGE_DIR / source).exists(), f"Dockerfile copies missing {source}"
    for program in ("train", "serve"):
        assert (IMAGE_DIR / "bin" / program).stat().st_mode & 0o111, f"bin/{program} is not executable"


def test_buildspec_uses_the_workflow_variables_and_exports_the_digest():
    # Given the buildspec
    text = (IMAGE_DIR / "buildspec.yml").read_text()
    spec = yaml.safe_load(text)

    # Then it is a v0.2 buildspec that exports the digest for BatchGetBuilds
    assert spec["version"] == 0.2
    assert "IMAGE_DIGEST" in spec["env"]["exported-variables"]
    # And it uses what modelops.steps.build.start_build passes
    for variable in (
        "MODEL_ARTIFACT_S3_URI",
        "IMAGE_REPOSITORY_URI",
        "IMAGE_TAG",
        "MODEL_NAME",
        "MODEL_VERSION",
        "BASELINE_ARTIFACT_S3_URI",
    ):
        assert f"${{{variable}" in text or f"${variable}" in text, variable
    commands = [c for phase in spec["phases"].values() for c in phase["commands"]]
    assert any("aws s3 cp" in c and "MODEL_ARTIFACT_S3_URI" in c for c in commands)
    assert any("docker build" in c and "MODEL_ARTIFACT=model.tar.gz" in c for c in commands)
    assert any(c.startswith("docker push") for c in commands)
    assert any("RepoDigests" in c for c in commands)
    assert any(c.startswith("IMAGE_DIGEST=") for c in commands)


def test_buildspec_builds_the_training_image_without_a_model():
    # Given the buildspec and what `modelops bootstrap` passes (IMAGE_TARGET=runtime, no model)
    spec = yaml.safe_load((IMAGE_DIR / "buildspec.yml").read_text())
    commands = [c for phase in spec["phases"].values() for c in phase["commands"]]
    # Then the target is IMAGE_TARGET (serving by default), the model is needed only to serve
    assert 'IMAGE_TARGET="${IMAGE_TARGET:-serving}"' in commands
    assert any("docker build" in c and '--target "$IMAGE_TARGET"' in c for c in commands)
    # (the model's artifact, and a team image's judge artifact with the drift baseline)
    downloads = [c for c in commands if "aws s3 cp" in c]
    assert len(downloads) == 2
    assert all(d.startswith('if [ "$IMAGE_TARGET" = serving ]') for d in downloads)
    (check,) = [c for c in commands if "MODEL_ARTIFACT_S3_URI:?" in c]
    assert check.startswith('[ "$IMAGE_TARGET" = runtime ] ||')
    # And the Dockerfile's runtime stage comes before the model stage (it never needs the artifact)
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    assert (
        dockerfile.index("AS runtime")
        < dockerfile.index("AS model")
        < dockerfile.index("COPY ${MODEL_ARTIFACT}")
    )


def test_pods_drain_within_their_termination_grace_period():
    # Given the two Deployments of the serving image
    from model_server.contract import serve_settings

    for name in ("10-deployment-stable.yaml", "11-deployment-canary.yaml"):
        doc = yaml.safe_load((IMAGE_DIR / "k8s" / name).read_text())
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}

        # Then the server keeps serving while the endpoint removal propagates (the pod leaves the
        # EndpointSlices at deletion; kube-proxy and load balancers learn it seconds later), then
        # waits for in-flight requests, and both fit in the grace period before the SIGKILL
        settings = serve_settings(env)
        assert settings.drain_seconds >= 3, name
        grace = pod["terminationGracePeriodSeconds"]
        assert settings.drain_seconds + settings.graceful_timeout_seconds < grace, name


def test_the_base_stage_has_the_openmp_library_lightgbm_links():
    # Given the base stage (python:3.11-slim has no libgomp; LightGBM's wheel links it, XGBoost's
    # CPU wheel bundles its own)
    stages = _stages((IMAGE_DIR / "Dockerfile").read_text())
    installs = [i for i in stages["base"] if "apt-get install" in i]

    # Then it installs libgomp1 without extras, as root (before USER), and drops apt's lists
    assert len(installs) == 1
    assert "--no-install-recommends libgomp1" in installs[0]
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]
    assert stages["base"].index(installs[0]) < stages["base"].index("USER 10001")
    assert "lightgbm" in _pins("requirements-lightgbm.txt")
