#!/usr/bin/env python3
"""A fresh `serve` process's first requests, with and without its readiness warm-up.

A canary pod takes traffic as soon as its readiness probe (`GET /ping`) answers 200; whatever the
process still does lazily on its first requests (first calls into the native predictor, numpy's
and orjson's first conversions, the micro-batcher's first turn of the loop, the drift statistics'
first binning) lands in the canary's p99, which the canary analysis compares with the warm
stable's. This script trains the serving benchmark's reference model once (bench/serving/run.py's
train_reference: the project's `train` program and the image build's native step), then, for each
round and each mode in turn (the order alternates per round):

1. starts `serving_image/bin/serve` on that model with `SERVE_WARMUP_SECONDS=0` (off) or the
   default (on), and polls `/ping` every 5 ms until it answers 200 (the ready time);
2. at once sends 100 one-row requests, one after another on one keep-alive connection, and times
   each from send to full answer (the fresh pod's first 100 requests);
3. sends 100 more the same way (the same process, now warm: the reference);
4. stops the server.

It prints, per mode, the medians over the rounds of the very first request's time, the first 100
requests' p50, p99, max and sum, the warm reference's p99 and the ready time, and the ratios off/on.
A round fails unless the server's log has exactly one `warm-up:` line, saying "switched off" when
it was.

    .venv/bin/python bench/serving/first_requests.py [--rounds 5] [--model hgb] [--cpu 0]
    .venv/bin/python bench/serving/first_requests.py --model-dir path/to/ml/model   # any trained
        model folder (e.g. a script-mode model, which scikit-learn answers); bodies from its check.json

`--cpu N` pins the server to core N (the client runs wherever the kernel puts it). Timings on a
machine shared with other work are noisy; compare the ratio, and rerun.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import run as serving_bench  # noqa: E402  (bench/serving/run.py: the reference model)

FIRST = 100
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
MODES = {"off": "0", "on": None}  # SERVE_WARMUP_SECONDS; None: the server's default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> float:
    """Seconds from start until /ping answers 200 (bounded by READY_TIMEOUT_S)."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
            conn.request("GET", "/ping")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"serve not ready within {READY_TIMEOUT_S:.0f} s")


def timed_requests(port: int, bodies: list[bytes]) -> list[float]:
    """Milliseconds per request, sent one after another on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    latencies = []
    for body in bodies:
        began = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - began) * 1000.0)
        if response.status != 200:
            raise RuntimeError(f"/invocations answered {response.status}")
    conn.close()
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def one_round(mode: str, model_dir: Path, bodies: list[bytes], cpu: int | None) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(model_dir.parent),
        "SERVE_HOST": "127.0.0.1",
        "PORT": str(port),
        "MODELOPS_MODEL": "bench",
        "MODELOPS_VARIANT": "canary",
    }
    env.pop("SERVE_WARMUP_SECONDS", None)
    if MODES[mode] is not None:
        env["SERVE_WARMUP_SECONDS"] = MODES[mode]  # type: ignore[assignment]
    argv = [sys.executable, str(ROOT / "serving_image" / "bin" / "serve")]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = wait_ready(port, proc)
        first = timed_requests(port, bodies[:FIRST])
        warm = timed_requests(port, bodies[FIRST : 2 * FIRST])
    finally:
        proc.send_signal(signal.SIGINT)  # a second signal below skips any drain
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)
    assert proc.stderr is not None
    warmed = [line for line in proc.stderr.read().decode(errors="replace").splitlines() if "warm-up:" in line]
    if len(warmed) != 1 or ("switched off" in warmed[0]) != (mode == "off"):
        raise RuntimeError(f"warm-up {mode}, yet serve logged: {warmed}")
    return {
        "ready_s": ready,
        "first_one": first[0],
        "first_p50": statistics.median(first),
        "first_p99": p99(first),
        "first_max": max(first),
        "first_sum": sum(first),
        "warm_p99": p99(warm),
    }


# A fresh interpreter loads the model as `serve` does (ModelService.load, with or without the
# warm-up) and reports the CPU time of its thread for each of its first requests through
# ModelService.invoke: parse, predict, answer. Thread CPU time hardly moves with other load on the
# machine, unlike the wall-clock times above.
_CPU_PROBE = """
import asyncio, json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from model_server.contract import serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
model_dir, bodies = Path(sys.argv[2]), json.loads(sys.stdin.read())
service = ModelService(model_dir, serve_settings(os.environ), RequestMetrics(namespace="b", model="b", variant="b", version="b"))
service.load()
assert service.ping()[0] == 200, service.ping()
cpu = []
for body in bodies:
    began = time.thread_time()
    status, _ = asyncio.run(service.invoke(body.encode(), "application/json"))
    cpu.append((time.thread_time() - began) * 1000.0)
    assert status == 200, status
print(json.dumps(cpu))
"""


def first_requests_cpu(mode: str, model_dir: Path, bodies: list[bytes], count: int = 10) -> list[float]:
    """CPU milliseconds of a fresh process's first `count` requests (see _CPU_PROBE)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as serving_image/bin/serve sets it
    env.pop("SERVE_WARMUP_SECONDS", None)
    if MODES[mode] is not None:
        env["SERVE_WARMUP_SECONDS"] = MODES[mode]  # type: ignore[assignment]
    proc = subprocess.run(
        [sys.executable, "-c", _CPU_PROBE, str(ROOT / "serving_image"), str(model_dir)],
        input=json.dumps([b.decode() for b in bodies[:count]]),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"CPU probe failed:\n{proc.stderr[-2000:]}")
    cpu: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="hgb", choices=sorted(serving_bench.FORMATS))
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--model-dir", type=Path, default=None, help="serve this model folder instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="first-requests-") as tmp:
        if args.model_dir is not None:
            model_dir = args.model_dir.resolve()
            check = json.loads((model_dir / "check.json").read_text())["rows"]
            rows = [check[i % len(check)] for i in range(2 * FIRST)]
            bodies = [json.dumps({"instances": [row]}).encode() for row in rows]
            args.model = model_dir.name
        else:
            reference = serving_bench.train_reference(
                args.workdir or Path(tmp), Path(sys.executable), args.model
            )
            model_dir = reference.model_dir
            bodies = [
                json.dumps(serving_bench.instances_request([row])).encode()
                for row in reference.heldout[: 2 * FIRST]
            ]
        cpu: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                cpu[mode].append(first_requests_cpu(mode, model_dir, bodies))
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for index in range(args.rounds):
            order = list(MODES) if index % 2 == 0 else list(reversed(MODES))
            for mode in order:
                result = one_round(mode, model_dir, bodies, args.cpu)
                results[mode].append(result)
                print(
                    f"round {index + 1} warm-up {mode:>3}: ready {result['ready_s']:.2f} s, "
                    f"1st {result['first_one']:.2f} ms, first {FIRST} "
                    f"p50 {result['first_p50']:.2f} p99 {result['first_p99']:.2f} max {result['first_max']:.2f} ms, "
                    f"then p99 {result['warm_p99']:.2f} ms",
                    flush=True,
                )

    medians = {
        mode: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for mode, rounds in results.items()
    }
    print(f"\nmodel {args.model}, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f} (medians)")
    print(
        f"| warm-up | ready (s) | 1st request (ms) | first {FIRST}: p50 (ms) | p99 (ms) | max (ms) | sum (ms) | after: p99 (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, m in medians.items():
        print(
            f"| {mode} | {m['ready_s']:.2f} | {m['first_one']:.2f} | {m['first_p50']:.2f} | {m['first_p99']:.2f} | "
            f"{m['first_max']:.2f} | {m['first_sum']:.0f} | {m['warm_p99']:.2f} |"
        )
    print(f"\nCPU time of a fresh process's first requests (ms, median over {args.rounds} processes):")
    for mode, runs in cpu.items():
        per_request = [statistics.median(run[i] for run in runs) for i in range(len(runs[0]))]
        print(f"  warm-up {mode:>3}: " + " ".join(f"{v:.2f}" for v in per_request))
    cpu_first = {mode: statistics.median(run[0] for run in runs) for mode, runs in cpu.items()}
    print(f"  1st request off/on: {cpu_first['off'] / max(cpu_first['on'], 1e-3):.1f}x")
    off, on = medians["off"], medians["on"]
    print(
        f"\nratio off/on: 1st request {off['first_one'] / on['first_one']:.2f}x, first {FIRST} p99 {off['first_p99'] / on['first_p99']:.2f}x, "
        f"max {off['first_max'] / on['first_max']:.2f}x, sum {off['first_sum'] / on['first_sum']:.2f}x; "
        f"ready time on/off {on['ready_s'] / off['ready_s']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
