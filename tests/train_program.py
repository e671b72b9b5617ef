"""Run the serving image's `train` program as SageMaker runs it, through the local runtime's launcher.

`modelops_local.sagemaker_runner.start_train` forks it from a server that has imported its
libraries once (tests/integration/local/test_forkserver.py proves the child is what a fresh
interpreter would be), so a corpus of cases does not pay 1.4 s of imports per case.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from modelops_local.sagemaker_runner import job_environment, start_train

TRAIN = Path(__file__).resolve().parents[1] / "serving_image" / "bin" / "train"


@dataclass(frozen=True)
class TrainRun:
    returncode: int
    output: str  # stdout and stderr together, as a job's log holds them


def run_train(base: Path, name: str, *, timeout: float = 120) -> TrainRun:
    """`train` on the SageMaker layout under `base` (SAGEMAKER_BASE_DIR), as job `name`."""
    shared = job_environment()
    env = {**shared, "SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": name}
    log_path = base.parent / f"{base.name}-train.log"
    process = start_train(sys.executable, TRAIN, cwd=base, env=env, shared=shared, log_path=log_path)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError(
            f"train ({name}) did not end within {timeout:.0f} s; its log: {log_path}"
        ) from None
    return TrainRun(code, log_path.read_text(encoding="utf-8", errors="replace"))
