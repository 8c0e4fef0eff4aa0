"""``deployguard report ID [--format md|markdown|html|json] [-o FILE]``: one deployment's health report.

HTML is one self-contained file (inline CSS and SVG charts, no script, no network); JSON is the
export of the deployment's whole history (schema ``deployguard-history/1``, docs/history-schema.json).
Reads ``--local``, ``--stack NAME``, ``--table NAME`` or ``$DEPLOYMENTS_TABLE`` like ``deployguard deployments``.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from deployguard.exceptions import DeployGuardError
from deployguard.reporting import render
from deployguard_local.commands import GATE_ERROR_EXIT, invoke, new_app, run
from deployguard_local.options import Connection, Json, connected


class Format(StrEnum):
    md = "md"
    markdown = "markdown"  # an alias of md
    html = "html"
    json = "json"


app = new_app("report", "One deployment's health report (md, html, json).")


@app.command()
@connected
def report(
    conn: Connection,
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    format_: Annotated[
        Format | None, typer.Option("--format", "-f", help="md (or markdown), html or json (default: md)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file (default: stdout)")] = None,
    json_: Json = False,
) -> None:  # fmt: skip
    """A deployment's health report: verdicts and reasons, charts per metric, traffic, health, audit trail."""

    if json_ and format_ not in (None, Format.json):  # --json alone means json; with another format, refused
        raise typer.BadParameter(
            f"--json and --format {format_.value} ask for two formats: give one", param_hint="--json"
        )
    fmt: Literal["md", "html", "json"] = (
        "json" if json_ or format_ is Format.json else "html" if format_ is Format.html else "md"
    )

    def action() -> int:
        with conn.resources() as src:
            history = src.reader.history(deployment_id)
        text = render(history, fmt)
        if output is None:
            sys.stdout.write(text)
            return 0
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DeployGuardError(f"cannot write {output}: {exc.strerror or exc}") from None
        done = f"report of {history.deployment.deployment_id} ({history.outcome.state}) written to {output}"
        sys.stderr.write(done + "\n")
        return 0

    raise typer.Exit(run(action, "deployguard report", GATE_ERROR_EXIT))


def main(argv: list[str]) -> int:
    return invoke(app, "deployguard report", argv, GATE_ERROR_EXIT)
