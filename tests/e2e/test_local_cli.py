"""`modelops local up` as a user runs it: endpoints printed, the ordinary CLI pointed at it with
`modelops local env`, schedules fired with `modelops local tick`, and Ctrl-C leaving no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
MODELOPS = [sys.executable, "-m", "modelops_cli.main"]


def test_up_env_status_tick_and_ctrl_c(tmp_path):
    # Given `modelops local up` started in its own state folder on any free port
    state = tmp_path / "state"
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [*MODELOPS, "local", "up", "--state-dir", str(state), "--port", "0"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        endpoints = state / "endpoints.json"
        wait_for(endpoints.exists, "endpoints.json", timeout=90, interval=0.2)
        info = json.loads(endpoints.read_text())

        # When the shell exports from `modelops local env` are applied
        exports = subprocess.run(
            [*MODELOPS, "local", "env", "--state-dir", str(state)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        env = dict(os.environ)
        for line in exports.stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        # Then the ordinary CLI talks to the local stack: the model `up` put is there, with no run yet
        status = subprocess.run(
            [*MODELOPS, "status", "--model", "churn"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert "lock:     free" in status.stdout and "champion: none" in status.stdout
        # And `up` bootstrapped the stack as a user does after `sam deploy`: the training image was
        # built by the local CodeBuild and recorded, so `modelops bootstrap` again does nothing
        assert "bootstrapping: modelops bootstrap" in (tmp_path / "up.log").read_text()
        again = subprocess.run(
            [*MODELOPS, "bootstrap"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stderr
        assert "already built from this source" in again.stdout and "nothing to do" in again.stdout
        # And the Service URL answers (no version yet: 503 naming the Service, not a hang)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(info["services"]["churn"] + "/ping", timeout=10)
        assert answer.value.code == 503
        # And `tick` reaches the running scheduler
        tick = subprocess.run(
            [*MODELOPS, "local", "tick", "--state-dir", str(state)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # the stack's own daily image clean-up is due; churn-local's retraining schedule is none
        assert tick.returncode == 0 and "fired 1 schedule(s)" in tick.stdout, tick.stderr
        assert "function:modelops-image-retention" in tick.stdout and "ok=True" in tick.stdout, tick.stdout
        # And the functions run in worker processes of `up`: the four alarms `up` created leave
        # INSUFFICIENT_DATA at their first evaluation, and each state change reaches on_alarm
        children = wait_for(
            lambda: [p.pid for p in psutil.Process(up.pid).children(recursive=True)],
            "on_alarm worker processes under `up`",
            timeout=90,
            interval=0.2,
        )
    finally:
        # When Ctrl-C arrives
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        log.close()
    # Then it exits 0, removes its endpoints file and leaves no process behind
    assert code == 0, (tmp_path / "up.log").read_text()[-2000:]
    assert not (state / "endpoints.json").exists()
    time.sleep(0.5)
    assert [
        pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ] == []
