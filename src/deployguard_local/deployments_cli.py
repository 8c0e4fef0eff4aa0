"""``deployguard deployments list|show|watch`` and ``deployguard status ID [--wait]``: what DeployGuard decided.

    deployguard deployments list [--service S] [--environment E] [--status ST]... [--since 7d] [--limit N]
    deployguard deployments show ID              # the timeline: traffic, verdicts, checks, alerts, incidents ...
    deployguard deployments watch ID             # follow a running deployment until it ends
    deployguard status ID [--wait] [--timeout S] # CI gate: exit 0 promoted, 1 rolled back or failed,
                                                 #          2 held for a person, 3 still running / timed out

Every command takes ``--json``, and reads ``--local`` (the demo's saved state), ``--stack NAME``,
``--table NAME`` or ``$DEPLOYMENTS_TABLE`` (:mod:`deployguard_local.options`). IDs may be a
unique prefix. Errors exit 4 with a message naming the field (2 and 3 belong to the gate).
With ``--local``, ``--wait`` and ``watch`` read once and do not wait: the saved state changes only when a command
saves it, so a deployment running in it stays running (exit 3, its message saying it was not waited).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deployguard.models import Deployment, DeploymentStatus
from deployguard.readmodels import (
    DeploymentHistory,
    DeploymentQuery,
    GateOutcome,
    TimelineItem,
    parse_since,
    timeline,
    wording,
)
from deployguard_local.commands import GATE_ERROR_EXIT, console, duration, invoke, new_app, print_json, run, when
from deployguard_local.options import Connection, Json, Resources, connected

SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": ""}
STATUS_STYLE = {"succeeded": "green", "rolled_back": "red", "failed": "bold red", "stopped": "yellow",
                "in_progress": "cyan", "pending": "cyan"}  # fmt: skip


def _target(d: Deployment) -> str:
    t = d.target
    return f"{t.function_name}:{t.alias}" if t.kind == "lambda" else f"{t.cluster}/{t.service}"


def deployment_table(items: list[Deployment]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for header in ("ID", "SERVICE", "ENV", "VERSION", "STATUS", "TRAFFIC", "STARTED", "TOOK", "WHY"):
        table.add_column(header, no_wrap=header in ("ID", "STATUS", "STARTED"), overflow="fold")
    for d in items:
        table.add_row(
            d.deployment_id, d.service, d.environment, d.version,
            Text(d.status.value, style=STATUS_STYLE.get(d.status.value, "")), f"{d.canary_weight:.0%}",
            when(d.started_at), duration(d.duration_seconds), _short(d.decision_reason or d.decision or ""),
        )  # fmt: skip
    return table


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def timeline_table(items: list[TimelineItem]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("TIME", no_wrap=True)
    table.add_column("WHAT", no_wrap=True)
    table.add_column("", overflow="fold")
    for item in items:
        style = SEVERITY_STYLE.get(item.severity, "")
        text = Text(item.title, style=style or "bold" if item.kind in ("assessment", "traffic") else style)
        if item.detail:
            text.append("\n" + item.detail, style="dim")
        table.add_row(item.at.strftime("%H:%M:%S"), item.kind, text)
    return table


def print_history(out: Console, history: DeploymentHistory, notifications: bool) -> None:
    d = history.deployment
    out.print(Text(f"{d.deployment_id}  {d.service} {d.version} -> {d.environment}", style="bold"))
    out.print(f"target {_target(d)}  driver {d.driver}  strategy {d.strategy.value}  phase {d.phase.value}")
    out.print(f"started {when(d.started_at)}  ended {when(d.ended_at)}  took {duration(d.duration_seconds)}")
    # said once each, as the report and the console say them (readmodels.wording): the outcome, why it ended (the
    # remediation's cause), the canary's last verdict
    outcome, canary = history.outcome, history.canary_assessments()
    last = canary[-1] if canary else None
    note, why = wording.outcome_note(outcome.message, d), wording.why_ended(d, outcome.state, last)
    clock = wording.period_clock(canary)
    out.print(Text(f"outcome: {outcome.state}{f': {note}' if note else ''} (exit {outcome.exit_code})",
                   style=STATUS_STYLE.get(d.status.value, "")))  # fmt: skip
    if why:
        out.print(Text(f"why it ended: {wording.on_clock(clock, why)}"))
    if last is not None:
        verdict = wording.on_clock(clock, last.verdict.summary)
        out.print(Text(f"the canary's last verdict: {last.verdict.decision.value}: {verdict}"))
    steps = "  ".join(f"{s.at:%H:%M} {s.weight:.0%}" for s in history.traffic)
    out.print(f"traffic: {steps}")
    scores = [f"{a.health_score:.0f}" for a in history.assessments if a.health_score is not None]
    counts = (
        f"{len(history.assessments)} assessments, {len(history.checks)} checks, {len(history.alerts)} alerts, "
        f"{len(history.incidents)} incidents, {len(history.remediation)} remediation steps, "
        f"{len(history.notifications)} deliveries"
    )
    out.print(counts + (f"; health score {' '.join(scores)}" if scores else ""))
    out.print(timeline_table(timeline(history, notifications=notifications)))


# ---------------------------------------------------------------------------- deployments

PROG = "deployguard"
app = new_app("deployments", "What DeployGuard decided, deployment by deployment (list, show, watch).",
              no_args_is_help=True)  # fmt: skip


@app.command("list")
@connected
def list_deployments(
    conn: Connection,
    service: Annotated[str | None, typer.Option(help="only this service")] = None,
    environment: Annotated[str | None, typer.Option(help="only this environment")] = None,
    status: Annotated[list[DeploymentStatus] | None, typer.Option(help="only these statuses (repeat)")] = None,
    since: Annotated[str | None, typer.Option(help="started since: 7d, 12h, 30m or an ISO time")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="deployments per page")] = 20,
    cursor: Annotated[str | None, typer.Option(help="the next page (printed after a full page)")] = None,
    json_: Json = False,
) -> None:  # fmt: skip
    """Deployments, newest first, with filters."""

    def action() -> int:
        with conn.resources() as src:
            query = DeploymentQuery(service=service, environment=environment, statuses=status or [], limit=limit,
                                    since=parse_since(since) if since else None, cursor=cursor)  # fmt: skip
            page = src.reader.page(query)
        if json_:
            print_json({"items": [d.model_dump(mode="json") for d in page.items], "next_cursor": page.next_cursor})
            return 0
        out = console()
        out.print(deployment_table(page.items) if page.items else "no deployments match")
        if page.next_cursor:
            out.print(f"more: --cursor {page.next_cursor}", markup=False)
        return 0

    raise typer.Exit(run(action, PROG, GATE_ERROR_EXIT))


@app.command("show")
@connected
def show(
    conn: Connection,
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    notifications: Annotated[bool, typer.Option(help="list every delivery in the timeline")] = True,
    json_: Json = False,
) -> None:  # fmt: skip
    """One deployment's timeline: traffic, verdicts and reasons, checks, alerts, incidents, remediation."""

    def action() -> int:
        with conn.resources() as src:
            history = src.reader.history(deployment_id)
        if json_:
            print_json(history.model_dump(mode="json", by_alias=True))
        else:
            print_history(console(), history, notifications)
        return 0

    raise typer.Exit(run(action, PROG, GATE_ERROR_EXIT))


@app.command("watch")
@connected
def watch(
    conn: Connection,
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    interval: Annotated[float, typer.Option(min=1, help="seconds between polls")] = 10.0,
    timeout: Annotated[float, typer.Option(min=0, help="give up after this many seconds")] = 3600.0,
    json_: Json = False,
) -> None:  # fmt: skip
    """Follow a deployment live: print each new timeline entry until it ends (exit as `status`; --local: no wait)."""

    def action() -> int:
        out = console()
        printed: set[tuple[str, str, str]] = set()
        with conn.resources() as src:

            def changed(_: Deployment) -> None:
                fresh = [
                    i for i in timeline(src.reader.history(deployment_id), notifications=False)
                    if (i.at.isoformat(), i.kind, i.title) not in printed
                ]  # fmt: skip
                for item in fresh:
                    printed.add((item.at.isoformat(), item.kind, item.title))
                    if json_:
                        sys.stdout.write(item.model_dump_json() + "\n")
                    else:
                        style = SEVERITY_STYLE.get(item.severity, "")
                        line = Text(f"{item.at:%H:%M:%S} {item.kind:<11} {item.title}", style=style)
                        out.print(line, Text(f"  {item.detail}", style="dim") if item.detail else "")

            if src.changes:
                outcome = src.reader.wait(deployment_id, timeout_seconds=timeout, poll_seconds=interval,
                                          sleep=src.sleep, on_change=changed)  # fmt: skip
            else:
                outcome = _not_waited(src, deployment_id, on_change=changed)
        return _finish(outcome, json_, out)

    raise typer.Exit(run(action, PROG, GATE_ERROR_EXIT))


NOT_WAITED = "not waited: the --local state does not change on its own (a command that acts changes it)"


def _not_waited(
    src: Resources, deployment_id: str, on_change: Callable[[Deployment], None] | None = None
) -> GateOutcome:
    """``--wait`` / ``watch`` on the --local state: one read, no waiting (nothing changes a saved state while a
    command waits on it: waiting would only pass the timeout). A deployment still running says so."""
    deployment = src.reader.get(deployment_id)
    if on_change is not None:
        on_change(deployment)
    outcome = GateOutcome.of(deployment)
    if outcome.state != "running":
        return outcome
    return outcome.model_copy(update={"message": f"{outcome.message}; {NOT_WAITED}"})


def _finish(outcome: GateOutcome, json_: bool, out: Console) -> int:
    if json_:
        sys.stdout.write(outcome.model_dump_json() + "\n")
    else:
        out.print(Text(f"{outcome.state}: {outcome.message}", style="bold"))
    return outcome.exit_code


# ---------------------------------------------------------------------------- status (the CI gate)

status_app = new_app("status", "A deployment's outcome as an exit code (CI gate).")


@status_app.command()
@connected
def status(
    conn: Connection,
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    wait: Annotated[
        bool, typer.Option("--wait", help="poll until the deployment ends (--local: no wait, the state is static)")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0, help="with --wait: give up after this many seconds")] = 1800.0,
    interval: Annotated[float, typer.Option(min=1, help="with --wait: seconds between polls")] = 10.0,
    json_: Json = False,
) -> None:  # fmt: skip
    """A deployment's outcome as an exit code: 0 promoted, 1 rolled back or failed, 2 held, 3 running/timeout."""

    def action() -> int:
        with conn.resources() as src:
            if wait and not src.changes:
                outcome = _not_waited(src, deployment_id)
            elif wait:
                outcome = src.reader.wait(deployment_id, timeout_seconds=timeout, poll_seconds=interval,
                                          sleep=src.sleep)  # fmt: skip
            else:
                outcome = src.reader.outcome(deployment_id)
        return _finish(outcome, json_, console())

    raise typer.Exit(run(action, PROG, GATE_ERROR_EXIT))


def main(argv: list[str]) -> int:
    return invoke(app, "deployguard deployments", argv, GATE_ERROR_EXIT)


def status_main(argv: list[str]) -> int:
    return invoke(status_app, "deployguard status", argv, GATE_ERROR_EXIT)
