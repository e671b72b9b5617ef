"""Models that misbehave the way real ones do, for tests: no switch in the product makes a version
bad; its model does.

- `demo_team_model`: the demo's third version, trained by the demo team's own script through the
  real `train` harness (script mode): it fails on new customers (0 months of tenure).
- `with_step`: a trained model folder with a team's pipeline step in front of its estimator (the
  step's module shipped in the artifact's code/ folder, as the model-artifact contract says), and
  without its compiled predictors, so the estimator answers every request.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from modelops.script_code import pack_folder

from modelops_local.demo import DEMO_TEAM
from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

MODEL_CODE = Path(__file__).resolve().parent / "model_code"
# The serving image's package, imported from its folder as the image's PYTHONPATH does.
SERVING_IMAGE = Path(__file__).resolve().parents[1] / "serving_image"
if str(SERVING_IMAGE) not in sys.path:
    sys.path.insert(0, str(SERVING_IMAGE))


def demo_team_model(base: Path, rows: int = 600, seed: int = 3) -> Path:
    """Train the demo team's script on churn data as the workflow's job would; returns model/."""
    from model_server.contract import container_paths
    from model_server.train import main

    hyper = {
        "label_column": CHURN_LABEL,
        "feature_columns": json.dumps(list(CHURN_FEATURES)),
        "task": "binary_classification",
        "objective_metric": "auc",
        "entry_point": "train.py",
        "max_iter": "30",
        "max_depth": "3",
    }
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    generate_churn_csv(base / "input" / "data" / "train" / "customers.csv", rows, seed)
    code = base / "input" / "data" / "code"
    code.mkdir(parents=True)
    (code / "sourcedir.tar.gz").write_bytes(pack_folder(DEMO_TEAM, entry_point="train.py").data)
    env = {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "demo-team-job"}
    if main(env) != 0:
        raise AssertionError(container_paths(env).failure_file.read_text())
    return container_paths(env).model_dir


def with_step(model_dir: Path, dest: Path, module: str, function: str, **kw_args: Any) -> Path:
    """A copy of `model_dir` in `dest` whose model is Pipeline([team step, the estimator]); the
    step is `function` of tests/model_code/`module`.py, called with `kw_args`."""
    import joblib
    from model_server.artifact import load_model
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    sys.path.insert(0, str(MODEL_CODE))
    try:
        step = getattr(__import__(module), function)
        estimator = load_model(model_dir).estimator
        shutil.copytree(model_dir, dest)
        pipeline = Pipeline([("team_step", FunctionTransformer(step, kw_args=kw_args)), ("model", estimator)])
        meta_path = dest / "metadata.json"
        meta = json.loads(meta_path.read_text())
        joblib.dump(pipeline, dest / meta["model_file"])
    finally:
        sys.path.remove(str(MODEL_CODE))
        sys.modules.pop(module, None)
    (dest / "code").mkdir(exist_ok=True)
    shutil.copy(MODEL_CODE / f"{module}.py", dest / "code" / f"{module}.py")
    for compiled in ("forest.json", "native"):
        path = dest / compiled
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    meta.update(forest_file=None, forest_max_abs_diff=None, compiled_skipped="a team step runs first")
    meta_path.write_text(json.dumps(meta))
    return dest
