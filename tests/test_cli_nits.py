"""Small things a user meets first: `--help` shows no `<bool>` after on/off options, `control skip-analysis`
is accepted as Argo Rollouts users type it, and Ctrl-C says "interrupted" (exit 130)."""

from __future__ import annotations

import re

import pytest
from local_control import run

from deployguard_local import cli, options


@pytest.mark.parametrize("argv", [["status", "--help"], ["deployments", "show", "--help"], ["invoke", "--help"],
                                  ["control", "skip_analysis", "--help"], ["report", "--help"]])  # fmt: skip
def test_help_shows_no_bool_metavar(argv: list[str], capsys) -> None:
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "<bool>" not in out
    flag, words = ("--verbose", "show all") if argv[0] == "invoke" else ("--json", "print JSON")
    assert re.search(rf"{flag}\s+{words}", out)  # the flag, then its help: no value between


def test_skip_analysis_is_also_skip_dash_analysis(capsys) -> None:
    code, out, _ = run(capsys, "control", "skip-analysis", "--help")
    assert code == 0 and "Emergency fix" in out
    code, out, _ = run(capsys, "control", "--help")
    assert code == 0 and "skip_analysis" in out and "skip-analysis " not in out  # listed once, as the README


def test_skip_dash_analysis_acts_as_skip_analysis(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "control", "skip-analysis", "dg-nope", "--by", "me", "--reason", "r",
                       "--local", "--state-dir", str(tmp_path / "none"))  # fmt: skip
    assert code == 2 and "No such command" not in err
    assert err.startswith("deployguard control skip_analysis: ")  # the verb's own error (no saved state here)


def test_ctrl_c_in_a_command_says_interrupted(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(options.Connection, "resources", interrupted)
    code, out, err = run(capsys, "status", "dg-x", "--local")
    assert code == 130 and out == ""
    assert err.strip() == "deployguard status: interrupted"


def test_ctrl_c_outside_a_command_says_interrupted(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def interrupted(_argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted)
    code, out, err = run(capsys, "demo")
    assert code == 130 and out == "" and err == "deployguard demo: interrupted\n"
