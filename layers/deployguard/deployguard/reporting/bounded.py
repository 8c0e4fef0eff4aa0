"""A report that fits one HTTP answer (Lambda answers at most 6 MB, API Gateway REST 10 MB).

A canary waiting a day for approval is looked at once a minute: 2,000 looks render a report of some 6 MB
of HTML (mostly its charts) and 10 MB of JSON. The console's report route renders the whole report when it
fits :data:`REPORT_SAFE_BYTES`; otherwise a bounded one, :func:`bound`: every verdict change, every traffic
step, every alert, incident, check, remediation step, event and notification, the first and last looks in
full, and the looks in between counted by traffic step and verdict, with how many were summarised and how to
get the whole export (``deployguard report ID --format json``, or the ReportsBucket once it ended).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from deployguard.models import Model
from deployguard.readmodels import DeploymentHistory
from deployguard.reporting import ReportFormat, render

REPORT_SAFE_BYTES = 5 * 1024 * 1024  # under Lambda's 6 MB response (the body is escaped into JSON once more)
EDGES = (100, 25, 5, 0)  # looks kept in full at each end, fewer until the report fits
CHANGES = (500, 100, 0)  # then verdict changes kept in full, when even they do not fit (a verdict flapping)
BOUNDED_SCHEMA: Literal["deployguard-report-bounded/1"] = "deployguard-report-bounded/1"
NEWEST_KEPT = 200  # the last resort: the newest events, notifications and audit entries kept of each


class StepCount(Model):
    weight: float = Field(description="the canary's traffic weight at the looks")
    decision: str
    looks: int


class Summarised(Model):
    """The looks not shown in full: how many, when, and their verdicts by traffic step."""

    looks: int
    of: int = Field(description="the deployment's looks in all")
    first_at: datetime | None = None
    last_at: datetime | None = None
    by_step: list[StepCount] = Field(default_factory=list)
    audit_entries: int = Field(0, description="'assessed' audit entries of those looks, left out too")
    changes_left_out: int = Field(0, description="verdict changes among them (only when they alone do not fit)")
    older_left_out: dict[str, int] = Field(
        default_factory=dict,
        description="when even that does not fit: the oldest events, notifications and audit entries left out, "
        f"by part (the newest {NEWEST_KEPT} of each are kept)",
    )
    full_export: str = Field(description="how to get every look: the CLI has no size limit")


class BoundedReport(Model):
    """The JSON report of a history too big for one answer (``deployguard-report-bounded/1``): ``history``
    is the export (deployguard-history/1) with only the kept looks; ``summarised`` counts the others."""

    schema_: Literal["deployguard-report-bounded/1"] = Field(default=BOUNDED_SCHEMA, alias="schema")
    summarised: Summarised
    history: DeploymentHistory


def bound(history: DeploymentHistory, edge: int, changes: int | None = None) -> tuple[DeploymentHistory, Summarised]:
    """The history with only the first and last ``edge`` looks and every verdict change (or traffic weight
    change) in full, or with ``changes`` only the first and last halves of that many changes (a verdict
    flapping for a day); the rest counted. Every other part (traffic steps, checks, alerts, incidents, events,
    notifications) is kept whole."""
    looks = history.assessments
    changed = [
        i for i, a in enumerate(looks)
        if i > 0 and (a.verdict.decision != looks[i - 1].verdict.decision
                      or a.canary_weight != looks[i - 1].canary_weight)
    ]  # fmt: skip
    every_change = changed
    if changes is not None and len(changed) > changes:
        changed = changed[: changes // 2] + changed[len(changed) - changes // 2 :]
    shown = {*range(min(edge, len(looks))), *range(max(len(looks) - edge, 0), len(looks)), *changed}
    if looks:
        shown.add(0)
    kept = [a for i, a in enumerate(looks) if i in shown]
    kept_ids = {id(a) for a in kept}
    left = [a for a in looks if id(a) not in kept_ids]
    left_at = {a.at for a in left} - {a.at for a in kept}
    audit = [e for e in history.audit if not (e.action == "assessed" and e.at in left_at)]
    steps = Counter((a.canary_weight, a.verdict.decision.value) for a in left)
    deployment_id = history.deployment.deployment_id
    summarised = Summarised(
        looks=len(left), of=len(looks), first_at=left[0].at if left else None, last_at=left[-1].at if left else None,
        by_step=[StepCount(weight=w, decision=d, looks=n) for (w, d), n in steps.items()],
        audit_entries=len(history.audit) - len(audit),
        changes_left_out=len(set(every_change) - shown),
        full_export=f"deployguard report {deployment_id} --format json (every look; the CLI has no size limit)",
    )  # fmt: skip
    return history.model_copy(update={"assessments": kept, "audit": audit}), summarised


def notice_lines(s: Summarised) -> list[str]:
    """The summary of the looks left out, as sentences (the same in HTML and Markdown)."""
    when = (
        f", between {s.first_at:%Y-%m-%d %H:%M:%S} and {s.last_at:%Y-%m-%d %H:%M:%S} UTC,"
        if s.first_at and s.last_at
        else ""
    )
    shown = "every traffic step" if s.changes_left_out else "every verdict change, traffic step"
    lines = [
        f"This report is bounded: {s.looks} of the deployment's {s.of} looks{when} are summarised below, not shown "
        f"one by one ({shown}, alert and incident is shown; the charts and the audit trail show the looks kept, "
        f"{s.audit_entries} 'assessed' audit entries of the summarised looks are left out).",
    ]
    if s.changes_left_out:
        lines.append(f"{s.changes_left_out} verdict changes are among the summarised looks: too many to show.")
    if s.older_left_out:
        parts = ", ".join(f"{n} {part}" for part, n in s.older_left_out.items())
        lines.append(
            f"Too many to show even so: the oldest {parts} are left out (the newest {NEWEST_KEPT} of each kept)."
        )
    lines += [f"{c.looks} looks at {c.weight:.0%} traffic: {c.decision}" for c in s.by_step]
    lines.append(f"The full report: {s.full_export}.")
    return lines


def render_bounded(history: DeploymentHistory, fmt: ReportFormat, summarised: Summarised) -> str:
    if fmt == "json":
        return BoundedReport(summarised=summarised, history=history).model_dump_json(by_alias=True, indent=2) + "\n"
    body = render(history, fmt)
    if fmt == "md":
        title, _, rest = body.partition("\n")
        notice = "\n".join(f"> {line}  " for line in notice_lines(summarised))
        return f"{title}\n\n{notice}\n{rest}"
    from html import escape

    items = "".join(f"<li>{escape(line)}</li>" for line in notice_lines(summarised)[1:])
    notice = (
        f'<section aria-labelledby="bounded" data-bounded="{summarised.looks}"><h2 id="bounded">Summarised looks'
        f"</h2><p>{escape(notice_lines(summarised)[0])}</p><ul>{items}</ul></section>"
    )
    return body.replace("</header>", "</header>" + notice, 1)


def answer_bytes(body: str) -> int:
    """The body's size in the function's answer: escaped into its JSON (quotes, newlines, non-ASCII)."""
    return len(json.dumps(body))


def render_within(history: DeploymentHistory, fmt: ReportFormat, limit: int = REPORT_SAFE_BYTES) -> str:
    """The whole report when it fits ``limit`` bytes, else the bounded one keeping as many looks as fit."""
    body = render(history, fmt)
    if answer_bytes(body) <= limit:
        return body
    for edge, changes in [*((edge, None) for edge in EDGES), *((0, n) for n in CHANGES)]:
        kept, summarised = bound(history, edge, changes)
        body = render_bounded(kept, fmt, summarised)
        if answer_bytes(body) <= limit:
            return body
    # the last resort (events, notifications or audit entries by the ten thousand): their newest only
    kept, summarised = bound(history, 0, 0)
    parts: dict[str, list[Any]] = {
        "events": kept.events,
        "notifications": kept.notifications,
        "audit entries": kept.audit,
    }
    summarised.older_left_out = {
        part: len(items) - NEWEST_KEPT for part, items in parts.items() if len(items) > NEWEST_KEPT
    }
    kept = kept.model_copy(
        update={
            "events": kept.events[-NEWEST_KEPT:],
            "notifications": kept.notifications[-NEWEST_KEPT:],
            "audit": kept.audit[-NEWEST_KEPT:],
        }
    )
    body = render_bounded(kept, fmt, summarised)
    if answer_bytes(body) <= limit:
        return body
    raise ReportTooLarge(f"the report of {history.deployment.deployment_id} exceeds {limit} bytes even bounded")


class ReportTooLarge(Exception):
    """Even the bounded report does not fit (verdict changes or alerts by the thousand)."""
