#!/usr/bin/env python3
"""How long the serving image's build takes to compile a tree ensemble, by size and gcc flags.

Trains a RandomForestClassifier (unbounded depth, scikit-learn's defaults) on the serving
benchmark's data (16,000 rows x 20 features of make_classification), then for the first N trees
(--trees) generates the C as the image build does (model_server.trees.generate: treelite + tl2cgen)
and compiles it with each of --flags on one core, printing trees, nodes, MB of C, seconds per
flag set and whether the build's budget (trees.MAX_SOURCE_BYTES) would compile it. This is the
measurement behind trees.TREES_CFLAGS and MAX_SOURCE_BYTES.

    .venv/bin/python bench/serving/compile_budget.py                      # 10, 25, 50, 100 trees at -O1
    .venv/bin/python bench/serving/compile_budget.py --trees 10,25 --flags=-O0,-O1,-O2
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "serving_image"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trees", default="10,25,50,100", help="forest sizes (first N of 100 trees)")
    parser.add_argument("--flags", default="-O1", help="comma-separated gcc optimisation flags")
    parser.add_argument("--cpu", type=int, default=0, help="the one core to run on (default 0)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    import joblib
    from model_server import native, trees
    from model_server.artifact import ModelMetadata
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    sizes = [int(n) for n in args.trees.split(",")]
    X, y = make_classification(
        n_samples=22_000, n_features=20, n_informative=10, n_redundant=4, random_state=20261201
    )
    started = time.monotonic()
    forest = RandomForestClassifier(n_estimators=max(sizes), random_state=0, n_jobs=1).fit(
        X[:16000], y[:16000]
    )
    print(f"fitted {max(sizes)} trees in {time.monotonic() - started:.1f}s; load {os.getloadavg()[0]:.2f}")
    cc = native.find_compiler()
    if cc is None:
        print("no C compiler")
        return 2
    flags = args.flags.split(",")
    print(f"| trees | nodes | C (MB) | {' | '.join(f'gcc {f} (s)' for f in flags)} | within budget |")
    print("|---:|---:|---:|" + "---:|" * len(flags) + "---|")
    for n in sizes:
        part = copy.copy(forest)
        part.estimators_ = forest.estimators_[:n]
        part.n_estimators = n
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            joblib.dump(part, folder / "model.joblib")
            meta = ModelMetadata(
                task="binary_classification",
                label_column="y",
                feature_columns=tuple(f"f{i}" for i in range(20)),
                classes=("0", "1"),
                objective_metric="auc",
                n_train=16000,
                n_validation=0,
                sklearn_version="",
                algorithm="random_forest",
            )
            src = folder / "c"
            src.mkdir()
            sources, _ = trees.generate(folder, meta, src)
            size = sum((src / s).stat().st_size for s in sources)
            seconds = []
            for flag in flags:
                started = time.monotonic()
                native.compile_library(
                    cc, src, sources, "t.so", cflags=(flag, *trees.TREES_CFLAGS[1:]), timeout=1800
                )
                seconds.append(time.monotonic() - started)
        nodes = sum(t.tree_.node_count for t in part.estimators_)
        within = "yes" if size <= trees.MAX_SOURCE_BYTES else "no: the library serves"
        cells = " | ".join(f"{s:.1f}" for s in seconds)
        print(f"| {n} | {nodes:,} | {size / 1e6:.1f} | {cells} | {within} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes on the core slow gcc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
