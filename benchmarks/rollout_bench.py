"""Rollout benchmark on the local runtime (a script, not a test): `make bench`.

Runs the demo's model through a good version and then ROUNDS bad versions (the demo team's own
training script, whose model fails on new customers) under steady traffic with new customers in
it, and prints:

- alarm -> rollback: from the alarm's state change (the evaluator's transition) to the workflow
  entering Rollback, and to the last request the canary served (stable-only traffic from then on);
- orchestration overhead of a whole run: wall time minus training, bake and watch (what the
  workflow, the functions and the rollout themselves cost);
- each function's init (cold start) time in its worker process.

The alarm's own detection delay (a 10-second period must end before it is judged) is printed
separately: it is CloudWatch's, identical on AWS, and tunable by the alarm period.

    .venv/bin/python benchmarks/rollout_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from modelops.config import load_config_file

from modelops_local.cloud import LocalCloud, LocalSettings
from modelops_local.demo import (
    DEMO_CONFIG,
    SteadyTraffic,
    _dataset,
    _run_version,
    live_customers,
    team_script_config,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="bad versions rolled back (default 3)")
    args = parser.parse_args()
    quiet = lambda _: None  # noqa: E731
    logging.basicConfig(
        filename=str(Path(tempfile.gettempdir()) / "rollout_bench.log"), level=logging.INFO
    )  # moto's interpreter is chatty
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        workdir = Path(tmp)
        with LocalCloud(LocalSettings(state_dir=workdir / "state"), progress=quiet) as cloud:
            config = load_config_file(DEMO_CONFIG)
            cloud.put_model(config)
            print("version 1 (first deploy) ...", flush=True)
            good = _run_version(cloud, 1, workdir, quiet, "v1")
            if good.record.get("status") != "promoted":
                print(f"version 1 not promoted: {good.record}", file=sys.stderr)
                return 1
            _, sample = _dataset(1, workdir)
            traffic = SteadyTraffic(cloud.service_url("models", "churn"), live_customers(sample)).start()
            cloud.put_model(team_script_config(config))
            rows = []
            try:
                for round_ in range(args.rounds):
                    print(f"bad version, round {round_ + 1}/{args.rounds} ...", flush=True)
                    alarms_before = len(cloud.alarm_changes)
                    # datasets 2 and 3 alternate; each beats its champion on its own holdout
                    run = _run_version(cloud, 2 + round_ % 2, workdir, quiet, f"bad-{round_}")
                    fired = [
                        c
                        for c in cloud.alarm_changes[alarms_before:]
                        if c.get("state", {}).get("value") == "ALARM" and "canary" in c.get("alarmName", "")
                    ]
                    rollback_at = next((at for at, name in run.states if name == "Rollback"), None)
                    if not fired or rollback_at is None:
                        print(f"round {round_ + 1}: no alarm-driven rollback ({run.record.get('error')})")
                        continue
                    alarm_at = fired[0]["time"]
                    canary_answers = [
                        a.at for a in traffic.answers if a.variant == "canary" and a.at >= alarm_at
                    ]
                    last_canary = max(canary_answers, default=alarm_at)
                    canary_start = next(at for at, name in run.states if name == "Bake")
                    rows.append(
                        {
                            "detect": alarm_at - canary_start,
                            "to_rollback": rollback_at - alarm_at,
                            "to_stable_only": last_canary - alarm_at,
                        }
                    )
                    _wait_canary_alarms_ok(
                        cloud, timeout=90
                    )  # the next round starts from OK, not preexisting
            finally:
                traffic.stop()
            runs_overhead = _overhead(cloud, good)
            metrics = cloud.runtime.metrics()

    print("\n== alarm -> rollback (per round, seconds)")
    print("(traffic: 20 req/s, a quarter to the canary: stable-only is resolved to about 0.2 s)")
    print(f"{'round':>5} {'bake start->alarm':>18} {'alarm->Rollback state':>22} {'alarm->stable-only':>19}")
    for i, r in enumerate(rows, 1):
        print(f"{i:>5} {r['detect']:>18.2f} {r['to_rollback']:>22.2f} {r['to_stable_only']:>19.2f}")
    if rows:
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"median {med['detect']:>17.2f} {med['to_rollback']:>22.2f} {med['to_stable_only']:>19.2f}")
    print("\n== orchestration overhead of version 1's run (seconds)")
    for key, value in runs_overhead.items():
        print(f"  {key:<28} {value:8.2f}")
    print("\n== function init (cold start) times in their workers (seconds)")
    for name, m in sorted(metrics.items()):
        if m.init_durations:
            print(f"  {name:<40} {statistics.median(m.init_durations):6.3f}  (n={len(m.init_durations)})")
    return 0


def _wait_canary_alarms_ok(cloud: LocalCloud, timeout: float) -> None:
    """Bounded wait until the model's canary alarms left ALARM (no data: notBreaching -> OK)."""
    cw = cloud.client("cloudwatch")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alarms = cw.describe_alarms(AlarmNamePrefix=f"{cloud.info.alarm_prefix}churn-canary")["MetricAlarms"]
        if all(a["StateValue"] != "ALARM" for a in alarms):
            return
        time.sleep(1)
    print(f"canary alarms still in ALARM after {timeout:.0f}s", file=sys.stderr)


def _overhead(cloud: LocalCloud, run: object) -> dict[str, float]:
    states = run.states  # type: ignore[attr-defined]
    stop = run.stop_time  # type: ignore[attr-defined]
    wall = stop - states[0][0]
    first_job = cloud.training_updates[0][1] if cloud.training_updates else ""
    jobs = [u for u in cloud.training_updates if u[1] == first_job]
    training = (jobs[-1][0] - jobs[0][0]) if jobs else 0.0  # created -> Completed
    phases = run.phase_seconds()  # type: ignore[attr-defined]
    waits = phases.get("bake", 0.0) + phases.get("watch", 0.0)
    return {
        "wall": wall,
        "training job": training,
        "bake + watch windows": waits,
        "overhead (wall - both)": wall - training - waits,
    }


if __name__ == "__main__":
    sys.exit(main())
