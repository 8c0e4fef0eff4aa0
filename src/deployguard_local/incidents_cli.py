"""``deployguard incidents``: list, show, acknowledge and resolve incidents; answer approvals.

    deployguard incidents list [--all] [--limit N]
    deployguard incidents show ID
    deployguard incidents ack ID --by NAME [--notes TEXT]
    deployguard incidents resolve ID --by NAME --notes TEXT
    deployguard incidents approvals
    deployguard incidents approve APPROVAL_ID --by NAME [--notes TEXT]
    deployguard incidents reject APPROVAL_ID --by NAME [--notes TEXT]
    deployguard incidents remediate ID --by NAME [--action NAME] [--dry-run] [--force]
    deployguard incidents history [--limit N]

Every command takes the connection options (:mod:`deployguard_local.options`): ``--stack NAME``
(the table and topic from the stack's outputs ``DeploymentsTableName`` /
``DeploymentEventsTopicArn``), ``--table NAME`` (and optionally ``--topic-arn``), ``--local``
(the demo's saved state: the commands that act run on its whole stack with the configuration it
was saved with, as ``control --local``, and what they change is saved back), or
``DEPLOYMENTS_TABLE`` / ``EVENTS_TOPIC_ARN`` from the environment, which is how it runs inside the
embedded AWS (the demo calls :func:`main` in the process that holds it). ``--json`` prints JSON
instead of tables. IDs may be a unique prefix. Exit codes: 0 done, 1 a remediation failed or was refused, 2 an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from deployguard.alerts.engine import AlertEngine
from deployguard.aws.events import EventPublisher
from deployguard.incidents.models import Incident
from deployguard.remediation.models import Approval
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.commands import duration, invoke, new_app, print_json, run, when
from deployguard_local.options import Connection, Json, Resources, connected

PROG = "deployguard incidents"


# --------------------------------------------------------------------------- wiring


def build_engine(resources: Resources, config_path: str | None) -> AlertEngine:
    """The alert engine of a configuration (defaults without one): its ``alerting`` section, and the
    functions and ECS services of its services allowed as remediation targets (as the functions build it)."""
    from deployguard.config import load_config

    repository = DeploymentRepository(resources.table)
    publisher = EventPublisher(resources.topic) if resources.topic else None
    local_mode = os.environ.get("DEPLOYGUARD_LOCAL") == "1"  # issue trackers on 127.0.0.1 (local mode only)
    return AlertEngine.for_config(load_config(config_path), repository, publisher, local_mode=local_mode)


def _with_engine(
    conn: Connection, verb: str, use: Callable[[AlertEngine], int], *, acts: bool = False, changes: bool = False
) -> None:
    """Run ``use`` with the alert engine of the connection. A command that ``acts`` (answers an incident or an
    approval, plans or runs a remediation) gets, with ``--local``, the whole stack of the saved state as
    ``control`` does: its topic announces the change, the application's Lambda aliases are there to plan on, and
    the configuration is the one the state was saved with (``--config`` overrides it); what it ``changes`` is
    saved back. Reading commands open the saved tables alone."""

    def action() -> int:
        with conn.resources(save=changes, whole_stack=acts) as resources:
            return use(build_engine(resources, conn.config or resources.config_file))

    raise typer.Exit(run(action, f"{PROG} {verb}"))


# --------------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _incident_rows(incidents: Sequence[Incident]) -> list[list[Any]]:
    return [
        [
            i.incident_id,
            i.status.value,
            i.severity.value,
            i.service,
            i.environment,
            i.group,
            i.alert_count,
            when(i.opened_at),
            duration(i.time_to_acknowledge_seconds),
            duration(i.time_to_resolve_seconds),
            i.acknowledged_by or i.resolved_by or "-",
        ]
        for i in incidents
    ]


INCIDENT_HEADERS = ["ID", "STATUS", "SEVERITY", "SERVICE", "ENV", "GROUP", "ALERTS", "OPENED", "TTA", "TTR", "BY"]


def _emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(text + "\n")


# --------------------------------------------------------------------------- commands


def _shown(approval: Approval) -> dict[str, Any]:
    """An approval as printed: never its Step Functions task token (whoever holds it can answer the approval
    with SendTaskSuccess, past the approver's permission and the audit trail); whether one waits is shown."""
    shown = approval.model_dump(mode="json", exclude={"task_token"})
    shown["waiting_in_state_machine"] = approval.task_token is not None
    return shown


app = new_app("incidents", "Incidents, escalation and remediation approvals.", no_args_is_help=True)
IncidentId = Annotated[str, typer.Argument(help="incident id or a unique prefix")]
By = Annotated[str, typer.Option("--by", help="who does it (kept in the incident's timeline and the audit trail)")]
Notes = Annotated[str | None, typer.Option("--notes", help="a note for the timeline")]


@app.command("list")
@connected(topic=True, config=True)
def list_incidents(
    conn: Connection,
    all_: Annotated[bool, typer.Option("--all", help="recent incidents too, not only open ones")] = False,
    limit: Annotated[int, typer.Option(min=1, help="with --all: at most this many")] = 50,
    json_: Json = False,
) -> None:
    """Open incidents (--all: recent ones too), newest first."""

    def use(engine: AlertEngine) -> int:
        store = engine.incident_store
        incidents = store.recent(limit) if all_ else store.open_incidents()
        incidents.sort(key=lambda i: i.opened_at, reverse=True)
        text = table(INCIDENT_HEADERS, _incident_rows(incidents)) if incidents else "no incidents"
        _emit(json_, [i.model_dump(mode="json") for i in incidents], text)
        return 0

    _with_engine(conn, "list", use)


@app.command("show")
@connected(topic=True, config=True)
def show(conn: Connection, incident_id: IncidentId, json_: Json = False) -> None:
    """One incident: timeline, alerts, audit trail, open approvals."""
    _with_engine(conn, "show", lambda engine: _show(engine, incident_id, json_))


@app.command("ack")
@connected(topic=True, config=True)
def ack(conn: Connection, incident_id: IncidentId, by: By, notes: Notes = None, json_: Json = False) -> None:
    """Acknowledge an incident: stops its escalation."""

    def use(engine: AlertEngine) -> int:
        incident = engine.incident_store.find_by_prefix(incident_id)
        done = engine.acknowledge(incident.incident_id, by, notes or "")
        text = (
            f"{done.incident_id} acknowledged by {done.acknowledged_by} after "
            f"{duration(done.time_to_acknowledge_seconds)}; escalation stopped"
        )
        _emit(json_, done.model_dump(mode="json"), text)
        return 0

    _with_engine(conn, "ack", use, acts=True, changes=True)


@app.command("resolve")
@connected(topic=True, config=True)
def resolve(
    conn: Connection,
    incident_id: IncidentId,
    by: By,
    notes: Annotated[str, typer.Option("--notes", help="how it was resolved (kept in the timeline)")],
    json_: Json = False,
) -> None:
    """Resolve an incident, with notes."""

    def use(engine: AlertEngine) -> int:
        incident = engine.incident_store.find_by_prefix(incident_id)
        done = engine.resolve(incident.incident_id, by, notes)
        text = f"{done.incident_id} resolved by {done.resolved_by} after {duration(done.time_to_resolve_seconds)}"
        _emit(json_, done.model_dump(mode="json"), text)
        return 0

    _with_engine(conn, "resolve", use, acts=True, changes=True)


@app.command("approvals")
@connected(topic=True, config=True)
def approvals(conn: Connection, json_: Json = False) -> None:
    """Remediations waiting for a person's approval."""

    def use(engine: AlertEngine) -> int:
        waiting = engine.remediation.store.open_approvals()
        rows = [
            [a.approval_id, a.status.value, a.incident_id, a.action, a.target, when(a.expires_at_time),
             a.description[:60]]
            for a in waiting
        ]  # fmt: skip
        headers = ["ID", "STATUS", "INCIDENT", "ACTION", "TARGET", "EXPIRES", "WHAT"]
        _emit(json_, [_shown(a) for a in waiting], table(headers, rows) if rows else "no approvals")
        return 0

    _with_engine(conn, "approvals", use)


ApprovalId = Annotated[str, typer.Argument(help="approval id (see `deployguard incidents approvals`)")]


def _decide(conn: Connection, approval_id: str, by: str, notes: str | None, json_: bool, approve: bool) -> None:
    def use(engine: AlertEngine) -> int:
        approval = engine.decide(approval_id, by, approve, notes or "")
        verb = "approved" if approve else "rejected"
        text = f"{approval.approval_id} {verb} by {by}: {approval.action} on {approval.target}" + (
            (" (its approval state machine runs it now)" if approval.task_token
             else " (runs at the next scheduled check)") if approve else ""
        )  # fmt: skip
        _emit(json_, _shown(approval), text)
        return 0

    _with_engine(conn, "approve" if approve else "reject", use, acts=True, changes=True)


@app.command("approve")
@connected(topic=True, config=True)
def approve(conn: Connection, approval_id: ApprovalId, by: By, notes: Notes = None, json_: Json = False) -> None:
    """Approve a remediation waiting for approval (it runs)."""
    _decide(conn, approval_id, by, notes, json_, approve=True)


@app.command("reject")
@connected(topic=True, config=True)
def reject(conn: Connection, approval_id: ApprovalId, by: By, notes: Notes = None, json_: Json = False) -> None:
    """Reject a remediation waiting for approval (it does not run)."""
    _decide(conn, approval_id, by, notes, json_, approve=False)


@app.command("remediate")
@connected(topic=True, config=True)
def remediate(
    conn: Connection,
    incident_id: IncidentId,
    by: By,
    action: Annotated[str | None, typer.Option(help="one configured action (default: the incident's plan)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would happen, change nothing")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="run it even if the incident is resolved or a newer deployment started (it may undo it)"
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Run the incident's remediation now, on its latest deployment (--dry-run: show the AWS calls it would make).

    Refused (exit 1) when the incident is resolved or a newer deployment of the service started since: rolling
    back would undo that release; --force runs it all the same. Exit 1 if a step fails or is refused."""

    def use(engine: AlertEngine) -> int:
        incident = engine.incident_store.find_by_prefix(incident_id)
        if conn.local:  # the saved state keeps no CodeDeploy deployments: one its record says has ended is made
            from deployguard_local import local_state  # again, so a rollback (StopDeployment) plans on it, as on AWS

            deployment = engine.repository.find_deployment(incident.latest_deployment_id or incident.deployment_id)
            if deployment is not None:
                local_state.restore_codedeploy(deployment)
        results = engine.remediate(incident.incident_id, by, action, dry_run=dry_run, force=force)
        rows = []
        for r in results:
            calls = "; ".join(r.plan.calls) if r.plan and r.plan.calls else "-"
            rows.append([r.action, r.target, r.outcome.value, r.message[:70], calls])
        headers = ["ACTION", "TARGET", "OUTCOME", "MESSAGE", "AWS CALLS"]
        _emit(json_, [r.model_dump(mode="json") for r in results], table(headers, rows))
        return 0 if all(r.outcome.value not in ("failed", "refused") for r in results) else 1

    _with_engine(conn, "remediate", use, acts=True, changes=not dry_run)


@app.command("history")
@connected(topic=True, config=True)
def history(
    conn: Connection,
    limit: Annotated[int, typer.Option(min=1, help="the most recent incidents counted")] = 200,
    json_: Json = False,
) -> None:
    """Incidents with their times to acknowledge and to resolve (mean and max)."""
    _with_engine(conn, "history", lambda engine: _history(engine, limit, json_))


def _show(engine: AlertEngine, incident_id: str, json_: bool) -> int:
    incident = engine.incident_store.find_by_prefix(incident_id)
    alerts = [a for a in engine.incident_store.alerts(incident.deployment_id) if a.incident_id == incident.incident_id]
    audit = [
        e
        for e in engine.repository.audit_trail(incident.deployment_id)
        if e.details.get("incident_id") == incident.incident_id
    ]
    approvals = [a for a in engine.remediation.store.open_approvals() if a.incident_id == incident.incident_id]
    data = {
        "incident": incident.model_dump(mode="json"),
        "alerts": [a.model_dump(mode="json") for a in alerts],
        "audit": [e.model_dump(mode="json") for e in audit],
        "open_approvals": [_shown(a) for a in approvals],
    }
    esc = incident.escalation
    lines = [
        f"Incident   {incident.incident_id}  [{incident.status.value}]  {incident.severity.value}",
        f"Title      {incident.title}",
        f"Deployment {incident.deployment_id}  ({incident.service} {incident.version}, {incident.environment})",
        f"Rules      {', '.join(incident.rules)}   alerts: {incident.alert_count}",
        f"Opened     {when(incident.opened_at)}",
        f"Acked      {when(incident.acknowledged_at)} by {incident.acknowledged_by or '-'}"
        f"  (time to acknowledge {duration(incident.time_to_acknowledge_seconds)})",
        f"Resolved   {when(incident.resolved_at)} by {incident.resolved_by or '-'}"
        f"  (time to resolve {duration(incident.time_to_resolve_seconds)})"
        + (f"  notes: {incident.resolution_notes}" if incident.resolution_notes else ""),
        f"Escalation {esc.policy or 'none'}: {esc.pages} page(s), next "
        f"{when(esc.next_at) if esc.next_at else '-'}" + (f" ({esc.stopped_reason})" if esc.stopped_reason else ""),
        "",
        "Timeline",
        table(
            ["AT", "ACTION", "BY", "NOTES"],
            [[when(t.at), t.action, t.actor, t.notes[:80]] for t in incident.timeline],
        ),
    ]
    if alerts:
        lines += [
            "",
            "Alerts",
            table(
                ["AT", "RULE", "SEVERITY", "STATUS", "MESSAGE"],
                [[when(a.at), a.rule, a.severity.value, a.status.value, a.message[:70]] for a in alerts],
            ),
        ]
    if audit:
        lines += [
            "",
            "Audit",
            table(["AT", "ACTION", "ACTOR", "REASON"], [[when(e.at), e.action, e.actor, e.reason[:80]] for e in audit]),
        ]
    if approvals:
        lines += [
            "",
            "Open approvals",
            table(
                ["ID", "ACTION", "TARGET", "STATUS", "WHAT"],
                [[a.approval_id, a.action, a.target, a.status.value, a.description[:60]] for a in approvals],
            ),
        ]
    _emit(json_, data, "\n".join(lines))
    return 0


def _history(engine: AlertEngine, limit: int, json_: bool) -> int:
    incidents = engine.incident_store.recent(limit)
    stats = engine.incidents.stats(limit)
    text = "\n".join(
        [
            f"{stats.incidents} incidents: {stats.open} open, {stats.acknowledged} acknowledged, "
            f"{stats.resolved} resolved ({stats.auto_resolved} automatically)",
            f"time to acknowledge: mean {duration(stats.mean_time_to_acknowledge_seconds)}, "
            f"max {duration(stats.max_time_to_acknowledge_seconds)}",
            f"time to resolve:     mean {duration(stats.mean_time_to_resolve_seconds)}, "
            f"max {duration(stats.max_time_to_resolve_seconds)}",
            "",
            table(INCIDENT_HEADERS, _incident_rows(incidents)) if incidents else "no incidents",
        ]
    )
    _emit(
        json_,
        {"stats": stats.model_dump(mode="json"), "incidents": [i.model_dump(mode="json") for i in incidents]},
        text,
    )
    return 0


def main(argv: list[str]) -> int:
    return invoke(app, PROG, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
