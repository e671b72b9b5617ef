"""CPU cost of the live drift statistics per predicted row, independent of wrk and the HTTP path.

Runs the serving image's `LiveStats` (model_server/baseline.py) as the server does: `observe` once
per one-row batch (the hot path, on the event loop) and `drain` once per flush interval (the
metrics thread, which bins the interval's rows), on the benchmark's 20-feature rows and a baseline
made from them. CPU time (process_time), so another process on the machine slows it less than it
slows a throughput run. Prints microseconds per row for each part and their share of a one-row
request's CPU budget (`--request-us`, default 67.4 µs: 14,845 req/s, the quiet one-row figure of
bench/serving in the README).

    .venv/bin/python bench/serving/drift_stats_cost.py [--rows 200000] [--interval-rows 6000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "serving_image"))

from model_server.baseline import LiveStats, make_baseline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="one-row batches observed in all")
    parser.add_argument(
        "--interval-rows", type=int, default=6_000, help="rows per flush interval (drain every N)"
    )
    parser.add_argument("--request-us", type=float, default=67.4, help="a request's CPU budget (us)")
    parser.add_argument("--batch", type=int, default=1, help="rows per request (100: use --request-us 556)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20261204)
    train = rng.normal(size=(20_000, 20))
    baseline = make_baseline(
        features=train,
        feature_columns=[f"f{i}" for i in range(20)],
        categorical_columns=[],
        task="binary_classification",
        predictions=rng.uniform(size=2_000),
        classes=("0", "1"),
        n_holdout=2_000,
    )
    stats = LiveStats(baseline, task="binary_classification")
    flat_rows = rng.normal(size=(args.rows, 20)).tolist()  # lists of floats, as JSON gives them
    flat_answers = rng.uniform(size=args.rows).tolist()
    rows = [flat_rows[i : i + args.batch] for i in range(0, args.rows, args.batch)]
    answers = [flat_answers[i : i + args.batch] for i in range(0, args.rows, args.batch)]
    per_interval = max(1, args.interval_rows // args.batch)
    observe_s = drain_s = 0.0
    counted = 0
    for start in range(0, len(rows), per_interval):
        begin = time.process_time()
        for i in range(start, min(start + per_interval, len(rows))):
            stats.observe(rows[i], answers[i])
        middle = time.process_time()
        counted += stats.drain()[0]
        drain_s += time.process_time() - middle
        observe_s += middle - begin
    # per request: observe once; binning for the request's rows (when counted)
    observe_us = observe_s / len(rows) * 1e6
    drain_us = drain_s / counted * 1e6 * args.batch
    total = observe_us + drain_us
    print(
        f"{args.rows:,} rows in {args.batch}-row requests, drained every {per_interval * args.batch:,} rows "
        f"({counted:,} counted)"
    )
    budget = args.request_us
    print(
        f"hot path (observe):        {observe_us:7.2f} us/request = {observe_us / budget:6.1%} of {budget:g} us"
    )
    print(f"metrics thread (binning):  {drain_us:7.2f} us/request = {drain_us / budget:6.1%}")
    print(f"together:                  {total:7.2f} us/request = {total / budget:6.1%}")
    print(
        f"req/s ratio with statistics if all of it were on the server's core: {budget / (budget + total):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
