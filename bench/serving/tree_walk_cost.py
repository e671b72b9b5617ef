"""CPU time of a tree ensemble's evaluation: tl2cgen's C, the array walker, and the model's library.

For each model folder (default: the serving bench's XGBoost, LightGBM binary and LightGBM 3-class
models under bench/serving/.work/<format>/ml/model, which `run.py` trains; any folder train.py
wrote works), builds both libraries the image build chooses between (trees.py: tl2cgen's C at -O1,
tree_arrays.py's walker at -O3) into a temporary folder, checks each against the folder's
check.json, and times, in this thread's CPU time (thread_time: another process on the machine
slows it less than it slows a throughput run), the best of 5 rounds:
- `batch`: microseconds a row answering 100-row batches (the rows as the server gets them: lists
  of floats, 5% missing);
- `one-row`: microseconds a one-row call;
for tl2cgen, the walker, and the library's own predict on a numpy array (LightGBM with one thread,
XGBoost's inplace predict), then the ratios tl2cgen / walker and library / walker.

    .venv/bin/python bench/serving/tree_walk_cost.py [MODEL_DIR ...] [--rows 1000] [--seconds 0.5]
    taskset -c 0 .venv/bin/python bench/serving/tree_walk_cost.py   # pinned to one core
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "serving_image"))

from model_server import native, tree_arrays, trees  # noqa: E402
from model_server.artifact import load_model, read_metadata  # noqa: E402

DEFAULT_MODELS = [
    ROOT / "bench" / "serving" / ".work" / name / "ml" / "model"
    for name in ("xgboost", "lightgbm", "lightgbm-multiclass")
]


def best_us(call: Callable[[Any], Any], inputs: list[Any], count: int, seconds: float) -> float:
    """Microseconds per unit (`count` units in one pass over `inputs`), best of 5 rounds."""
    for item in inputs[:3]:
        call(item)
    fastest = math.inf
    for _ in range(5):
        started, passes = time.thread_time(), 0
        while True:
            for item in inputs:
                call(item)
            passes += 1
            spent = time.thread_time() - started
            if spent >= seconds / 5:
                break
        fastest = min(fastest, spent / passes / count * 1e6)
    return fastest


def libraries(folder: Path, tmp: Path) -> dict[str, trees.NativeTrees]:
    """tl2cgen's and the walker's libraries for the model folder, each checked against check.json."""
    meta = read_metadata(folder)
    model = trees._treelite_model(folder, meta)
    cc = native.find_compiler()
    if cc is None:
        raise SystemExit("no C compiler (cc, gcc or clang) on PATH")
    built: dict[str, trees.NativeTrees] = {}
    src = tmp / "tl2cgen"
    src.mkdir()
    sources, width, first = trees.generate(folder, meta, src, model)
    native.compile_library(cc, src, sources, "lib.so", cflags=trees.TREES_CFLAGS)
    built["tl2cgen"] = trees.open_library(src / "lib.so", len(meta.feature_columns), width)
    walk = tmp / "walker"
    walk.mkdir()
    refusal = trees._walker_refusal(folder, meta)
    if refusal:
        print(f"  walker: not built ({refusal})")
    else:
        sources = tree_arrays.walker_generate(
            model, first, width, walk, float32_input=trees._float32_input(meta)
        )
        native.compile_library(cc, walk, sources, "lib.so", cflags=tree_arrays.WALKER_CFLAGS)
        built["walker"] = trees.open_library(walk / "lib.so", len(meta.feature_columns), width)
    for name, library in built.items():
        worst, rows = trees.verify(library, folder, trees.tolerance(meta))
        print(f"  {name}: max difference {worst:.3g} to the model on {rows} check rows")
    return built


def library_call(folder: Path) -> Callable[[np.ndarray], Any]:
    """The model's own predict, single-threaded, on a numpy array (what a naive server calls)."""
    loaded: Any = load_model(folder)
    estimator = getattr(loaded, "estimator", loaded)
    booster = getattr(estimator, "booster_", None)
    if booster is not None and hasattr(booster, "num_trees"):  # LightGBM's sklearn wrapper
        return lambda X: booster.predict(X, num_threads=1)
    if hasattr(estimator, "get_booster"):  # XGBoost's sklearn wrapper
        xgb = estimator.get_booster()
        xgb.set_param({"nthread": 1})
        return lambda X: xgb.inplace_predict(X)
    return lambda X: loaded.predict(X)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", type=Path, help="model folders (default: the serving bench's trees)"
    )
    parser.add_argument(
        "--rows", type=int, default=1000, help="distinct rows timed (varied: branches mispredict)"
    )
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per measurement (5 rounds)")
    args = parser.parse_args(argv)
    folders = args.models or [f for f in DEFAULT_MODELS if f.is_dir()]
    if not folders:
        print("no model folders: run bench/serving/run.py once (it trains them), or name folders")
        return 2
    table: list[tuple[str, dict[str, tuple[float, float]]]] = []
    for folder in folders:
        meta = read_metadata(folder)
        name = f"{folder.parent.parent.name if folder.name == 'model' else folder.name} ({meta.algorithm}, {meta.task})"
        print(f"{name}: {folder}")
        rng = np.random.default_rng(20261204)
        X = rng.normal(size=(args.rows, len(meta.feature_columns))) * 1.5
        X[rng.random(X.shape) < 0.05] = np.nan
        rows = X.tolist()
        batches = [rows[i : i + 100] for i in range(0, len(rows), 100)]
        arrays = [X[i : i + 100] for i in range(0, len(X), 100)]
        results: dict[str, tuple[float, float]] = {}
        with tempfile.TemporaryDirectory(prefix="tree-walk-cost-") as tmp:
            built = libraries(folder, Path(tmp))
            if "walker" in built:
                gap = np.abs(
                    np.asarray(built["walker"].predict_rows(rows))
                    - np.asarray(built["tl2cgen"].predict_rows(rows))
                ).max()
                print(f"  walker vs tl2cgen on the {len(rows)} timed rows: max difference {gap:.3g}")
            for label, library in built.items():
                results[label] = (
                    best_us(library.predict_rows, batches, len(rows), args.seconds),
                    best_us(library.predict_rows, [[r] for r in rows], len(rows), args.seconds),
                )
            call = library_call(folder)
            results["library"] = (
                best_us(call, arrays, len(rows), args.seconds),
                best_us(call, [X[i : i + 1] for i in range(len(X))], len(rows), args.seconds),
            )
        table.append((name, results))
    print()
    print("CPU microseconds per row: 100-row batches | one-row calls (best of 5; ratios: x / walker)")
    print(
        f"{'model':<58} {'tl2cgen':>8} {'walker':>8} {'library':>8} {'tl2/walk':>9} {'lib/walk':>9}"
        f" | {'tl2cgen':>8} {'walker':>8} {'library':>8} {'tl2/walk':>9} {'lib/walk':>9}"
    )
    for name, results in table:
        cells = []
        for k in (0, 1):
            t, w, lib = (
                results.get(key, (math.nan, math.nan))[k] for key in ("tl2cgen", "walker", "library")
            )
            cells.append(f"{t:8.2f} {w:8.2f} {lib:8.2f} {t / w:8.2f}x {lib / w:8.2f}x")
        print(f"{name:<58} {cells[0]} | {cells[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
