"""A deployment's health report as Markdown (for a pull request, a wiki, a chat message)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from deployguard.readmodels import DeploymentHistory, business_impact, verdict_why, wording
from deployguard.reporting.figures import LAST_VERDICT_HEADERS, clock_of, last_verdict_rows


def _t(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value else "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(history: DeploymentHistory) -> str:
    d, outcome = history.deployment, history.outcome
    clock = clock_of(history)  # "since period 5" -> "since 12:15 (period 5)"
    canary = history.canary_assessments()
    last = canary[-1] if canary else None  # said once: the outcome, why it ended, the canary's last verdict
    note, why = wording.outcome_note(outcome.message, d), wording.why_ended(d, outcome.state, last)
    took = f"{d.duration_seconds / 60:.1f} min" if d.duration_seconds is not None else "running"
    lines = [
        f"# DeployGuard report: {d.service} {d.version} in {d.environment}",
        "",
        f"**Outcome: {outcome.state.replace('_', ' ')}** (exit {outcome.exit_code})" + (f": {note}" if note else ""),
        "",
        *([f"- why it ended: {clock(why)}"] if why else []),
        *(
            [f"- the canary's last verdict: {last.verdict.decision.value}: {clock(last.verdict.summary)}"]
            if last is not None
            else []
        ),
        f"- deployment `{d.deployment_id}`, driven by {d.driver}, strategy {d.strategy.value}",
        f"- started {d.started_at:%Y-%m-%d %H:%M:%S} UTC, took {took}",
        "- traffic: " + ", ".join(f"{s.weight:.0%} at {_t(s.at)}" for s in history.traffic),
        "",
        "## Verdict timeline",
        "",
    ]
    lines += _table(
        ["time", "traffic", "verdict", "health", "impact", "why"],
        [
            [_t(a.at), f"{a.canary_weight:.0%}", a.verdict.decision.value,
             "-" if a.health_score is None else f"{a.health_score:.0f}",
             "-" if (b := business_impact(a)) is None else f"{b:.1f}",
             clock(verdict_why(a.verdict))]
            for a in history.assessments
        ],
    )  # fmt: skip
    channels = Counter((n.channel, n.status.value) for n in history.notifications)
    sections: list[tuple[str, list[str], list[list[Any]]]] = [
        # a post-deployment look compares with the last 24 h, not the baseline: the canary's last verdict
        ("Metrics (last canary assessment)", LAST_VERDICT_HEADERS, last_verdict_rows(history)),
        ("Checks", ["time", "check", "status", "reason"],
         [[_t(c.at), c.name, c.status, c.reason] for c in history.checks]),
        ("Alerts", ["time", "rule", "severity", "status"],
         [[_t(a.at), a.rule, a.severity.value, a.status.value] for a in history.alerts]),
        ("Incidents", ["incident", "title", "status", "acknowledged", "resolved"],
         [[i.incident_id, i.title, i.status.value, _t(i.acknowledged_at), _t(i.resolved_at)]
          for i in history.incidents]),
        ("Remediation", ["time", "action", "actor", "reason"],
         [[_t(r.at), r.action, r.actor, clock(r.reason)] for r in history.remediation]),
        ("Notifications", ["channel", "status", "deliveries"], [[c, s, n] for (c, s), n in sorted(channels.items())]),
        ("Audit trail", ["time", "action", "actor", "reason"],
         [[_t(e.at), e.action, e.actor, clock(e.reason)] for e in history.audit]),
    ]  # fmt: skip
    for title, headers, rows in sections:
        lines += [f"## {title}", "", *_table(headers, rows)]
    return "\n".join(lines)
