"""`modelops local up` waits for Ctrl-C with many threads running: the signal must stop it whichever
thread the kernel hands it to (a process-directed signal goes to any thread that does not block it)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# A process shaped like `up`: the handlers installed, a second thread alive, the main thread in
# `_stop_on_signals.wait()`. It prints the second thread's id, then "stopped" when the signal
# raised KeyboardInterrupt out of the wait.
CHILD = """
import sys, threading
from modelops_cli.local import _stop_on_signals
done = threading.Event()
other = threading.Thread(target=done.wait, daemon=True)
other.start()
with _stop_on_signals() as signals:
    try:
        print(other.native_id, flush=True)
        signals.wait()
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(0)
"""
SYS_TGKILL = 234  # x86_64; the test is skipped elsewhere
SYS_FUTEX, SYS_WRITE = 202, 1


def _blocked_in_its_wait(pid: int) -> bool:
    """The main thread sits in a blocking call that is neither the GIL (futex) nor the print."""
    call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    return call not in {"running", str(SYS_FUTEX), str(SYS_WRITE)}


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    """tgkill(2): deliver `signum` to one thread of `pid`, as the kernel may do with kill(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the tgkill syscall number is x86_64's")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_that_lands_on_another_thread_still_stops_up_at_once(signum):
    # Given a process waiting as `up` does, with a second thread
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert child.stdout is not None
        tid = int(child.stdout.readline())
        wait_for(lambda: _blocked_in_its_wait(child.pid), "the main thread in its wait", timeout=10)
        # When the signal is delivered to that other thread, not the main one
        sent = time.monotonic()
        _signal_thread(child.pid, tid, signum)
        # Then the main thread leaves its wait at once (a `time.sleep(3600)` slept through it)
        code = child.wait(timeout=10)
        assert time.monotonic() - sent < 5
        assert code == 0 and child.stdout.read().strip() == "stopped"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
