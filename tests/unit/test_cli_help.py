"""Every command of the one ``deployguard`` app, and every option and argument, has help text;
every command that talks to DeployGuard takes the same connection options."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from deployguard_local import cli

CONNECTION = {"--local", "--stack", "--table", "--region", "--endpoint-url", "--state-dir"}
# commands that do not talk to a DeployGuard stack's state: files, the embedded AWS, benchmarks
OFFLINE = {"demo", "invoke", "replay", "config validate", "config schema", "alerts fields", "serve", "bench scale",
           "version"}  # fmt: skip


def _walk(command: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, command)]
    group = getattr(command, "commands", None)
    if group is not None:
        ctx = typer.Context(command)
        for name in command.list_commands(ctx):
            found += _walk(command.get_command(ctx, name), f"{path} {name}".strip())
    return found


COMMANDS = _walk(typer.main.get_command(cli.app))
LEAVES = [(path, c) for path, c in COMMANDS if getattr(c, "commands", None) is None]


def test_the_app_holds_every_command() -> None:
    names = {path for path, _ in LEAVES}
    assert {"demo", "invoke", "replay", "config validate", "deployments list", "status", "report", "summary",
            "incidents ack", "incidents approve", "notifications retry", "notifications list", "control promote",
            "control abort", "control rollback", "alerts fields", "serve", "bench scale"} <= names  # fmt: skip


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p or "deployguard" for p, _ in COMMANDS])
def test_every_command_option_and_argument_has_help(path: str, command: Any) -> None:
    assert (command.help or "").strip(), f"deployguard {path}: no help"
    missing = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
    assert missing == [], f"deployguard {path}: no help for {missing}"


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[p for p, _ in LEAVES])
def test_commands_with_state_take_the_connection_options(path: str, command: Any) -> None:
    options = {o for p in command.params for o in getattr(p, "opts", [])}
    if path in OFFLINE:
        return
    assert options >= CONNECTION, f"deployguard {path} lacks {sorted(CONNECTION - options)}"


# what each canary verb does, in the README's verb table and in `deployguard control VERB --help` alike
VERB_MEANINGS = {
    "promote": "the next assessment that is not failing promotes to 100%",
    "abort": "100% stable at once",
    "pause": "a failing verdict still rolls back",
    "retry": "starts its step again",
    "skip_analysis": "verdicts are recorded but no longer roll back",
    "approve": "waiting before 100%",
}


@pytest.mark.parametrize(("verb", "meaning"), VERB_MEANINGS.items())
def test_control_help_says_what_the_verb_does(verb: str, meaning: str) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{verb}`"))
    assert meaning in row.lower()
    [command] = [c for path, c in LEAVES if path == f"control {verb}"]
    assert meaning in " ".join((command.help or "").lower().split())
