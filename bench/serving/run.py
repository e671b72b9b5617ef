#!/usr/bin/env python3
"""Side-by-side serving benchmark: the project's `serve`, MLServer and a FastAPI-naive baseline.

One run trains the reference model once with the project's own `train` program (scikit-learn
HistGradientBoostingClassifier, 100 iterations, on 20 float features from make_classification with
a fixed seed), then, for each round and each stack in turn (the order rotates per round):

1. starts the stack's one server process pinned to one core (`taskset -c 0`) on that very
   model.joblib and polls until the first successful prediction (the ready time);
2. sends the held-out set (rows the model never saw) in 100-row requests and compares the answers
   with the original model's predict_proba[:, 1] (max abs difference) and predicted class;
3. drives wrk from the other core (`taskset -c 1 wrk -t1 -c16 --latency`): a warm-up, then
   1-row requests, then a warm-up and 100-row requests; any non-2xx answer or socket error makes
   the stack's result unusable;
4. reads the peak RSS (VmHWM, summed over the server's process tree) and stops the stack.

Medians over the rounds go into a markdown table with the ratios of ours vs fastapi-naive and vs
mlserver and pass/fail against the issue's goals; everything measured goes to --out (JSON).

    .venv/bin/python bench/serving/run.py [--rounds 3] [--duration 10] [--connections 16]
                                          [--stacks ours,mlserver,fastapi-naive]

Needs: wrk and taskset on PATH, the project's .venv (ours) and bench/serving/.venv (the baselines,
from requirements.txt + constraints.txt); `make bench-serving` sets all of them up. Runs on Linux
only (taskset, /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LUA_SCRIPT = HERE / "wrk_report.lua"
DEFAULT_OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
DEFAULT_BASELINE_PYTHON = HERE / ".venv" / "bin" / "python"
DEFAULT_WORKDIR = HERE / ".work"
DEFAULT_OUT = HERE / "results.json"

STACKS = ("ours", "mlserver", "fastapi-naive")
# Ours with its live drift statistics off (SERVE_DRIFT_STATS=off): `--stacks ours,ours-nostats`
# measures what the statistics cost on the hot path (goal: one-row req/s at most 10% lower).
NOSTATS = "ours-nostats"
# Ours as another commit serves (`--before DIR`: that commit's serving_image/, e.g. from
# `git archive main serving_image | tar -x -C /tmp/before`): before/after in the same run.
BEFORE = "ours-before"
KNOWN_STACKS = (*STACKS, NOSTATS, BEFORE)
OURS_STACKS = ("ours", NOSTATS, BEFORE)
GOAL_STATS_COST = 0.9
BASELINE = "fastapi-naive"
N_FEATURES = 20
N_TRAIN_ROWS = 20_000  # the CSV given to `train` (it keeps 20% of it for its own validation)
N_HELDOUT_ROWS = 2_000  # never shown to `train`: the correctness set and the load bodies
BATCH_ROWS = 100
SINGLE_BODIES = 200  # distinct 1-row bodies wrk cycles through
DATA_SEED = 20261201
MLSERVER_MODEL = "bench"
# MLServer's runtime per model-file format; MLServer 1.7.1 has no ONNX runtime (bench/serving/README.md)
MLSERVER_RUNTIMES = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
}
MISSING_SHARE = 0.05  # of the cells, training and held-out alike: null in the request bodies
PROBA_TOLERANCE = 1e-6
FLOAT32_TOLERANCE = 1e-5  # XGBoost and onnxruntime compute in float32


@dataclass(frozen=True)
class ModelFormat:
    """One model of the benchmark: what `train` fits (algorithm, its defaults) and on how many classes;
    `onnx`: the trained Pipeline converted with skl2onnx and served as model.onnx."""

    algorithm: str
    classes: int = 2
    onnx: bool = False
    tree: bool = True  # tree ensembles have the issue's tree goals; the others the non-tree ones

    @property
    def tolerance(self) -> float:
        return FLOAT32_TOLERANCE if self.onnx or self.algorithm == "xgboost" else PROBA_TOLERANCE


FORMATS = {
    "hgb": ModelFormat("hist_gradient_boosting"),
    "rf": ModelFormat("random_forest"),
    "xgboost": ModelFormat("xgboost"),
    "lightgbm": ModelFormat("lightgbm"),
    "lightgbm-multiclass": ModelFormat("lightgbm", classes=3),
    "pipeline": ModelFormat("linear", tree=False),
    "onnx": ModelFormat("linear", onnx=True, tree=False),
}
NOISY_PCT = 5.0  # a measurement during which others took more of the server core is flagged

# The issue's goals, checked against the medians (correctness: the worst round).
GOAL_SINGLE_VS_BASELINE = 8.0
GOAL_SINGLE_VS_MLSERVER = 8.0
GOAL_SINGLE_P99_MS = 10.0
GOAL_BATCH_VS_BASELINE = 3.0
GOAL_READY_S = 2.0
# pipelines, linear models, ONNX graphs
GOAL_SINGLE_VS_BASELINE_OTHER = 5.0
GOAL_BATCH_VS_BASELINE_OTHER = 2.0


class BenchError(Exception):
    """A problem that stops the benchmark (missing tool, failed training)."""


class StackError(Exception):
    """A stack could not be measured in one round (did not start, answered wrongly, errors)."""


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# Pure parts (unit-tested in tests/unit/serving/test_bench_serving.py)
# --------------------------------------------------------------------------------------------

WRK_ERROR_FIELDS = ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout")


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The `WRK_JSON {...}` line that wrk_report.lua's done() prints; ValueError if there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("WRK_JSON "):
            doc = json.loads(line[len("WRK_JSON ") :])
            missing = [
                k for k in ("requests", "duration_us", "p50_us", "p99_us", *WRK_ERROR_FIELDS) if k not in doc
            ]
            if missing:
                raise ValueError(f"wrk report lacks {missing}: {line}")
            return dict(doc)
    raise ValueError("no WRK_JSON line in wrk's output (did wrk_report.lua's done() run?)")


def wrk_error_count(doc: Mapping[str, Any]) -> int:
    """Non-2xx (wrk counts status > 399) plus socket errors: connect, read, write, timeout."""
    return sum(int(doc[k]) for k in WRK_ERROR_FIELDS)


def summarize_load(doc: Mapping[str, Any], rows_per_request: int) -> dict[str, Any]:
    """req/s, rows/s and latency percentiles (ms) from a wrk report."""
    seconds = float(doc["duration_us"]) / 1e6
    if seconds <= 0:
        raise ValueError(f"wrk reported a duration of {doc['duration_us']} us")
    req_s = int(doc["requests"]) / seconds
    return {
        "requests": int(doc["requests"]),
        "seconds": seconds,
        "req_s": req_s,
        "rows_s": req_s * rows_per_request,
        "p50_ms": float(doc["p50_us"]) / 1000,
        "p90_ms": float(doc.get("p90_us", 0.0)) / 1000,
        "p99_ms": float(doc["p99_us"]) / 1000,
        "errors": wrk_error_count(doc),
    }


def _cell(value: float) -> float | None:
    return None if value != value else float(value)  # NaN: JSON's null


def instances_request(rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The body ours and fastapi-naive take: {"instances": [[20 numbers or null], ...]}."""
    return {"instances": [[_cell(v) for v in row] for row in rows]}


Probabilities = list[list[float]]  # per row, the class probabilities in the order of the classes


def parse_instances_response(doc: Mapping[str, Any]) -> tuple[Probabilities, list[int] | None]:
    """(class probabilities per row, class index per row or None). Our server answers with
    `probabilities` and its labels by name in `predictions` (their index in `classes` is the
    class); the FastAPI baseline answers `probabilities` only."""
    proba = [[float(p) for p in row] for row in doc["probabilities"]]
    if "classes" in doc:
        classes = list(doc["classes"])
        return proba, [classes.index(p) for p in doc["predictions"]]
    return proba, None


def v2_request(
    rows: Sequence[Sequence[float]], outputs: Sequence[str] = ("predict_proba",)
) -> dict[str, Any]:
    """An Open Inference Protocol (V2) request for MLServer: one FP64 tensor of shape
    [rows, features], row-major data (null for missing: MLServer's JSON parser refuses NaN, and
    its numpy codec turns null into NaN for an FP64 tensor), asking for the named outputs (mlserver-sklearn and mlserver-xgboost run the
    estimator method of that name: predict_proba, predict)."""
    n_features = len(rows[0]) if rows else 0
    if any(len(row) != n_features for row in rows):
        raise ValueError("every row needs the same number of features")
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), n_features],
                "datatype": "FP64",
                "data": [_cell(v) for row in rows for v in row],
            }
        ],
        "outputs": [{"name": name} for name in outputs],
    }


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _flatten(item)]
    return [data]


def _matrix(output: Mapping[str, Any]) -> Probabilities:
    shape = [int(s) for s in output["shape"]]
    data = [float(v) for v in _flatten(output["data"])]
    if len(shape) != 2 or shape[1] < 2 or len(data) != shape[0] * shape[1]:
        raise ValueError(
            f"{output['name']} output has shape {shape} and {len(data)} values; expected [rows, classes]"
        )
    width = shape[1]
    return [data[i : i + width] for i in range(0, len(data), width)]


def parse_v2_response(doc: Mapping[str, Any]) -> tuple[Probabilities, list[int] | None]:
    """(class probabilities per row, predicted class per row or None) from a V2 response whose
    outputs include predict_proba (shape [rows, classes]) and maybe predict (shape [rows])."""
    outputs = {out["name"]: out for out in doc["outputs"]}
    if "predict_proba" not in outputs:
        raise ValueError(f"V2 response has no predict_proba output (outputs: {sorted(outputs)})")
    proba = _matrix(outputs["predict_proba"])
    classes = None
    if "predict" in outputs:
        classes = [int(c) for c in _flatten(outputs["predict"]["data"])]
    return proba, classes


def parse_v2_predict_response(doc: Mapping[str, Any]) -> tuple[Probabilities, list[int] | None]:
    """(class probabilities per row, None) from MLServer's LightGBM runtime, whose one output
    `predict` is the Booster's prediction: P(class 1) per row for a binary model (shape [rows]),
    the class probabilities for a multiclass one (shape [rows, classes])."""
    outputs = {out["name"]: out for out in doc["outputs"]}
    if "predict" not in outputs:
        raise ValueError(f"V2 response has no predict output (outputs: {sorted(outputs)})")
    output = outputs["predict"]
    if len(output["shape"]) == 2 and int(output["shape"][1]) > 1:
        return _matrix(output), None
    return [[1.0 - float(v), float(v)] for v in _flatten(output["data"])], None


def _argmax(row: Sequence[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)  # the first of equal maxima, as numpy's


def compare_predictions(
    expected_proba: Sequence[Sequence[float]],
    expected_class: Sequence[int],
    got_proba: Sequence[Sequence[float]],
    got_class: Sequence[int] | None,
    tolerance: float = PROBA_TOLERANCE,
) -> dict[str, Any]:
    """max abs difference over every class probability and the number of rows whose class differs
    from predict's. Without a class output the class is the one predict() picks: the most probable
    (binary: class 1 when P(class 1) > 0.5)."""
    if len(got_proba) != len(expected_proba):
        raise ValueError(f"{len(got_proba)} predictions for {len(expected_proba)} rows")
    if any(len(a) != len(b) for a, b in zip(expected_proba, got_proba, strict=True)):
        raise ValueError("the answers have another number of classes than the model")
    classes = list(got_class) if got_class is not None else [_argmax(row) for row in got_proba]
    max_diff = max(
        (
            abs(a - b)
            for x, y in zip(expected_proba, got_proba, strict=True)
            for a, b in zip(x, y, strict=True)
        ),
        default=0.0,
    )
    mismatches = sum(1 for a, b in zip(expected_class, classes, strict=True) if int(a) != int(b))
    return {
        "rows": len(expected_proba),
        "max_abs_diff": max_diff,
        "class_mismatches": mismatches,
        "class_source": "predict output" if got_class is not None else "most probable class",
        "tolerance": tolerance,
        "ok": max_diff <= tolerance and mismatches == 0,
    }


def median_results(rounds: Sequence[Mapping[str, Any]], stacks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per stack, the median of each metric over its rounds; a stack with any failed round gets
    {"error": ...} instead (its numbers are not reported)."""
    medians: dict[str, dict[str, Any]] = {}
    for stack in stacks:
        mine = [r for r in rounds if r["stack"] == stack]
        failed = [r for r in mine if r.get("error")]
        if not mine:
            medians[stack] = {"error": "not measured"}
            continue
        if failed:
            medians[stack] = {"error": f"round {failed[0]['round']}: {failed[0]['error']}"}
            continue
        medians[stack] = {
            "rounds": len(mine),
            "ready_s": statistics.median(r["ready_s"] for r in mine),
            "single_req_s": statistics.median(r["single"]["req_s"] for r in mine),
            "single_p50_ms": statistics.median(r["single"]["p50_ms"] for r in mine),
            "single_p99_ms": statistics.median(r["single"]["p99_ms"] for r in mine),
            "batch_rows_s": statistics.median(r["batch"]["rows_s"] for r in mine),
            "batch_p50_ms": statistics.median(r["batch"]["p50_ms"] for r in mine),
            "batch_p99_ms": statistics.median(r["batch"]["p99_ms"] for r in mine),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in mine),
            # correctness: the worst round
            "max_abs_diff": max(r["correctness"]["max_abs_diff"] for r in mine),
            "class_mismatches": max(r["correctness"]["class_mismatches"] for r in mine),
            # what the server's own CPU time bought: comparable between stacks even on a busy
            # machine, where req/s depends on how much of the core the others left
            **_per_cpu_medians(mine),
            # the noisiest measurement: share of the server core that other processes took
            "noise_pct": max(
                float(r[kind].get(core, 0.0))
                for r in mine
                for kind in ("single", "batch")
                for core in ("server_core_other_pct", "load_core_other_pct")
            ),
        }
    return medians


def _per_cpu_medians(rounds: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Requests (1-row) and rows (100-row) per second of the server's own CPU time, medians."""
    out: dict[str, float] = {}
    for kind, key, metric in (
        ("single", "req_s", "single_req_per_cpu_s"),
        ("batch", "rows_s", "batch_rows_per_cpu_s"),
    ):
        values = [
            r[kind][key] * r[kind]["seconds"] / r[kind]["server_cpu_s"]
            for r in rounds
            if r[kind].get("server_cpu_s") and r[kind].get("seconds")
        ]
        if len(values) == len(rounds):
            out[metric] = statistics.median(values)
    return out


RATIO_METRICS = (
    ("single_req_s", "1-row req/s"),
    ("single_req_per_cpu_s", "1-row requests per server CPU-second"),
    ("batch_rows_per_cpu_s", "100-row rows per server CPU-second"),
    ("single_p99_ms", "1-row p99 latency"),
    ("batch_rows_s", "100-row rows/s"),
    ("batch_p99_ms", "100-row p99 latency"),
    ("peak_rss_mib", "peak RSS"),
    ("ready_s", "ready time"),
)


def compute_ratios(
    medians: Mapping[str, Mapping[str, Any]], ours: str = "ours"
) -> dict[str, dict[str, float]]:
    """ours' median / the other stack's median, per metric, for each other stack with numbers
    (ratio of medians; > 1 is better for throughput, < 1 is better for latency, RSS, ready)."""
    mine = medians.get(ours, {})
    ratios: dict[str, dict[str, float]] = {}
    if "error" in mine or not mine:
        return ratios
    for other, theirs in medians.items():
        if other == ours or "error" in theirs:
            continue
        ratios[other] = {
            metric: mine[metric] / theirs[metric] for metric, _ in RATIO_METRICS if theirs.get(metric)
        }
    return ratios


@dataclass(frozen=True)
class GoalResult:
    goal: str
    measured: str
    target: str
    passed: bool | None  # None: could not be judged (a stack was not measured)


def evaluate_goals(
    medians: Mapping[str, Mapping[str, Any]],
    ratios: Mapping[str, Mapping[str, float]],
    connections: int,
    model: ModelFormat = FORMATS["hgb"],
) -> list[GoalResult]:
    """The issue's acceptance goals for ours: a tree ensemble's (8x, 8x MLServer, p99, 3x batches)
    or another format's (5x, 2x batches); answers within the format's tolerance."""
    ours = medians.get("ours", {"error": "not measured"})
    have_ours = "error" not in ours
    single_goal = GOAL_SINGLE_VS_BASELINE if model.tree else GOAL_SINGLE_VS_BASELINE_OTHER
    batch_goal = GOAL_BATCH_VS_BASELINE if model.tree else GOAL_BATCH_VS_BASELINE_OTHER

    def ratio_goal(other: str, metric: str, label: str, minimum: float) -> GoalResult:
        value = ratios.get(other, {}).get(metric)
        if value is None:
            return GoalResult(f"{label} vs {other}", "n/a", f">= {minimum:g}x", None)
        return GoalResult(f"{label} vs {other}", f"{value:.2f}x", f">= {minimum:g}x", value >= minimum)

    goals = [ratio_goal(BASELINE, "single_req_s", "1-row req/s", single_goal)]
    if model.tree:
        goals.append(ratio_goal("mlserver", "single_req_s", "1-row req/s", GOAL_SINGLE_VS_MLSERVER))
    if model.tree and have_ours:
        p99 = ours["single_p99_ms"]
        goals.append(
            GoalResult(
                f"1-row p99 at {connections} connections",
                f"{p99:.2f} ms",
                f"< {GOAL_SINGLE_P99_MS:g} ms",
                p99 < GOAL_SINGLE_P99_MS,
            )
        )
    elif model.tree:
        goals.append(
            GoalResult(f"1-row p99 at {connections} connections", "n/a", f"< {GOAL_SINGLE_P99_MS:g} ms", None)
        )
    goals.append(ratio_goal(BASELINE, "batch_rows_s", "100-row rows/s", batch_goal))
    if NOSTATS in medians:  # the drift statistics' cost: ours (on) against ours with them off
        goals.append(ratio_goal(NOSTATS, "single_req_s", "drift statistics on: 1-row req/s", GOAL_STATS_COST))
    if have_ours:
        diff, mismatches = ours["max_abs_diff"], ours["class_mismatches"]
        goals.append(
            GoalResult(
                "predictions = original model (held-out set)",
                f"max abs diff {diff:.1e}, {mismatches} class mismatches",
                f"<= {model.tolerance:g}, 0 mismatches",
                diff <= model.tolerance and mismatches == 0,
            )
        )
    else:
        goals.append(GoalResult("predictions = original model (held-out set)", "n/a", "", None))
    rss_other = medians.get("mlserver", {}).get("peak_rss_mib")
    if have_ours and rss_other:
        goals.append(
            GoalResult(
                "peak RSS vs mlserver",
                f"{ours['peak_rss_mib']:.0f} vs {rss_other:.0f} MiB",
                "<= mlserver's",
                ours["peak_rss_mib"] <= rss_other,
            )
        )
    else:
        goals.append(GoalResult("peak RSS vs mlserver", "n/a", "<= mlserver's", None))
    if have_ours:
        goals.append(
            GoalResult(
                "ready (first successful prediction)",
                f"{ours['ready_s']:.2f} s",
                f"< {GOAL_READY_S:g} s",
                ours["ready_s"] < GOAL_READY_S,
            )
        )
    else:
        goals.append(GoalResult("ready (first successful prediction)", "n/a", f"< {GOAL_READY_S:g} s", None))
    return goals


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def render_tables(
    medians: Mapping[str, Mapping[str, Any]],
    ratios: Mapping[str, Mapping[str, float]],
    goals: Sequence[GoalResult],
    *,
    rounds: int,
    connections: int,
) -> str:
    """The markdown the run prints: medians per stack, ratios of ours, the goals."""
    lines = [
        f"Medians of {rounds} round(s); {connections} connections; one server process on one core, "
        "wrk on the other. noise: the largest share of either core that other processes took "
        "during a measurement (0 on a quiet machine).",
        "",
        "| stack | ready (s) | 1-row req/s | 1-row p50 / p99 (ms) | 100-row rows/s | "
        "100-row p50 / p99 (ms) | peak RSS (MiB) | max abs diff | class mismatches | noise (max %) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stack, m in medians.items():
        if "error" in m:
            reason = (str(m["error"]).splitlines() or [""])[0].replace("|", "/")
            lines.append(f"| {stack} | not reported: {reason} | | | | | | | | |")
            continue
        lines.append(
            f"| {stack} | {m['ready_s']:.2f} | {_fmt(m['single_req_s'])} | "
            f"{m['single_p50_ms']:.2f} / {m['single_p99_ms']:.2f} | {_fmt(m['batch_rows_s'])} | "
            f"{m['batch_p50_ms']:.2f} / {m['batch_p99_ms']:.2f} | {m['peak_rss_mib']:.0f} | "
            f"{m['max_abs_diff']:.1e} | {m['class_mismatches']} | {m.get('noise_pct', 0.0):.0f} |"
        )
    if ratios:
        others = list(ratios)
        lines += [
            "",
            "| ours / other (ratio of medians) | " + " | ".join(f"vs {o}" for o in others) + " |",
            "|---|" + "---:|" * len(others),
        ]
        for metric, label in RATIO_METRICS:
            cells = [f"{ratios[o][metric]:.2f}x" if metric in ratios[o] else "n/a" for o in others]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| goal (issue) | measured | target | result |", "|---|---|---|---|"]
    for g in goals:
        result = "n/a" if g.passed is None else ("PASS" if g.passed else "FAIL")
        lines.append(f"| {g.goal} | {g.measured} | {g.target} | {result} |")
    return "\n".join(lines)


def round_order(stacks: Sequence[str], round_index: int) -> list[str]:
    """The stacks in the order of one round: rotated by one per round, so none always goes first."""
    if not stacks:
        return []
    shift = round_index % len(stacks)
    return [*stacks[shift:], *stacks[:shift]]


def parse_ppid(stat: str) -> int:
    """The parent pid from /proc/<pid>/stat (the command name may hold spaces and parentheses)."""
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def parse_vm_hwm_kib(status: str) -> int:
    """VmHWM (peak resident set size, KiB) from /proc/<pid>/status; 0 if absent (a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def parse_cpu_ticks(proc_stat: str, cpu: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one core from /proc/stat; busy counts steal (the hypervisor's)."""
    for line in proc_stat.splitlines():
        name, *values = line.split()
        if name == f"cpu{cpu}":
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise ValueError(f"no cpu{cpu} line in /proc/stat")


def parse_process_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def interference(core_before: tuple[int, int], core_after: tuple[int, int], server_ticks: int) -> float:
    """The share of the server core's time spent on anything but the server (other processes,
    interrupts, the hypervisor's steal) over a measurement: 0 on a quiet machine."""
    busy = core_after[0] - core_before[0]
    total = core_after[1] - core_before[1]
    if total <= 0:
        return 0.0
    return max(0.0, min(1.0, (busy - server_ticks) / total))


# --------------------------------------------------------------------------------------------
# The model and the data
# --------------------------------------------------------------------------------------------


@dataclass
class Reference:
    name: str  # the FORMATS key
    model: ModelFormat
    model_dir: Path
    model_file: Path
    format: str  # metadata.json's: sklearn (joblib), xgboost (model.json), lightgbm (model.txt), onnx
    heldout: list[list[float]]  # NaN for missing
    expected_proba: Probabilities
    expected_class: list[int]
    sklearn_version: str
    numpy_version: str
    build_log: str = ""

    @property
    def algorithm(self) -> str:
        return self.model.algorithm


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(N_FEATURES)]


def make_data(classes: int) -> tuple[Any, Any]:
    """(X, y): make_classification's rows with MISSING_SHARE of the cells NaN, fixed seeds."""
    import numpy as np
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=N_TRAIN_ROWS + N_HELDOUT_ROWS,
        n_features=N_FEATURES,
        n_informative=10,
        n_redundant=4,
        n_classes=classes,
        random_state=DATA_SEED,
    )
    X[np.random.default_rng(DATA_SEED).random(X.shape) < MISSING_SHARE] = np.nan
    return X, y


def train_reference(workdir: Path, ours_python: Path, name: str = "hgb") -> Reference:
    """Generate the data, train with the project's `train` program (the format's algorithm, its
    defaults), build what the image build builds, and score the held-out set with the model file
    loaded here by its own library (the 'original model'). ONNX: the trained Pipeline converted
    with skl2onnx, scored by onnxruntime."""
    import numpy as np
    import sklearn

    model = FORMATS[name]
    base = workdir / name / "ml"
    if base.exists():
        shutil.rmtree(base)
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "data" / "train").mkdir(parents=True)
    X, y = make_data(model.classes)
    names = feature_names()
    csv_path = base / "input" / "data" / "train" / "train.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write(",".join([*names, "label"]) + "\n")
        for row, label in zip(X[:N_TRAIN_ROWS], y[:N_TRAIN_ROWS], strict=True):
            out.write(",".join("" if v != v else repr(float(v)) for v in row) + f",{int(label)}\n")
    hyperparameters = {
        "label_column": "label",
        "feature_columns": json.dumps(names),
        "seed": "0",
        "algorithm": model.algorithm,
    }
    if model.classes > 2:
        hyperparameters["task"] = "multiclass_classification"
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
    log(
        f"==> {name}: training with serving_image/bin/train ({N_TRAIN_ROWS} rows x {N_FEATURES} features, "
        f"{MISSING_SHARE:.0%} of the cells missing, {model.classes} classes, {model.algorithm} with its defaults)"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [str(ours_python), str(ROOT / "serving_image" / "bin" / "train")],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"train exited {proc.returncode}:\n{_tail(proc.stderr)}")
    metrics = " ".join(line for line in proc.stdout.splitlines() if line.startswith("validation:"))
    log(f"    trained in {time.monotonic() - started:.1f}s: {metrics}")
    model_dir = base / "model"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    if [str(c) for c in metadata.get("classes") or []] != [str(c) for c in range(model.classes)]:
        raise BenchError(f"train's classes {metadata.get('classes')} are not 0..{model.classes - 1}")
    if model.onnx:
        _to_onnx(model_dir, ours_python)
        metadata = json.loads((model_dir / "metadata.json").read_text())
    # What the image build does next (the Dockerfile's model stage): the native predictor
    started = time.monotonic()
    proc = subprocess.run(
        [str(ours_python), "-m", "model_server.native", "build", str(model_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "serving_image")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"native build exited {proc.returncode}:\n{_tail(proc.stderr)}")
    build_log = proc.stdout.strip()
    log(f"    image build step ({time.monotonic() - started:.1f}s): {build_log}")
    model_file = model_dir / metadata["model_file"]
    fmt = metadata.get("format", "sklearn")
    heldout = np.ascontiguousarray(X[N_TRAIN_ROWS:], dtype=np.float64)
    library = _load_library_model(model_file, fmt)
    proba = np.asarray(library.predict_proba(heldout), dtype=np.float64)
    return Reference(
        name=name,
        model=model,
        model_dir=model_dir,
        model_file=model_file,
        format=fmt,
        heldout=heldout.tolist(),
        expected_proba=proba.tolist(),
        expected_class=[int(c) for c in library.predict(heldout)],
        sklearn_version=sklearn.__version__,
        numpy_version=np.__version__,
        build_log=build_log,
    )


_ONNX_CONVERT = """
import json, sys
from pathlib import Path
import joblib
from skl2onnx import to_onnx
from model_server.artifact import load_model
from model_server.checkrows import write_check
import numpy as np

folder = Path(sys.argv[1])
meta = json.loads((folder / "metadata.json").read_text())
pipeline = joblib.load(folder / meta["model_file"])
sample = np.zeros((1, len(meta["feature_columns"])), dtype=np.float32)
onx = to_onnx(pipeline, sample, options={"zipmap": False}, target_opset=17)
(folder / "model.onnx").write_bytes(onx.SerializeToString())
(folder / meta["model_file"]).unlink()
for name in (meta.get("forest_file"), "forest.json"):
    if name and (folder / name).exists():
        (folder / name).unlink()
meta.update(format="onnx", model_file="model.onnx", forest_file=None, forest_max_abs_diff=None)
(folder / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\\n")
check = json.loads((folder / "check.json").read_text())
rows = np.asarray([[np.nan if v is None else v for v in row] for row in check["rows"]], dtype=np.float64)
write_check(folder, load_model(folder), rows)
"""


def _to_onnx(model_dir: Path, ours_python: Path) -> None:
    """Replace the folder's scikit-learn Pipeline by its skl2onnx conversion (model.onnx, float
    inputs, tensor probabilities), with check.json's answers from onnxruntime: an ONNX model as a
    team's script would save it (the model-artifact contract)."""
    proc = subprocess.run(
        [str(ours_python), "-c", _ONNX_CONVERT, str(model_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "serving_image")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"skl2onnx conversion failed:\n{_tail(proc.stderr)}")


def _load_library_model(model_file: Path, fmt: str) -> Any:
    """The model file loaded by its own library, with scikit-learn's predict_proba / predict."""
    import numpy as np

    if fmt == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_jobs=1)
        model.load_model(str(model_file))
        return model
    if fmt == "lightgbm":
        import lightgbm

        booster = lightgbm.Booster(model_file=str(model_file))

        class _Booster:  # the Booster's answer, as LGBMClassifier.predict_proba gives it
            def predict_proba(self, rows: Any) -> Any:
                p = booster.predict(rows, num_threads=1)
                return p if p.ndim == 2 else np.column_stack([1.0 - p, p])

            def predict(self, rows: Any) -> Any:
                return np.argmax(self.predict_proba(rows), axis=1)

        return _Booster()
    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name

        class _Onnx:  # onnxruntime's outputs: label, probabilities (skl2onnx with zipmap off)
            def predict_proba(self, rows: Any) -> Any:
                return np.asarray(
                    session.run(None, {feed: np.asarray(rows, dtype=np.float32)})[1], dtype=np.float64
                )

            def predict(self, rows: Any) -> Any:
                return np.asarray(session.run(None, {feed: np.asarray(rows, dtype=np.float32)})[0])

        return _Onnx()
    import joblib

    return joblib.load(model_file)


# --------------------------------------------------------------------------------------------
# Stacks
# --------------------------------------------------------------------------------------------


@dataclass
class StackSpec:
    name: str
    python: Path
    path: str  # the prediction endpoint
    encode: Callable[[Sequence[Sequence[float]]], dict[str, Any]]  # body for the load
    encode_check: Callable[[Sequence[Sequence[float]]], dict[str, Any]]  # body for correctness
    decode: Callable[[Mapping[str, Any]], tuple[Probabilities, list[int] | None]]
    command: Callable[
        [int, Path], tuple[list[str], dict[str, str], Path]
    ]  # (port, workdir) -> argv, env, cwd
    notes: str = ""


def _ours_command(
    python: Path,
    reference: Reference,
    *,
    drift_stats: bool = True,
    serving_image: Path = ROOT / "serving_image",
) -> Callable[[int, Path], tuple[list[str], dict[str, str], Path]]:
    def command(port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
        env = {
            "SAGEMAKER_BASE_DIR": str(reference.model_dir.parent),
            "SERVE_HOST": "127.0.0.1",
            "PORT": str(port),
            "MODELOPS_MODEL": "bench",
            "MODELOPS_VARIANT": "bench",
            "SERVE_DRIFT_STATS": "on" if drift_stats else "off",
        }
        return [str(python), str(serving_image / "bin" / "serve")], env, ROOT

    return command


def _mlserver_command(
    python: Path, reference: Reference
) -> Callable[[int, Path], tuple[list[str], dict[str, str], Path]]:
    def command(port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
        folder = workdir / "mlserver"
        folder.mkdir(parents=True, exist_ok=True)
        grpc_port, metrics_port = free_port(), free_port()
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "parallel_workers": 0,  # inference in the server process itself: one process, one core
            "debug": False,  # MLServer's default (True) logs every request
        }
        model_settings = {
            "name": MLSERVER_MODEL,
            "implementation": MLSERVER_RUNTIMES[reference.format],
            "parameters": {"uri": str(reference.model_file), "version": "v1"},
        }
        (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
        return [str(python), "-m", "mlserver.cli.main", "start", str(folder)], {}, folder

    return command


def _fastapi_command(
    python: Path, reference: Reference
) -> Callable[[int, Path], tuple[list[str], dict[str, str], Path]]:
    def command(port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
        argv = [
            str(python),
            "-m",
            "uvicorn",
            "baselines.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return argv, {"MODEL_PATH": str(reference.model_file), "MODEL_FORMAT": reference.format}, HERE

    return command


def build_specs(
    ours_python: Path, baseline_python: Path, reference: Reference, before: Path | None = None
) -> dict[str, StackSpec]:
    booster = reference.format == "lightgbm"  # MLServer's LightGBM runtime answers `predict` only
    return {
        BEFORE: StackSpec(
            name=BEFORE,
            python=ours_python,
            path="/invocations",
            encode=instances_request,
            encode_check=instances_request,
            decode=parse_instances_response,
            command=_ours_command(ours_python, reference, serving_image=before or ROOT / "serving_image"),
            notes=f"python {before}/bin/serve (another commit's server, same model folder)",
        ),
        "ours": StackSpec(
            name="ours",
            python=ours_python,
            path="/invocations",
            encode=instances_request,
            encode_check=instances_request,
            decode=parse_instances_response,
            command=_ours_command(ours_python, reference),
            notes="python serving_image/bin/serve (live drift statistics on)",
        ),
        NOSTATS: StackSpec(
            name=NOSTATS,
            python=ours_python,
            path="/invocations",
            encode=instances_request,
            encode_check=instances_request,
            decode=parse_instances_response,
            command=_ours_command(ours_python, reference, drift_stats=False),
            notes="python serving_image/bin/serve, SERVE_DRIFT_STATS=off",
        ),
        "mlserver": StackSpec(
            name="mlserver",
            python=baseline_python,
            path=f"/v2/models/{MLSERVER_MODEL}/infer",
            encode=lambda rows: v2_request(rows, ("predict",) if booster else ("predict_proba",)),
            encode_check=lambda rows: v2_request(
                rows, ("predict",) if booster else ("predict", "predict_proba")
            ),
            decode=parse_v2_predict_response if booster else parse_v2_response,
            command=_mlserver_command(baseline_python, reference),
            notes=f"mlserver start, {MLSERVER_RUNTIMES.get(reference.format)}, parallel_workers=0, debug=false",
        ),
        "fastapi-naive": StackSpec(
            name="fastapi-naive",
            python=baseline_python,
            path="/invocations",
            encode=instances_request,
            encode_check=instances_request,
            decode=parse_instances_response,
            command=_fastapi_command(baseline_python, reference),
            notes="uvicorn baselines.fastapi_app:app, one worker, --no-access-log",
        ),
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ticks(cpu: int) -> tuple[int, int]:
    return parse_cpu_ticks(Path("/proc/stat").read_text(), cpu)


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines()[-lines:])


def post_json(port: int, path: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def process_tree(root_pid: int) -> list[int]:
    """root_pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = parse_ppid(Path(f"/proc/{entry}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class RssWatcher:
    """Samples VmHWM of every process in a server's tree; keeps each pid's peak (a child that
    exits keeps the peak it reached). The sum over the tree is the stack's peak RSS."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        for pid in process_tree(self.pid):
            try:
                kib = parse_vm_hwm_kib(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), kib)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> float:
        """Stop sampling; the peak RSS in MiB (summed over the tree's processes)."""
        self._stop.set()
        self._thread.join()
        self.sample()
        return sum(self.peaks.values()) / 1024


class RunningStack:
    def __init__(self, spec: StackSpec, workdir: Path, server_cpu: int, label: str) -> None:
        self.spec = spec
        self.port = free_port()
        argv, extra_env, cwd = spec.command(self.port, workdir)
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logs / f"{label}.stdout"
        self.stderr_path = logs / f"{label}.stderr"
        # One thread for OpenMP/BLAS in every stack: one core each, and the same setting for all.
        env = {**os.environ, "OMP_NUM_THREADS": "1", **extra_env}
        env.pop("PYTHONPATH", None)
        self.argv = ["taskset", "-c", str(server_cpu), *argv]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the whole tree
            )
        self.rss = RssWatcher(self.proc.pid)
        self.rss.start()

    def cpu_ticks(self) -> int:
        """CPU time (clock ticks) of the server's live process tree."""
        total = 0
        for pid in process_tree(self.proc.pid):
            try:
                total += parse_process_ticks(Path(f"/proc/{pid}/stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
        return total

    def stderr_tail(self) -> str:
        try:
            return _tail(self.stderr_path.read_text(errors="replace"))
        except OSError:
            return "    | (no stderr)"

    def wait_ready(self, probe_body: bytes, timeout: float) -> float:
        """Seconds from spawn to the first 200 answer to a prediction request."""
        deadline = self.started + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(
                    f"{self.spec.name} exited with code {self.proc.returncode} before it was ready "
                    f"(last probe: {last}); stderr ({self.stderr_path}):\n{self.stderr_tail()}"
                )
            try:
                status, body = post_json(self.port, self.spec.path, probe_body, timeout=5.0)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    ready = time.monotonic() - self.started
                    self.spec.decode(json.loads(body))
                    return ready
                last = f"HTTP {status}: {body[:200]!r}"
            time.sleep(0.01)
        raise StackError(
            f"{self.spec.name} was not ready after {timeout:.0f}s (last probe: {last}); "
            f"stderr ({self.stderr_path}):\n{self.stderr_tail()}"
        )

    def stop(self) -> float:
        """Stop the process group; the peak RSS (MiB) measured up to now."""
        peak = self.rss.stop()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        # anything left in the group (a worker that outlived its parent)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return peak


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def check_correctness(stack: RunningStack, reference: Reference) -> dict[str, Any]:
    got_proba: Probabilities = []
    got_class: list[int] | None = []
    for start in range(0, len(reference.heldout), BATCH_ROWS):
        rows = reference.heldout[start : start + BATCH_ROWS]
        body = json.dumps(stack.spec.encode_check(rows)).encode()
        status, answer = post_json(stack.port, stack.spec.path, body)
        if status != 200:
            raise StackError(f"{stack.spec.name}: HTTP {status} on a held-out batch: {answer[:300]!r}")
        proba, classes = stack.spec.decode(json.loads(answer))
        got_proba += proba
        if classes is None or got_class is None:
            got_class = None
        else:
            got_class += classes
    return compare_predictions(
        reference.expected_proba, reference.expected_class, got_proba, got_class, reference.model.tolerance
    )


def write_bodies(path: Path, bodies: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for body in bodies:
            out.write(json.dumps(body, separators=(",", ":")) + "\n")
    return path


def load_bodies(spec: StackSpec, reference: Reference, workdir: Path) -> dict[str, Path]:
    """The request bodies wrk cycles through: 1-row and 100-row, from the held-out rows."""
    folder = workdir / reference.name / "bodies"
    folder.mkdir(parents=True, exist_ok=True)
    rows = reference.heldout
    single = [spec.encode([rows[i]]) for i in range(SINGLE_BODIES)]
    batch = [spec.encode(rows[i : i + BATCH_ROWS]) for i in range(0, len(rows), BATCH_ROWS)]
    return {
        "single": write_bodies(folder / f"{spec.name}-single.jsonl", single),
        "batch": write_bodies(folder / f"{spec.name}-batch.jsonl", batch),
    }


def run_wrk(
    port: int, path: str, bodies: Path, *, seconds: float, connections: int, load_cpu: int
) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        str(load_cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "2s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}{path}",
        "--",
        str(bodies),
        "application/json",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    if proc.returncode != 0:
        raise StackError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    try:
        return parse_wrk_output(proc.stdout)
    except ValueError as exc:
        raise StackError(
            f"{exc}\nwrk stdout:\n{_tail(proc.stdout)}\nwrk stderr:\n{_tail(proc.stderr)}"
        ) from None


def check_body(stack: RunningStack, bodies: Path, rows: int) -> None:
    """One request of each kind answered 200 with `rows` predictions before the load starts."""
    first = bodies.read_text().splitlines()[0].encode()
    status, answer = post_json(stack.port, stack.spec.path, first)
    if status != 200:
        raise StackError(f"{stack.spec.name}: HTTP {status} on the load body: {answer[:300]!r}")
    proba, _ = stack.spec.decode(json.loads(answer))
    if len(proba) != rows:
        raise StackError(f"{stack.spec.name}: {len(proba)} predictions for a {rows}-row body")


def measure_load(
    stack: RunningStack, bodies: Path, rows: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    check_body(stack, bodies, rows)
    if args.warmup > 0:
        warm = run_wrk(
            stack.port,
            stack.spec.path,
            bodies,
            seconds=args.warmup,
            connections=args.connections,
            load_cpu=args.load_cpu,
        )
        if wrk_error_count(warm):
            raise StackError(f"{label} warm-up: {_error_text(warm)}")
    core_before, server_before = cpu_ticks(args.server_cpu), stack.cpu_ticks()
    load_before = cpu_ticks(args.load_cpu)
    # wrk is this script's only child that ends during the measurement: RUSAGE_CHILDREN is its CPU
    children_before, self_before = _cpu_seconds(resource.RUSAGE_CHILDREN), _cpu_seconds(resource.RUSAGE_SELF)
    doc = run_wrk(
        stack.port,
        stack.spec.path,
        bodies,
        seconds=args.duration,
        connections=args.connections,
        load_cpu=args.load_cpu,
    )
    server_ticks = stack.cpu_ticks() - server_before
    load_ticks = round(
        CLOCK_TICKS
        * (
            _cpu_seconds(resource.RUSAGE_CHILDREN)
            - children_before
            + _cpu_seconds(resource.RUSAGE_SELF)
            - self_before
        )
    )
    result = summarize_load(doc, rows)
    result["server_core_other_pct"] = 100 * interference(
        core_before, cpu_ticks(args.server_cpu), server_ticks
    )
    result["load_core_other_pct"] = 100 * interference(load_before, cpu_ticks(args.load_cpu), load_ticks)
    result["server_cpu_s"] = server_ticks / CLOCK_TICKS
    result["load_cpu_s"] = load_ticks / CLOCK_TICKS
    result["wrk"] = doc
    if result["errors"]:
        raise StackError(f"{label}: {_error_text(doc)} in {doc['requests']} requests; not reported")
    return result


def _error_text(doc: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('errors_')} {doc[k]}" for k in WRK_ERROR_FIELDS if doc[k]) + " errors"


def measure_stack(
    spec: StackSpec, reference: Reference, args: argparse.Namespace, round_no: int, bodies: dict[str, Path]
) -> dict[str, Any]:
    label = f"round{round_no}-{reference.name}-{spec.name}"
    result: dict[str, Any] = {"round": round_no, "stack": spec.name}
    probe = json.dumps(spec.encode([reference.heldout[0]])).encode()
    log(f"  {spec.name}: starting on core {args.server_cpu} ({spec.notes})")
    stack = RunningStack(spec, args.workdir / reference.name, args.server_cpu, label)
    try:
        result["ready_s"] = stack.wait_ready(probe, args.start_timeout)
        log(f"  {spec.name}: ready (first successful prediction) in {result['ready_s']:.2f}s")
        result["correctness"] = check_correctness(stack, reference)
        c = result["correctness"]
        log(
            f"  {spec.name}: {c['rows']} held-out rows: max abs diff {c['max_abs_diff']:.1e}, "
            f"{c['class_mismatches']} class mismatches ({c['class_source']}) -> {'ok' if c['ok'] else 'WRONG'}"
        )
        for kind, rows in (("single", 1), ("batch", BATCH_ROWS)):
            what = "1-row" if rows == 1 else f"{rows}-row"
            log(f"  {spec.name}: {what} requests: {args.warmup:g}s warm-up, {args.duration:g}s measured ...")
            load = measure_load(stack, bodies[kind], rows, args, f"{spec.name} {what}")
            result[kind] = load
            log(
                f"  {spec.name}: {what}: {load['req_s']:,.0f} req/s ({load['rows_s']:,.0f} rows/s), "
                f"p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms; core {args.server_cpu}: server "
                f"{100 * load['server_cpu_s'] / load['seconds']:.0f}%, others "
                f"{load['server_core_other_pct']:.0f}%; core {args.load_cpu}: wrk "
                f"{100 * load['load_cpu_s'] / load['seconds']:.0f}%, others {load['load_core_other_pct']:.0f}%"
            )
            for core, key in (
                (args.server_cpu, "server_core_other_pct"),
                (args.load_cpu, "load_core_other_pct"),
            ):
                if load[key] > NOISY_PCT:
                    log(
                        f"  warning: other processes took {load[key]:.0f}% of core {core} during this "
                        "measurement: it understates this stack"
                    )
            if stack.proc.poll() is not None:
                raise StackError(f"{spec.name} exited during the load:\n{stack.stderr_tail()}")
    except (StackError, OSError, ValueError, KeyError, TypeError, subprocess.TimeoutExpired) as exc:
        # OSError: the server went away mid-request; ValueError/KeyError/TypeError: an answer of
        # the wrong shape. Either way this stack is not reported for this round.
        result["error"] = str(exc) if isinstance(exc, StackError) else f"{type(exc).__name__}: {exc}"
        if stack.proc.poll() is not None and "stderr" not in result["error"]:
            result["error"] += (
                f"\n{spec.name} exited with code {stack.proc.returncode}; stderr:\n{stack.stderr_tail()}"
            )
        log(f"  {spec.name}: FAILED: {result['error']}")
    finally:
        result["peak_rss_mib"] = stack.stop()
        result["pids_seen"] = len(stack.rss.peaks)
    if "error" not in result:
        log(
            f"  {spec.name}: peak RSS {result['peak_rss_mib']:.0f} MiB ({result['pids_seen']} process(es)); stopped"
        )
    return result


# --------------------------------------------------------------------------------------------
# Set-up checks
# --------------------------------------------------------------------------------------------


def python_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, platform, numpy, sklearn, joblib; "
        "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__, "
        "'scikit-learn': sklearn.__version__, 'joblib': joblib.__version__}))"
    )
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{python} cannot import numpy/scikit-learn/joblib:\n{_tail(proc.stderr)}")
    return dict(json.loads(proc.stdout))


def package_version(python: Path, package: str) -> str:
    code = f"from importlib.metadata import version; print(version({package!r}))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "not installed"


def preflight(args: argparse.Namespace, stacks: Sequence[str]) -> dict[str, Any]:
    if not sys.platform.startswith("linux"):
        raise BenchError("this benchmark needs Linux (taskset, /proc)")
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk (make bench-serving installs it)")
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (package util-linux)")
    allowed = os.sched_getaffinity(0)
    for cpu in (args.server_cpu, args.load_cpu):
        if cpu not in allowed:
            raise BenchError(f"core {cpu} is not available to this process (cores: {sorted(allowed)})")
    if args.server_cpu == args.load_cpu:
        raise BenchError("--server-cpu and --load-cpu must differ")
    pythons = {"ours": args.ours_python}
    if any(s not in OURS_STACKS for s in stacks):
        pythons["baselines"] = args.baseline_python
    for what, python in pythons.items():
        if not Path(python).exists():
            hint = (
                "make install"
                if what == "ours"
                else "make bench-serving, or: python3.11 -m venv bench/serving/.venv && bench/serving/.venv/bin/pip "
                "install -r bench/serving/requirements.txt -c bench/serving/constraints.txt"
            )
            raise BenchError(f"python for {what} not found at {python}: run {hint}")
    env: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.splitlines()[
            0:1
        ],
        "pythons": {},
    }
    for what, python in pythons.items():
        versions = python_versions(Path(python))
        if what == "baselines":
            for package in (
                "mlserver",
                "mlserver-sklearn",
                "fastapi",
                "uvicorn",
                "uvloop",
                "httptools",
                "pydantic",
            ):
                versions[package] = package_version(Path(python), package)
        else:
            for package in ("uvloop", "httptools", "orjson"):
                versions[package] = package_version(Path(python), package)
        env["pythons"][what] = {"path": str(python), **versions}
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of wrk per measurement (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of wrk before each measurement (default 2)"
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--stacks",
        default=",".join(STACKS),
        help=f"comma-separated, from {', '.join(KNOWN_STACKS)} (default {', '.join(STACKS)})",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="core the server process is pinned to (default 0)"
    )
    parser.add_argument(
        "--load-cpu", type=int, default=1, help="core wrk (and this script) runs on (default 1)"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=60.0, help="seconds a stack may take to be ready"
    )
    parser.add_argument("--ours-python", type=Path, default=DEFAULT_OURS_PYTHON)
    parser.add_argument("--baseline-python", type=Path, default=DEFAULT_BASELINE_PYTHON)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="model, bodies, server logs")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/serving/results.json)"
    )
    parser.add_argument(
        "--require-goals", action="store_true", help="exit 1 unless every goal of the issue passes"
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated models to serve, from {', '.join(FORMATS)} (default all)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help=f"another commit's serving_image/ folder, measured as the {BEFORE} stack on the same model",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick look: 1 round of 3 s (1 s warm-up) unless --rounds/--duration/--warmup say otherwise",
    )
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=", 1)[0] for a in (argv if argv is not None else sys.argv[1:])}
        args.rounds = args.rounds if "--rounds" in given else 1
        args.duration = args.duration if "--duration" in given else 3.0
        args.warmup = args.warmup if "--warmup" in given else 1.0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    args.format_list = formats
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in stacks if s not in KNOWN_STACKS]
    if unknown or not stacks:
        parser.error(f"--stacks: unknown {unknown}; choose from {', '.join(KNOWN_STACKS)}")
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        parser.error("--rounds, --duration and --connections must be at least 1")
    if (BEFORE in stacks) != (args.before is not None):
        parser.error(f"--stacks {BEFORE} and --before DIR go together")
    args.stack_list = stacks
    args.workdir = args.workdir.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stacks: list[str] = args.stack_list
    try:
        environment = preflight(args, stacks)
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    # This script waits on wrk most of the time; keep it (and the training) off the server's core.
    os.sched_setaffinity(0, {args.load_cpu})
    log(
        f"==> serving benchmark: stacks {', '.join(stacks)}; {args.rounds} round(s) of {args.warmup:g}s warm-up + "
        f"{args.duration:g}s per load; wrk -t1 -c{args.connections} on core {args.load_cpu}, servers on core "
        f"{args.server_cpu}; load average {' '.join(environment['loadavg_at_start'])}"
    )
    if float(environment["loadavg_at_start"][0]) > 0.5:
        log(
            f"warning: load average {environment['loadavg_at_start'][0]}: something else is running; "
            "the numbers will be noisy"
        )
    for what, versions in environment["pythons"].items():
        log(f"    {what}: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "path"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for name in args.format_list:
        try:
            results[name] = run_format(name, args, stacks, environment)
        except BenchError as exc:
            log(f"error: {name}: {exc}")
            results[name] = {"error": str(exc)}
            failed = True
    summary = render_summary(results, rounds=args.rounds, connections=args.connections)
    log(f"==> done in {time.monotonic() - started:.0f}s\n")
    for name, result in results.items():
        if "table" in result:
            print(f"### {name}\n\n{result['table']}\n", flush=True)
    print(summary, flush=True)
    doc = {
        "config": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": 1,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "stacks": stacks,
            "formats": args.format_list,
            "batch_rows": BATCH_ROWS,
            "heldout_rows": N_HELDOUT_ROWS,
            "train_rows": N_TRAIN_ROWS,
            "missing_share": MISSING_SHARE,
            "data_seed": DATA_SEED,
        },
        "environment": environment,
        "formats": results,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"\nresults: {args.out}; server logs: {args.workdir}/<format>/logs")
    if failed or any("error" in m for r in results.values() for m in r.get("medians", {}).values()):
        return 1
    if args.require_goals and not all(g["passed"] for r in results.values() for g in r.get("goals", [])):
        return 1
    return 0


def run_format(
    name: str, args: argparse.Namespace, stacks: Sequence[str], environment: Mapping[str, Any]
) -> dict[str, Any]:
    """Train and build one format's model, then the rounds of every stack on it; its medians,
    ratios, goals and table (BenchError: the model could not be made)."""
    reference = train_reference(args.workdir, args.ours_python, name)
    for what, versions in environment["pythons"].items():
        if versions["scikit-learn"] != reference.sklearn_version:
            raise BenchError(
                f"{what} runs scikit-learn {versions['scikit-learn']} but the model was trained with "
                f"{reference.sklearn_version}: every stack must unpickle the same model with the same version"
            )
    log(
        f"    model: {reference.model_file} ({reference.model_file.stat().st_size / 1024:.0f} KiB), "
        f"{len(reference.heldout)} held-out rows"
    )
    mine = list(stacks)
    if "mlserver" in mine and reference.format not in MLSERVER_RUNTIMES:
        log(f"    MLServer 1.7.1 has no runtime for the {reference.format} format: mlserver not run")
        mine.remove("mlserver")
    specs = build_specs(args.ours_python, args.baseline_python, reference, args.before)
    bodies = {stack: load_bodies(specs[stack], reference, args.workdir) for stack in mine}
    rounds: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        order = round_order(mine, round_index)
        log(f"==> {name}: round {round_index + 1}/{args.rounds}: {', '.join(order)}")
        for stack in order:
            rounds.append(measure_stack(specs[stack], reference, args, round_index + 1, bodies[stack]))
    medians = median_results(rounds, mine)
    ratios = compute_ratios(medians)
    goals = evaluate_goals(medians, ratios, args.connections, reference.model)
    return {
        "model": {
            "file": str(reference.model_file),
            "algorithm": reference.algorithm,
            "classes": reference.model.classes,
            "format": reference.format,
            "scikit-learn": reference.sklearn_version,
            "build": reference.build_log,
            "serve_log": _read(args.workdir / name / "logs" / f"round1-{name}-ours.stderr"),
        },
        "rounds": rounds,
        "medians": medians,
        "ratios": ratios,
        "goals": [asdict(g) for g in goals],
        "table": render_tables(medians, ratios, goals, rounds=args.rounds, connections=args.connections),
    }


def served_by(build_log: str, serve_log: str = "") -> str:
    """What ours answers with, from the image build step's line and ours' startup log."""
    if "linear pipeline compiled" in serve_log:
        return "linear.py below 64 rows, scikit-learn above"
    if "built native/forest.so" in build_log:
        return "native.py forest"
    if "built native/trees.so" in build_log and "tree_arrays walker" in build_log:
        return "tree_arrays.py walker: treelite's nodes as C arrays, branchless"
    if "built native/trees.so" in build_log and "tree_arrays" in build_log:
        return "tree_arrays.py: the forest's nodes as C arrays"
    if "built native/trees.so" in build_log:
        return "tl2cgen"
    if "native predictor: not compiled:" in build_log:
        return "library (over the compile budget)"
    return "library"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:20_000]
    except OSError:
        return ""


def _ratio(ratios: Mapping[str, Mapping[str, float]], other: str, key: str) -> str:
    value = ratios.get(other, {}).get(key)
    return "n/a" if value is None else f"{value:.1f}x"


def render_summary(results: Mapping[str, Mapping[str, Any]], *, rounds: int, connections: int) -> str:
    """One row per format: ours vs fastapi-naive and MLServer's runtime, side by side."""
    lines = [
        f"Per format: medians of {rounds} round(s), {connections} connections, bodies with "
        f"{MISSING_SHARE:.0%} missing cells; ratios are ours / the other stack.",
        "",
        "| format (ours serves with) | ours 1-row req/s (p99 ms) | fastapi-naive | MLServer runtime | "
        "1-row vs naive / MLServer | ours 100-row rows/s | 100-row vs naive | max abs diff | goals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        if "error" in result:
            reason = (str(result["error"]).splitlines() or [""])[0].replace("|", "/")
            lines.append(f"| {name} | not measured: {reason} | | | | | | | |")
            continue
        medians, ratios = result["medians"], result["ratios"]
        ours = medians.get("ours", {})
        naive = medians.get(BASELINE)
        ml = medians.get("mlserver")

        def rate(m: Mapping[str, Any] | None, missing: str = "n/a (no runtime)") -> str:
            if m is None:
                return missing
            return "error" if "error" in m else _fmt(m["single_req_s"])

        single = "error" if "error" in ours else f"{_fmt(ours['single_req_s'])} ({ours['single_p99_ms']:.1f})"
        batch = "error" if "error" in ours else _fmt(ours["batch_rows_s"])
        diff = "error" if "error" in ours else f"{ours['max_abs_diff']:.1e}"
        goals = result["goals"]
        passed = sum(1 for g in goals if g["passed"])
        failed = [g["goal"] for g in goals if g["passed"] is False]
        verdict = f"{passed}/{len(goals)} pass" + (f"; fail: {', '.join(failed)}" if failed else "")
        lines.append(
            f"| {name} ({served_by(result['model']['build'], result['model'].get('serve_log', ''))}) | {single} | {rate(naive, 'n/a (not run)')} | {rate(ml)} | "
            f"{_ratio(ratios, BASELINE, 'single_req_s')} / {_ratio(ratios, 'mlserver', 'single_req_s')} | "
            f"{batch} | {_ratio(ratios, BASELINE, 'batch_rows_s')} | {diff} | {verdict} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
