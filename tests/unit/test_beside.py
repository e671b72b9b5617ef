"""tools/beside.py: `make test` runs the unit tier and the static checks beside the `alone`
integration tests (niced) and the rest of the integration tier beside the e2e lanes with it. Both
commands' failures count, the log is shown, and the command beside gets the default SIGINT even when
`make` started the runner from a shell that ignores it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BESIDE = [sys.executable, str(ROOT / "tools" / "beside.py")]


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _run(
    log: Path, beside: list[str], front: list[str], *options: str, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """tools/beside.py LOG [options] -- BESIDE -- FRONT, bounded."""
    command = [*BESIDE, str(log), *options, "--", *beside, "--", *front]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **popen)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as bash does for `cmd &` without job control


def test_both_commands_run_and_the_log_of_the_one_beside_is_shown_after_the_other(tmp_path):
    log = tmp_path / "beside.log"
    # When both pass
    done = _run(log, _py("print('beside ran')"), _py("print('front ran')"))
    # Then it exits 0, the foreground's output passed through and the log shown after it
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.index("front ran") < done.stdout.index("beside ran")
    assert log.read_text() == "beside ran\n"


def test_a_failure_on_either_side_fails_the_run_and_shows_the_whole_log(tmp_path):
    fail = _py("import sys; print('the reason'); sys.exit(3)")
    for beside, front in ((fail, _py("pass")), (_py("pass"), fail)):
        done = _run(tmp_path / "beside.log", beside, front)
        assert done.returncode == 1 and "the reason" in done.stdout and "==> failed" in done.stdout


def test_both_commands_get_the_default_sigint_even_when_the_runner_was_started_ignoring_it(tmp_path):
    # Given a runner started the way a non-interactive shell starts `cmd &`: SIGINT ignored
    log = tmp_path / "beside.log"
    show = _py("import signal; print('SIGINT', signal.getsignal(signal.SIGINT))")
    done = _run(log, show, show, preexec_fn=_ignore_sigint)
    # Then both commands would stop on Ctrl-C (a Ctrl-C test among them works)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "default_int_handler" in log.read_text()
    assert done.stdout.count("default_int_handler") == 2 and "SIG_IGN" not in done.stdout


def test_the_command_beside_is_killed_once_it_outlasts_the_other_by_the_timeout(tmp_path):
    done = _run(tmp_path / "beside.log", _py("import time; time.sleep(60)"), ["true"], "--timeout", "0.5")
    assert done.returncode == 1 and "killed" in done.stdout


def test_nice_lowers_the_priority_of_the_command_beside_only(tmp_path):
    # Given --nice 10 (the unit tier beside the `alone` integration tests)
    log = tmp_path / "beside.log"
    show = _py("import os; print('niceness', os.nice(0))")
    done = _run(log, show, show, "--nice", "10")
    # Then the command beside (and what it starts) runs 10 steps nicer than the runner; the
    # foreground keeps the runner's priority
    assert done.returncode == 0, done.stdout + done.stderr
    mine = os.nice(0)
    assert log.read_text() == f"niceness {min(mine + 10, 19)}\n"
    assert f"niceness {mine}\n" in done.stdout
