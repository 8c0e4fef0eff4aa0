"""``deployguard incidents``: list, show, acknowledge and resolve incidents; answer approvals.

    deployguard incidents list [--all] [--limit N]
    deployguard incidents show ID
    deployguard incidents ack ID --by NAME [--notes TEXT]
    deployguard incidents resolve ID --by NAME --notes TEXT
    deployguard incidents approvals
    deployguard incidents approve APPROVAL_ID --by NAME [--notes TEXT]
    deployguard incidents reject APPROVAL_ID --by NAME [--notes TEXT]
    deployguard incidents remediate ID --by NAME [--action NAME] [--dry-run]
    deployguard incidents history [--limit N]

Every command takes ``--stack NAME`` (a deployed stack: the table and topic come from its
outputs ``DeploymentsTableName`` / ``DeploymentEventsTopicArn``), or ``--table NAME``
(and optionally ``--topic-arn``), or uses ``DEPLOYMENTS_TABLE`` / ``EVENTS_TOPIC_ARN`` from
the environment, which is how it runs inside the embedded AWS (the demo calls
:func:`main` in the process that holds it: the embedded AWS lives as long as one command).
``--json`` prints JSON instead of tables. IDs may be given as a unique prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.exceptions import DeployGuardError
from deployguard.incidents.models import Incident
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.sources import duration, stack_outputs, when

PROG = "deployguard incidents"


# --------------------------------------------------------------------------- wiring


def _settings(config_path: str | None) -> tuple[AlertingSettings, list[str]]:
    """The alerting section and the guarded functions of the configuration (defaults without one)."""
    from deployguard.config import load_config

    config = load_config(config_path)
    settings = getattr(config, "alerting", None)
    functions = [s.function_name for s in config.services.values() if s.function_name]
    return (settings if isinstance(settings, AlertingSettings) else AlertingSettings()), functions


def build_engine(args: argparse.Namespace) -> AlertEngine:
    if args.region:
        os.environ["AWS_REGION"] = args.region
        clients.reset()
    table, topic = args.table, args.topic_arn
    if args.stack:
        outputs = stack_outputs(args.stack)
        table = table or outputs.get("DeploymentsTableName")
        topic = topic or outputs.get("DeploymentEventsTopicArn")
        if not table:
            raise DeployGuardError(f"stack {args.stack} has no output DeploymentsTableName")
    table = table or os.environ.get("DEPLOYMENTS_TABLE")
    topic = topic or os.environ.get("EVENTS_TOPIC_ARN")
    if not table:
        raise DeployGuardError("name the stack (--stack NAME) or the table (--table NAME), or set DEPLOYMENTS_TABLE")
    settings, functions = _settings(args.config)
    repository = DeploymentRepository(table)
    publisher = EventPublisher(topic) if topic else None
    allowlist = TargetAllowlist(settings.remediation.allowed_targets, functions)
    local_mode = os.environ.get("DEPLOYGUARD_LOCAL") == "1"  # issue trackers on 127.0.0.1 (local mode only)
    return AlertEngine(settings, repository, publisher, allowlist=allowlist, local_mode=local_mode)


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


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


# --------------------------------------------------------------------------- commands


def _list(engine: AlertEngine, args: argparse.Namespace) -> int:
    store = engine.incident_store
    incidents = store.recent(args.limit) if args.all else store.open_incidents()
    incidents.sort(key=lambda i: i.opened_at, reverse=True)
    text = table(INCIDENT_HEADERS, _incident_rows(incidents)) if incidents else "no incidents"
    _emit(args, [i.model_dump(mode="json") for i in incidents], text)
    return 0


def _show(engine: AlertEngine, args: argparse.Namespace) -> int:
    incident = engine.incident_store.find_by_prefix(args.id)
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
        "open_approvals": [a.model_dump(mode="json") for a in approvals],
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
            table(
                ["AT", "ACTION", "ACTOR", "REASON"], [[when(e.at), e.action, e.actor, e.reason[:80]] for e in audit]
            ),
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
    _emit(args, data, "\n".join(lines))
    return 0


def _ack(engine: AlertEngine, args: argparse.Namespace) -> int:
    incident = engine.incident_store.find_by_prefix(args.id)
    done = engine.acknowledge(incident.incident_id, args.by, args.notes or "")
    text = (
        f"{done.incident_id} acknowledged by {done.acknowledged_by} after "
        f"{duration(done.time_to_acknowledge_seconds)}; escalation stopped"
    )
    _emit(args, done.model_dump(mode="json"), text)
    return 0


def _resolve(engine: AlertEngine, args: argparse.Namespace) -> int:
    incident = engine.incident_store.find_by_prefix(args.id)
    done = engine.resolve(incident.incident_id, args.by, args.notes)
    text = f"{done.incident_id} resolved by {done.resolved_by} after {duration(done.time_to_resolve_seconds)}"
    _emit(args, done.model_dump(mode="json"), text)
    return 0


def _approvals(engine: AlertEngine, args: argparse.Namespace) -> int:
    approvals = engine.remediation.store.open_approvals()
    rows = [
        [a.approval_id, a.status.value, a.incident_id, a.action, a.target, when(a.expires_at_time), a.description[:60]]
        for a in approvals
    ]
    text = table(["ID", "STATUS", "INCIDENT", "ACTION", "TARGET", "EXPIRES", "WHAT"], rows) if rows else "no approvals"
    _emit(args, [a.model_dump(mode="json") for a in approvals], text)
    return 0


def _decide(engine: AlertEngine, args: argparse.Namespace, approve: bool) -> int:
    approval = engine.decide(args.id, args.by, approve, args.notes or "")
    verb = "approved" if approve else "rejected"
    text = f"{approval.approval_id} {verb} by {args.by}: {approval.action} on {approval.target}" + (
        (" (its approval state machine runs it now)" if approval.task_token else " (runs at the next scheduled check)")
        if approve
        else ""
    )
    _emit(args, approval.model_dump(mode="json"), text)
    return 0


def _remediate(engine: AlertEngine, args: argparse.Namespace) -> int:
    incident = engine.incident_store.find_by_prefix(args.id)
    results = engine.remediate(incident.incident_id, args.by, args.action, dry_run=args.dry_run)
    rows = []
    for r in results:
        calls = "; ".join(r.plan.calls) if r.plan and r.plan.calls else "-"
        rows.append([r.action, r.target, r.outcome.value, r.message[:70], calls])
    _emit(
        args,
        [r.model_dump(mode="json") for r in results],
        table(["ACTION", "TARGET", "OUTCOME", "MESSAGE", "AWS CALLS"], rows),
    )
    return 0 if all(r.outcome.value not in ("failed", "refused") for r in results) else 1


def _history(engine: AlertEngine, args: argparse.Namespace) -> int:
    incidents = engine.incident_store.recent(args.limit)
    stats = engine.incidents.stats(args.limit)
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
        args,
        {"stats": stats.model_dump(mode="json"), "incidents": [i.model_dump(mode="json") for i in incidents]},
        text,
    )
    return 0


# --------------------------------------------------------------------------- parser


def where_parser() -> argparse.ArgumentParser:
    """The options that say which DeployGuard to talk to (shared with ``deployguard control``)."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument("--stack", help="a deployed DeployGuard stack (table and topic from its outputs)")
    where.add_argument("--table", help="the DeploymentsTable name (default: $DEPLOYMENTS_TABLE)")
    where.add_argument("--topic-arn", help="the events topic, to announce changes (default: $EVENTS_TOPIC_ARN)")
    where.add_argument("--region", help="AWS region (default: $AWS_REGION)")
    where.add_argument("--config", help="DeployGuard configuration file (default: $DEPLOYGUARD_CONFIG_FILE)")
    common.add_argument("--json", action="store_true", help="print JSON")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = where_parser()

    parser = argparse.ArgumentParser(prog=PROG, description="Incidents, escalation and remediation approvals.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", parents=[common], help="open incidents (--all: recent ones too)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_list)
    p = sub.add_parser("show", parents=[common], help="one incident: timeline, alerts, audit, approvals")
    p.add_argument("id")
    p.set_defaults(handler=_show)
    p = sub.add_parser("ack", parents=[common], help="acknowledge: stops escalation")
    p.add_argument("id")
    p.add_argument("--by", required=True)
    p.add_argument("--notes")
    p.set_defaults(handler=_ack)
    p = sub.add_parser("resolve", parents=[common], help="resolve with notes")
    p.add_argument("id")
    p.add_argument("--by", required=True)
    p.add_argument("--notes", required=True)
    p.set_defaults(handler=_resolve)
    p = sub.add_parser("approvals", parents=[common], help="remediations waiting for approval")
    p.set_defaults(handler=_approvals)
    for name, approve in (("approve", True), ("reject", False)):
        p = sub.add_parser(name, parents=[common], help=f"{name} a remediation waiting for approval")
        p.add_argument("id", help="approval id")
        p.add_argument("--by", required=True)
        p.add_argument("--notes")
        p.set_defaults(handler=lambda e, a, ok=approve: _decide(e, a, ok))
    p = sub.add_parser("remediate", parents=[common], help="run (or with --dry-run, show) remediation")
    p.add_argument("id")
    p.add_argument("--by", required=True)
    p.add_argument("--action", help="one configured action (default: the incident's plan)")
    p.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    p.set_defaults(handler=_remediate)
    p = sub.add_parser("history", parents=[common], help="response and resolution times")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(handler=_history)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine = build_engine(args)
        return int(args.handler(engine, args))
    except DeployGuardError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
