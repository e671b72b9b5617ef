"""Run one command in the foreground and another beside it, its output to a log; `make test` uses it
to run the unit tier and the static checks beside the `alone` integration tests (at a lower
priority: `--nice`), and the rest of the integration tier beside the e2e lanes.

    python tools/beside.py LOG [--nice N] [--timeout S] -- BESIDE... -- FOREGROUND...

The command beside starts first, with its output in LOG; the foreground command keeps the terminal
(its progress shows). When the foreground command ends, the one beside gets at most --timeout
seconds more to end (then it is killed and counts as failed); its LOG is printed (from pytest's
"slowest durations" on when it passed, whole when it failed). Exit status 0 only when both passed.

Why not `cmd > LOG & ...` in the Makefile: a non-interactive shell starts a background command with
SIGINT ignored, and its children inherit that, so a test that sends SIGINT to a child process (the
local runtime's Ctrl-C tests) waits in vain, and Ctrl-C on `make test` would leave it running.
Here both commands get the default SIGINT, and Ctrl-C stops both.

`--nice N` starts the command beside N steps nicer (its children inherit it): it takes the CPU the
foreground leaves idle and little more, so the foreground's timing is barely touched (at nice 10 the
kernel gives it about a tenth of what a nice-0 process of the same session gets of a contended
core; a process that starts its own session, as pod and training processes do, is weighed apart).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _beside_start(nice: int) -> Callable[[], None]:
    def start() -> None:
        _default_sigint()
        if nice:
            os.nice(nice)

    return start


def _shown(log: str, passed: bool) -> str:
    if passed and "slowest" in log:
        return log[log.rindex("\n", 0, log.index("slowest")) + 1 :]
    return log


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds the command beside may outlast"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        choices=range(20),
        metavar="0-19",
        help="niceness added to the command beside",
    )
    if args.count("--") != 2:
        parser.error("usage: beside.py LOG [--nice N] [--timeout S] -- BESIDE... -- FOREGROUND...")
    first = args.index("--")
    second = args.index("--", first + 1)
    options = parser.parse_args(args[:first])
    beside, foreground = args[first + 1 : second], args[second + 1 :]
    if not beside or not foreground:
        parser.error("both commands are needed")
    with options.log.open("wb") as out:
        side = subprocess.Popen(
            beside, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_beside_start(options.nice)
        )
        try:
            front = subprocess.run(foreground, preexec_fn=_default_sigint).returncode
            try:
                beside_code = side.wait(options.timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"==> {shlex.join(beside)}: still running {options.timeout:.0f} s after the other ended; killed"
                )
                side.kill()
                side.wait(30)
                beside_code = -9
        except KeyboardInterrupt:
            side.send_signal(signal.SIGINT)
            try:
                side.wait(30)
            except subprocess.TimeoutExpired:
                side.kill()
            raise
    log = options.log.read_text(errors="replace")
    print(f"==> {time.strftime('%H:%M:%S')} {shlex.join(beside)} ({options.log}):", flush=True)
    print(_shown(log, beside_code == 0), end="", flush=True)
    if front != 0 or beside_code != 0:
        print(f"==> failed: {shlex.join(foreground)}: exit {front}; {shlex.join(beside)}: exit {beside_code}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
