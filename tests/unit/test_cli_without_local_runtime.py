"""`modelops local` without the local runtime installed (the product installed on its own): a clear
error naming what to install, exit code 1, nothing started."""

from __future__ import annotations

import sys

import pytest

from modelops_cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["local", "demo", "--output", "{tmp}/demo"],
        ["local", "up", "--state-dir", "{tmp}/state"],
        ["local", "run", "--model", "churn", "--data", "x.csv", "--state-dir", "{tmp}/state"],
    ],
    ids=["demo", "up", "run"],
)
def test_local_commands_name_the_missing_distribution(argv, tmp_path, monkeypatch, capsys):
    # Given a product install without modelops-local (every module of it unimportable)
    for name in [m for m in sys.modules if m == "modelops_local" or m.startswith("modelops_local.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "modelops_local", None)
    # When a command that needs the runtime runs
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    # Then it says what to install, and starts nothing
    assert code == 1
    err = capsys.readouterr().err
    assert "the local runtime (modelops-local) is not installed" in err and "make install" in err
    assert not (tmp_path / "state").exists() and not (tmp_path / "demo").exists()
