"""A deployment's health report as one self-contained HTML file (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

from deployguard.readmodels import DeploymentHistory, business_impact, verdict_why, wording
from deployguard.reporting.charts import render_svg
from deployguard.reporting.figures import LAST_VERDICT_HEADERS, clock_of, last_verdict_rows, report_charts

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0;background:#f4f5f7}
main{max-width:1100px;margin:0 auto;padding:24px}
header.summary{background:#fff;border-radius:8px;padding:16px 20px;border-left:6px solid var(--accent)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
section{background:#fff;border-radius:8px;padding:12px 20px 16px;margin-top:16px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0 0}
dl.facts dt{color:#555}dl.facts dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:13px}
caption{text-align:left;color:#555;padding:4px 0}
th,td{border-bottom:1px solid #e3e3e3;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f1f3;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.healthy,.promoted,.delivered,.info{background:#2a7d6f}.failing,.rolled_back,.failed,.critical,.dead_lettered{background:#b8323f}
.inconclusive,.held,.warning,.running,.suppressed{background:#9a6b00}.error{background:#c0392b}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:8px 20px}
.charts figure{margin:12px 0}.charts figcaption{font-weight:600;margin-bottom:4px}
.muted{color:#555}
"""

ACCENT = {"promoted": "#2a7d6f", "rolled_back": "#b8323f", "failed": "#b8323f", "held": "#9a6b00", "running": "#2e6f95"}


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _badge(text: str) -> str:
    return f'<span class="badge {escape(text)}">{escape(text.replace("_", " "))}</span>'


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], raw: Sequence[int] = ()) -> str:
    if not rows:
        return f'<p class="muted">{escape(caption)}: none.</p>'
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i in raw else escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(history: DeploymentHistory) -> str:
    d, outcome = history.deployment, history.outcome
    target = d.target
    target_text = (
        f"Lambda {target.function_name}:{target.alias}, version {target.stable_version} -> {target.new_version}"
        if target.kind == "lambda"
        else f"ECS {target.cluster}/{target.service}, task definition "
        f"{target.stable_task_definition or '(not recorded)'} -> {target.new_task_definition or '(not recorded)'}"
    )
    clock = clock_of(history)  # "since period 5" -> "since 12:15 (period 5)"
    # each said once: the outcome, why it ended (the remediation's cause), the canary's last verdict
    canary = history.canary_assessments()
    last = canary[-1] if canary else None
    note = wording.outcome_note(outcome.message, d)
    why = wording.why_ended(d, outcome.state, last)
    facts = [
        ("Outcome", _badge(outcome.state) + " " + escape(f"{note} (exit {outcome.exit_code})".lstrip())),
        *([("Why it ended", escape(clock(why)))] if why else []),
        *(
            [("Canary's last verdict", _badge(last.verdict.decision.value) + " " + escape(clock(last.verdict.summary)))]
            if last is not None
            else []
        ),
        ("Service", escape(f"{d.service} {d.version} in {d.environment}")),
        ("Target", escape(target_text)),
        ("Driven by", escape(f"{d.driver}, strategy {d.strategy.value}")),
        ("Started / ended", escape(f"{_t(d.started_at)} / {_t(d.ended_at)}")),
        ("Duration", escape(f"{d.duration_seconds / 60:.1f} min" if d.duration_seconds is not None else "running")),
        ("Assessments", str(len(history.assessments))),
    ]
    summary = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    verdict_rows = [
        [
            _t(a.at)[11:19], f"{a.canary_weight:.0%}", _badge(a.verdict.decision.value),
            "-" if a.health_score is None else f"{a.health_score:.0f}",
            "-" if (b := business_impact(a)) is None else f"{b:.1f}",
            escape(clock(verdict_why(a.verdict))),
        ]
        for a in history.assessments
    ]  # fmt: skip
    charts = "".join(
        f'<figure data-chart="{escape(c.chart_id)}"><figcaption>{escape(c.title)}</figcaption>{render_svg(c)}'
        f'<p class="muted">{escape(c.description)}</p></figure>'
        for c in report_charts(history)
    )
    channels = Counter((n.channel, n.status.value) for n in history.notifications)
    sections = [
        ("Verdict timeline", _table("Every assessment: traffic, verdict, health score, business impact, reasons",
                                    ["time", "traffic", "verdict", "health", "impact", "why"], verdict_rows,
                                    raw=(2, 5))),
        ("Charts", f'<div class="charts">{charts}</div>'),
        ("Metrics (last canary assessment)",
         _table("The metrics of the canary's last verdict (not a post-deployment look): canary against baseline,"
                " the change, and for a pass how bad the canary may be at the stated confidence",
                LAST_VERDICT_HEADERS, last_verdict_rows(history))),
        ("Checks", _table("Validation and CodeDeploy hook checks", ["time", "check", "status", "reason"],
                          [[_t(c.at)[11:19], c.name, c.status, c.reason] for c in history.checks])),
        ("Alerts", _table("Alerts raised", ["time", "rule", "severity", "status", "message"],
                          [[_t(a.at)[11:19], a.rule, a.severity.value, a.status.value, a.message]
                           for a in history.alerts])),
        ("Incidents", _table("Incidents opened", ["incident", "title", "severity", "status", "opened", "acknowledged",
                                                  "resolved", "by"],
                             [[i.incident_id, i.title, i.severity.value, i.status.value, _t(i.opened_at),
                               _t(i.acknowledged_at), _t(i.resolved_at), i.resolved_by or i.acknowledged_by or "-"]
                              for i in history.incidents])),
        ("Remediation", _table("Actions on the target", ["time", "action", "actor", "reason"],
                               [[_t(r.at)[11:19], r.action, r.actor, clock(r.reason)] for r in history.remediation])),
        ("Notifications", _table("Deliveries by channel", ["channel", "status", "deliveries"],
                                 [[c, s, n] for (c, s), n in sorted(channels.items())])),
        ("Audit trail", _table("Every recorded action, in order", ["time", "action", "actor", "reason"],
                               [[_t(e.at)[11:19], e.action, e.actor, clock(e.reason)] for e in history.audit])),
    ]  # fmt: skip
    body = "".join(f'<section aria-labelledby="s{i}"><h2 id="s{i}">{escape(title)}</h2>{content}</section>'
                   for i, (title, content) in enumerate(sections))  # fmt: skip
    title = f"DeployGuard report: {d.service} {d.version} ({outcome.state.replace('_', ' ')})"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><main style="--accent:{ACCENT.get(outcome.state, "#2e6f95")}">'
        f'<header class="summary"><h1>{escape(title)}</h1>'
        f'<p class="muted">Deployment {escape(d.deployment_id)}; exported {_t(history.exported_at)}; '
        f'schema {escape(history.schema_)}</p><dl class="facts">{summary}</dl></header>{body}</main></body></html>\n'
    )
