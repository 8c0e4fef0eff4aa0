"""The charts of a deployment report, built from its history (what each chart shows, not how)."""

from __future__ import annotations

import re
from datetime import datetime

from deployguard.readmodels import DeploymentHistory, business_impact
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
    """Canary against baseline at every assessment, decision points marked."""
    canary, baseline, failing = [], [], 0
    as_percent = True
    for a in history.assessments:
        reason = next((r for r in a.verdict.reasons if r.metric_id == metric_id), None)
        canary.append((a.at, reason.canary_value if reason else None))
        baseline.append((a.at, reason.baseline_value if reason else None))
        if reason is not None:
            failing += reason.status == "fail"
            values = [v for v in (reason.canary_value, reason.baseline_value) if v is not None]
            as_percent = as_percent and "%" in reason.message and all(0 <= v <= 1 for v in values)
    fmt = percent if as_percent else number
    known = [v for _, v in canary if v is not None]
    description = (
        f"{metric_id} of the canary (new version) and the baseline (stable version) at each of "
        f"{len(history.assessments)} assessments; the canary failed on it {failing} time(s)"
        + (f"; last canary value {fmt(known[-1])}" if known else "; no value was measured (too little traffic)")
    )
    return Chart(
        chart_id=f"metric-{_CHART_ID.sub('-', metric_id)}",
        title=f"{metric_id}: canary vs baseline",
        description=description,
        series=[
            Series("canary", canary, PALETTE["canary"]),
            Series("baseline", baseline, PALETTE["baseline"], dashed=True),
        ],
        markers=decision_markers(history),
        y_label="rate" if as_percent else metric_id,
        y_format=fmt,
    )


def traffic_chart(history: DeploymentHistory) -> Chart:
    steps = [(s.at, s.weight) for s in history.traffic]
    end = history.deployment.ended_at or (history.assessments[-1].at if history.assessments else None)
    if end is not None and steps and end > steps[-1][0]:
        steps.append((end, steps[-1][1]))
    return Chart(
        chart_id="traffic",
        title="Traffic to the new version",
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
