"""``deployguard report ID [--format md|html|json] [-o FILE]``: one deployment's health report.

HTML is one self-contained file (inline CSS and SVG charts, no script, no network); JSON is the
export of the deployment's whole history (schema ``deployguard-history/1``, docs/history-schema.json).
Reads ``--local``, ``--stack NAME``, ``--table NAME`` or ``$DEPLOYMENTS_TABLE`` like ``deployguard deployments``.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from deployguard.reporting import render
from deployguard_local.deployments_cli import Json, Local, Region, Stack, StateDir, TableName, invoke, run, source


class Format(StrEnum):
    md = "md"
    html = "html"
    json = "json"


app = typer.Typer(name="deployguard report", add_completion=False, pretty_exceptions_enable=False)


@app.command()
def report(
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    format_: Annotated[Format, typer.Option("--format", "-f", help="md, html or json")] = Format.md,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file (default: stdout)")] = None,
    local: Local = False, stack: Stack = None, table: TableName = None, region: Region = None,
    state_dir: StateDir = None, json_: Json = False,
) -> None:  # fmt: skip
    """A deployment's health report: verdicts and reasons, charts per metric, traffic, health, audit trail."""

    def action() -> int:
        with source(local, stack, table, region, state_dir) as src:
            history = src.reader.history(deployment_id)
        text = render(history, "json" if json_ else format_.value)
        if output is None:
            sys.stdout.write(text)
            return 0
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        done = f"report of {history.deployment.deployment_id} ({history.outcome.state}) written to {output}"
        sys.stderr.write(done + "\n")
        return 0

    raise typer.Exit(run(action))


def main(argv: list[str]) -> int:
    return invoke(app, "deployguard report", argv)
