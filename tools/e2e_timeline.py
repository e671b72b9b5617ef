"""Where each end-to-end test's time went, from the timelines `E2E_TIMELINE` records.

    E2E_TIMELINE=/tmp/tl E2E_LANES=3 .venv/bin/pytest -m e2e -n 3 -q
    .venv/bin/python tools/e2e_timeline.py /tmp/tl.*

tests/e2e/conftest.py appends one JSON line per test (its start and end, every execution started
meanwhile with each state it entered). For each test, slowest first, this prints its wall time,
the time no execution of it was running (the test's own work and waits: traffic, CLI calls,
assertions), and per execution (a burst's executions are summed) the seconds per phase of the
workflow, the phases of `modelops_local.demo.PHASES` (bake, watch, build, train, ...).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from modelops_local.demo import PHASES


def phases(run: dict[str, Any]) -> Counter[str]:
    """Seconds per phase of one execution: each state's time until the next state (or the stop)."""
    out: Counter[str] = Counter()
    states = run["states"]
    stop = run["stop"] or (states[-1][0] if states else run["start"])
    for (at, name), (end, _) in zip(states, [*states[1:], (stop, "")], strict=True):
        out[PHASES.get(name, "finish")] += max(0.0, end - at)
    return out


def busy(runs: list[dict[str, Any]], start: float, end: float) -> float:
    """Seconds of [start, end] during which at least one of `runs` was running."""
    spans = sorted((max(start, r["start"]), min(end, r["stop"] or end)) for r in runs)
    total, reach = 0.0, start
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def report(tests: list[dict[str, Any]]) -> list[str]:
    lines = []
    for t in sorted(tests, key=lambda t: t["start"] - t["end"]):
        wall = t["end"] - t["start"]
        runs = t["runs"]
        name = t["test"].rsplit("::", 1)[-1]
        lines.append(
            f"{wall:7.1f}s {t['worker']:<5} {name}: {len(runs)} executions, "
            f"{wall - busy(runs, t['start'], t['end']):.1f}s with none running"
        )
        shown = sorted(runs, key=lambda r: r["start"])
        if len(shown) > 8:  # a burst: one line for all
            total: Counter[str] = Counter()
            for run in shown:
                total += phases(run)
            statuses = Counter(r["status"] for r in shown)
            span = max(r["stop"] or t["end"] for r in shown) - min(r["start"] for r in shown)
            trained = sum(1 for r in shown if any(n == "ValidateDataset" for _, n in r["states"]))
            lines.append(
                f"          {len(shown)} executions over {span:.1f}s, {trained} trained, {dict(statuses)}; "
                "summed: " + ", ".join(f"{k} {v:.0f}" for k, v in total.most_common())
            )
            continue
        for run in shown:
            took = (run["stop"] or t["end"]) - run["start"]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in phases(run).most_common() if v >= 0.05)
            lines.append(
                f"          {run['start'] - t['start']:6.1f}s +{took:5.1f}s {run['status']:<9} {parts}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("files", nargs="+", type=Path, help="the E2E_TIMELINE files (one per worker)")
    args = parser.parse_args()
    tests = [json.loads(line) for path in args.files for line in path.read_text().splitlines() if line]
    print("\n".join(report(tests)))
    per_worker: Counter[str] = Counter()
    for t in tests:
        per_worker[t["worker"]] += t["end"] - t["start"]
    print("calls per worker: " + ", ".join(f"{w} {s:.0f}s" for w, s in sorted(per_worker.items())))


if __name__ == "__main__":
    main()
