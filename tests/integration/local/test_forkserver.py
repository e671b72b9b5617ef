"""The fork server's children are what a fresh `python program` would be for everything a training
job relies on: program run as __main__, argv, sys.path[0], working directory, exact environment, own
session, stdin from /dev/null, stdout and stderr to the log, exit code or minus the signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelops_local import forkserver
from modelops_local.forkserver import ForkServer, ForkServerError, shared_server

PROBE = textwrap.dedent(
    """
    import json, os, sys
    facts = {
        "name": __name__,
        "argv": sys.argv,
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("PROBE_")},
        "own_session": os.getsid(0) == os.getpid(),
        "group_leader": os.getpgid(0) == os.getpid(),
        "stdin": sys.stdin.read(),
        "stdin_is_null": os.path.samestat(os.fstat(0), os.stat(os.devnull)),
        "preloaded": "probe_heavy" in sys.modules,
    }
    print(json.dumps(facts), flush=True)
    print("to stderr", file=sys.stderr)
    """
)


@pytest.fixture
def server(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    # A module that counts its imports: a child must not import a preloaded module again.
    (lib / "probe_heavy.py").write_text(
        f"open({str(tmp_path / 'imports.log')!r}, 'a').write('imported\\n')\n", encoding="utf-8"
    )
    servers = []

    def make(preload=("probe_heavy",), path=(str(lib),)):
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", "PROBE_SHARED": "server"}
        servers.append(ForkServer(sys.executable, preload=preload, path=path, env=env, ready_timeout=60))
        return servers[-1]

    yield make
    for s in servers:
        s.close(timeout=10)


def _program(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(body, encoding="utf-8")
    return program


def _run(server, program: Path, tmp_path: Path, env=None, timeout=30) -> tuple[int, str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    log = work / "log.txt"
    child = server.spawn(program, cwd=work, env=env or {"PROBE_JOB": "one"}, log_path=log)
    code = child.wait(timeout)
    return code, log.read_text(encoding="utf-8")


def test_a_child_sees_what_a_fresh_interpreter_sees(server, tmp_path):
    # Given a program that reports what it sees, run by a fresh interpreter as SageMaker's runner did
    program = _program(tmp_path, PROBE)
    work = tmp_path / "work"
    work.mkdir()
    with (tmp_path / "fresh.txt").open("wb") as log:
        fresh = subprocess.run(
            [sys.executable, str(program)],
            cwd=work,
            env={"PROBE_JOB": "one"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            timeout=30,
            check=True,
        )
    expected = (tmp_path / "fresh.txt").read_text(encoding="utf-8").splitlines()
    # When the fork server runs it with the same environment and folder
    forks = server()
    code, text = _run(forks, program, tmp_path)
    # Then it sees the same: __main__, argv, its folder first on the path, the job's folder and only
    # the job's environment (none of the server's), its own session, an empty stdin
    assert code == fresh.returncode == 0
    facts = json.loads(text.splitlines()[0])
    assert {k: v for k, v in facts.items() if k != "preloaded"} == {
        k: v for k, v in json.loads(expected[0]).items() if k != "preloaded"
    }
    assert facts["name"] == "__main__" and facts["argv"] == [str(program)]
    assert facts["path0"] == str(program.parent) and facts["cwd"] == str(work)
    assert facts["env"] == {"PROBE_JOB": "one"}
    assert facts["own_session"] and facts["group_leader"] and facts["stdin_is_null"]
    # And stderr goes to the same log; the preloaded module was imported once, by the server
    assert text.splitlines()[1] == "to stderr"
    assert facts["preloaded"]
    assert _run(forks, program, tmp_path)[0] == 0
    assert (tmp_path / "imports.log").read_text(encoding="utf-8") == "imported\n"


@pytest.mark.parametrize(
    ("body", "code", "in_log"),
    [
        ("import sys; sys.exit(3)", 3, None),
        ("raise SystemExit('no rows in the train channel')", 1, "no rows in the train channel"),
        ("raise ValueError('bad column')", 1, "ValueError: bad column"),
        ("print('fine')", 0, "fine"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM, None),
    ],
    ids=["exit-3", "exit-message", "uncaught", "success", "killed"],
)
def test_a_child_ends_with_the_code_a_fresh_interpreter_would(server, tmp_path, body, code, in_log):
    program = _program(tmp_path, body + "\n")
    fresh = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=30)
    got, text = _run(server(), program, tmp_path)
    assert got == fresh.returncode == code
    if in_log:
        assert in_log in text and in_log in fresh.stdout + fresh.stderr


def test_children_run_side_by_side_and_each_reports_its_own_code(server, tmp_path):
    forks = server()
    program = _program(tmp_path, "import os, sys, time; time.sleep(0.3); sys.exit(int(os.environ['CODE']))\n")
    children = []
    for i in range(6):
        work = tmp_path / f"w{i}"
        work.mkdir()
        children.append(forks.spawn(program, cwd=work, env={"CODE": str(i)}, log_path=work / "log"))
    assert [c.wait(30) for c in children] == list(range(6))
    assert len({c.pid for c in children}) == 6


def _sleeper(forks: ForkServer, tmp_path: Path, seconds: float):
    program = _program(tmp_path, f"import time; time.sleep({seconds})\n")
    work = tmp_path / "w"
    work.mkdir()
    return program, forks.spawn(program, cwd=work, env={}, log_path=work / "log")


def test_a_signal_to_the_childs_group_ends_it_and_a_wait_is_bounded(server, tmp_path):
    _, child = _sleeper(server(), tmp_path, 60)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(10) == -signal.SIGTERM


def test_a_server_with_a_thread_after_its_imports_is_not_used(server, tmp_path):
    lib = tmp_path / "threads"
    lib.mkdir()
    (lib / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
        encoding="utf-8",
    )
    with pytest.raises(ForkServerError, match="2 threads"):
        server(preload=("starts_a_thread",), path=(str(lib),))
    # and the shared server for those imports is refused once, then at once for every later job
    env = {"PATH": os.environ.get("PATH", ""), "PROBE_SHARED": str(tmp_path)}
    with pytest.raises(ForkServerError, match="2 threads"):
        shared_server(sys.executable, preload=("starts_a_thread",), path=(str(lib),), env=env)
    assert any(str(tmp_path) in str(key) for key in forkserver._refused)
    with pytest.raises(ForkServerError, match="2 threads"):
        shared_server(sys.executable, preload=("starts_a_thread",), path=(str(lib),), env=env)


def test_a_module_that_fails_to_preload_fails_the_child_as_a_fresh_import_would(server, tmp_path):
    lib = tmp_path / "broken"
    lib.mkdir()
    (lib / "broken_mod.py").write_text(
        "raise ImportError('needs a package this image lacks')\n", encoding="utf-8"
    )
    forks = server(preload=("broken_mod",), path=(str(lib),))
    program = _program(tmp_path, f"import sys; sys.path.insert(0, {str(lib)!r}); import broken_mod\n")
    code, text = _run(forks, program, tmp_path)
    assert code == 1 and "needs a package this image lacks" in text


def test_once_the_server_is_gone_a_spawn_says_so_and_running_children_end_unknown(server, tmp_path):
    forks = server()
    program, child = _sleeper(forks, tmp_path, 1)
    work = tmp_path / "w"
    os.kill(forks._process.pid, signal.SIGKILL)
    assert child.wait(10) == 255
    with pytest.raises(ForkServerError, match="gone"):
        forks.spawn(program, cwd=work, env={}, log_path=work / "log2")


def test_a_child_whose_spawn_gave_up_waiting_is_killed_not_left_to_run_the_job_twice(server, tmp_path):
    # Given a spawn that stops waiting for the server's answer before it comes (its caller then
    # starts the job another way): the server is stopped while the request waits in its pipe, so
    # the answer comes late whatever the machine's speed
    forks = server()
    marker = tmp_path / "ran"
    program = _program(tmp_path, f"import time; time.sleep(1); open({str(marker)!r}, 'w').close()\n")
    work = tmp_path / "w"
    work.mkdir()
    os.kill(forks._process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(ForkServerError, match="did not answer"):
            forks.spawn(program, cwd=work, env={}, log_path=work / "log", timeout=0.2)
    finally:
        os.kill(forks._process.pid, signal.SIGCONT)
    # Then the child forked for it is killed when the late answer comes: it never does the job
    time.sleep(2.5)
    assert not marker.exists()
    # and the server still serves
    assert _run(forks, _program(tmp_path, "print('next')\n", "next.py"), tmp_path)[0] == 0
