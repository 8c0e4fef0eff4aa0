"""The CLI on a saved local state, for the `control --local` tests: run a command, name the state, look at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployguard.aws import clients
from deployguard_local import cli, local_state

BY = ["--by", "erin", "--reason", "checking the canary by hand"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def local(directory: Path) -> list[str]:
    return ["--local", "--state-dir", str(directory)]


def reopened(directory: Path) -> Any:
    """The saved state in a fresh embedded AWS (whole stack), to look at what a command left."""
    return local_state.opened(directory, whole_stack=True)


def alias(function_name: str) -> tuple[str, dict[str, float]]:
    found = clients.client("lambda").get_alias(FunctionName=function_name, Name="live")
    return found["FunctionVersion"], found.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
