"""``deployguard summary [--since 7d]``: what DeployGuard decided in a period, against the period before.

Deployments by service, environment and strategy; success and change-failure rates; time to
detect and to roll back; incidents with time to acknowledge and resolve; false-rollback
candidates; the noisiest alert rules and channels. ``--json`` prints ``deployguard-summary/1``,
``--markdown`` the text the daily and weekly summaries write to the ReportsBucket.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from deployguard import clock
from deployguard.readmodels import SummaryBuilder, parse_since
from deployguard.readmodels.summary import GroupCount
from deployguard.reporting.summary import figure_rows, render_summary_markdown
from deployguard_local.commands import GATE_ERROR_EXIT, console, invoke, new_app, run
from deployguard_local.options import Connection, Json, connected

app = new_app("summary", "What DeployGuard decided in a period, against the period before.")


def _groups(title: str, groups: list[GroupCount]) -> Table:
    table = Table(title=f"by {title}", show_edge=False, header_style="bold", title_justify="left")
    for header in (title, "deployments", "succeeded", "failed"):
        table.add_column(header)
    for g in groups:
        table.add_row(g.key, str(g.deployments), str(g.succeeded), str(g.failed))
    return table


@app.command()
@connected
def summary(
    conn: Connection,
    since: Annotated[str, typer.Option(help="the period: 7d, 24h, 2w or an ISO time")] = "7d",
    markdown: Annotated[bool, typer.Option("--markdown", help="print Markdown (as the scheduled summaries)")] = False,
    json_: Json = False,
) -> None:  # fmt: skip
    """Summary of a period against the one before it."""

    def action() -> int:
        with conn.resources() as src:
            end = clock.now()  # local state: the demo's simulated time
            built = SummaryBuilder(src.reader).build(parse_since(since, end), end, f"since {since}")
        if json_:
            sys.stdout.write(built.model_dump_json(by_alias=True, indent=2) + "\n")
            return 0
        if markdown:
            sys.stdout.write(render_summary_markdown(built))
            return 0
        out = console()
        cur = built.current
        span = f"{cur.start:%Y-%m-%d %H:%M} to {cur.end:%Y-%m-%d %H:%M} UTC"
        out.print(f"[bold]DeployGuard summary {built.period}[/bold]: {span}")
        figures = Table(show_edge=False, show_header=False)
        for name, value in figure_rows(cur, built.previous):
            figures.add_row(name, value)
        out.print(figures)
        for title, groups in (("service", built.by_service), ("environment", built.by_environment),
                              ("strategy", built.by_strategy)):  # fmt: skip
            out.print(_groups(title, groups))
        inc = built.incidents
        out.print(f"incidents: {inc.incidents} ({inc.open} open, {inc.resolved} resolved)")
        for c in built.false_rollback_candidates:
            out.print(f"false-rollback candidate: {c.service} {c.version}: {c.rolled_back} then {c.redeployed}")
        out.print("noisiest alert rules: " + (", ".join(f"{r} ({n})" for r, n in built.noisiest_rules) or "none"))
        out.print("busiest channels: " + (", ".join(f"{c} ({n})" for c, n in built.noisiest_channels) or "none"))
        return 0

    raise typer.Exit(run(action, "deployguard summary", GATE_ERROR_EXIT))


def main(argv: list[str]) -> int:
    return invoke(app, "deployguard summary", argv, GATE_ERROR_EXIT)
