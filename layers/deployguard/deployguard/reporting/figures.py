"""The charts of a deployment report, built from its history (what each chart shows, not how)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from deployguard.analysis.evidence import signed_pct
from deployguard.readmodels import DeploymentHistory, business_impact, wording
from deployguard.reporting.charts import PALETTE, Chart, Marker, Series, number, percent

_CHART_ID = re.compile(r"[^a-zA-Z0-9_-]")


def time_range(history: DeploymentHistory) -> tuple[datetime, datetime]:
    """Every chart's time axis: from the start to the end (or the last thing recorded)."""
    start = history.deployment.started_at
    seen = [a.at for a in history.assessments] + [s.at for s in history.traffic]
    end = max([start, *seen, *([history.deployment.ended_at] if history.deployment.ended_at else [])])
    return start, end


def decision_markers(history: DeploymentHistory) -> list[Marker]:
    """Traffic shifts, and where the deployment ended (promoted, rolled back, held)."""
    steps = history.traffic
    last_at = steps[-1].at if len(steps) > 1 else None
    markers = [Marker(at=s.at, label=f"{s.weight:.0%}") for s in steps[1:-1] if s.at != last_at]
    if len(steps) > 1:
        last = steps[-1]
        ended = history.outcome.state if history.outcome.state != "running" else "shift"
        label = {"promoted": "promoted", "rolled_back": "rolled back", "failed": "failed", "held": "held"}
        markers.append(Marker(at=last.at, label=label.get(ended, f"{last.weight:.0%}"),
                              kind="rolled_back" if ended == "failed" else ended))  # fmt: skip
    return markers


def metric_chart(history: DeploymentHistory, metric_id: str) -> Chart:
    """Canary against baseline at every canary assessment, decision points marked; the post-deployment
    looks after promotion (the version against its own last 24 hours) drawn apart, not as canary values."""
    canary, baseline, after, failing = [], [], [], 0
    canary_assessments = history.canary_assessments()
    looks = history.post_deployment_assessments()
    post_ids = {id(a) for a in looks}
    for a in history.assessments:
        reason = next((r for r in a.verdict.reasons if r.metric_id == metric_id), None)
        value = reason.canary_value if reason else None
        if id(a) in post_ids:
            after.append((a.at, value))
        else:
            canary.append((a.at, value))
            baseline.append((a.at, reason.baseline_value if reason else None))
            failing += reason is not None and reason.status == "fail"
    as_percent = is_rate(history, metric_id)
    unit = "" if as_percent else unit_of(history, metric_id)

    def fmt(v: float) -> str:
        return percent(v) if as_percent else f"{number(v)} {unit}".rstrip()

    known = [v for _, v in canary if v is not None]
    description = (
        f"{metric_id} of the canary (new version) and the baseline (stable version) at each of "
        f"{len(canary_assessments)} canary assessments; the canary failed on it {failing} time(s)"
        + (f"; last canary value {fmt(known[-1])}" if known else "; no value was measured (too little traffic)")
    )
    series = [
        Series("canary", canary, PALETTE["canary"]),
        Series("baseline", baseline, PALETTE["baseline"], dashed=True),
    ]
    measured_after = [v for _, v in after if v is not None]
    if measured_after:
        description += f"; {len(looks)} post-deployment looks after promotion, last value {fmt(measured_after[-1])}"
        series.append(Series("after promotion", after, PALETTE["traffic"], dashed=True))
    return Chart(
        chart_id=f"metric-{_CHART_ID.sub('-', metric_id)}",
        title=f"{metric_id}: canary vs baseline",
        description=description,
        series=series,
        markers=decision_markers(history),
        y_label="rate" if as_percent else (f"{metric_id} ({unit})" if unit else metric_id),
        y_format=percent if as_percent else number,
    )


_UNIT = re.compile(r"vs baseline [-+0-9.e]+ ([A-Za-z]+)")
_SHORT = {"milliseconds": "ms", "seconds": "s", "microseconds": "us", "bytes": "B", "percent": "%"}


def unit_of(history: DeploymentHistory, metric_id: str) -> str:
    """A metric's unit as its reasons state it (``... vs baseline 0.08 Seconds``), short: ``s``, ``ms``;
    "" when they state none (a rate is in percent, a count has none)."""
    for a in history.assessments:
        for r in a.verdict.reasons:
            if r.metric_id == metric_id and (m := _UNIT.search(r.message)):
                return _SHORT.get(m.group(1).lower(), m.group(1))
    return ""


def metric_value(history: DeploymentHistory, metric_id: str, value: float | None) -> str:
    """A metric's value as the report shows it everywhere: a rate in percent, else the number with its unit."""
    if value is None:
        return "-"
    if is_rate(history, metric_id):
        return percent(value)
    unit = unit_of(history, metric_id)
    return f"{number(value)} {unit}".rstrip()


def last_verdict_rows(history: DeploymentHistory) -> list[list[str]]:
    """The metrics of the canary's last verdict (not a post-deployment look): metric, status, canary,
    baseline, effect (the reasons' own formatting), and for a pass its bound at the stated confidence."""
    canary = history.canary_assessments()
    last = canary[-1].verdict.reasons if canary else []
    return [
        [
            r.metric_id,
            r.status,
            metric_value(history, r.metric_id, r.canary_value),
            metric_value(history, r.metric_id, r.baseline_value),
            "-" if r.effect is None else signed_pct(r.effect),
            "-"
            if r.canary_bound is None
            else f"{metric_value(history, r.metric_id, r.canary_bound)}"
            + ("" if r.confidence is None else f" ({r.confidence:.0%})"),
        ]
        for r in last
    ]


LAST_VERDICT_HEADERS = ["metric", "status", "canary", "baseline", "effect", "bound (confidence)"]


def period_clock(history: DeploymentHistory) -> tuple[datetime, float] | None:
    """When the canary's period 0 began and how long a period is, as its canary assessments tell it
    (:func:`deployguard.readmodels.wording.period_clock`, which the console's detail uses too)."""
    return wording.period_clock(history.canary_assessments())


def with_clock(history: DeploymentHistory, text: str) -> str:
    """A reason's "since period 5" as "since 12:15 (period 5)" where the record tells the periods' times."""
    return clock_of(history)(text)


def clock_of(history: DeploymentHistory) -> Callable[[str], str]:
    """:func:`with_clock` for many texts of one history: the period clock worked out once, not per text
    (per row it made a report of 2,000 looks quadratic, seconds to render)."""
    clock = period_clock(history)
    return lambda text: wording.on_clock(clock, text)


def is_rate(history: DeploymentHistory, metric_id: str) -> bool:
    """A rate (errors per request...): the judge states it in percent (a reason without data says no unit),
    and every value measured is a fraction. Drawn and tabled in percent."""
    reasons = [r for a in history.assessments for r in a.verdict.reasons if r.metric_id == metric_id]
    values = [v for r in reasons for v in (r.canary_value, r.baseline_value) if v is not None]
    return any("%" in r.message for r in reasons) and all(0 <= v <= 1 for v in values)


def traffic_chart(history: DeploymentHistory) -> Chart:
    steps = [(s.at, s.weight) for s in history.traffic]
    end = history.deployment.ended_at or (history.assessments[-1].at if history.assessments else None)
    if end is not None and steps and end > steps[-1][0]:
        steps.append((end, steps[-1][1]))
    return Chart(
        chart_id="traffic",
        title="Traffic to the new version"
        if not history.deployment.rollback_of
        else f"Traffic to version {history.deployment.version} (rollback of {history.deployment.rollback_of})",
        description="share of traffic on the new version over time: "
        + ", ".join(f"{s.weight:.0%} from {s.at:%H:%M}" for s in history.traffic),
        series=[Series("new version", list(steps), PALETTE["traffic"], step=True)],
        markers=decision_markers(history),
        y_label="traffic",
        y_format=lambda v: f"{v:.0%}",
        y_min=0.0,
        y_max=1.0,
    )


def health_chart(history: DeploymentHistory) -> Chart:
    scores = [(a.at, a.health_score) for a in history.assessments]
    impacts = [(a.at, None if (b := business_impact(a)) is None else b * 10) for a in history.assessments]
    known = [s for _, s in scores if s is not None]
    return Chart(
        chart_id="health",
        title="Health score and business impact",
        description=f"health score (0-100) at each assessment, from {known[0]:.0f} to {known[-1]:.0f}; "
        "business impact (0-10, drawn times 10)"
        if known
        else "no health score was recorded",
        series=[
            Series("health score", scores, PALETTE["score"]),
            Series("business impact x10", impacts, PALETTE["impact"], dashed=True),
        ],
        markers=decision_markers(history),
        y_label="score",
        y_format=lambda v: f"{v:.0f}",
        y_min=0.0,
        y_max=100.0,
    )


def report_charts(history: DeploymentHistory) -> list[Chart]:
    """Traffic, health, then one chart per metric the judge reasoned about, on one time axis."""
    charts = [traffic_chart(history), health_chart(history)] + [metric_chart(history, m) for m in history.metric_ids()]
    start, end = time_range(history)
    for chart in charts:
        chart.x_start, chart.x_end = start, end
    return charts
