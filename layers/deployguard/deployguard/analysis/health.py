"""Health assessment of one moment: metric catalogue, thresholds, status, score.

Each metric of the catalogue has a type (application, infrastructure, business,
performance, security), a direction and warning/critical thresholds. A reading is
healthy, warning, critical, or unknown (no value). The health score (0-100) is the
type-weighted mean of the per-metric scores over the types that have readings; the
overall status is the worse of the score's band and the worst reading (a critical
reading in an application, infrastructure or business metric is critical overall).
All of it is configurable through HealthSettings.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from deployguard.analysis.settings import HealthSettings, MetricThreshold
from deployguard.models import CanaryWindow, Direction, HealthStatus, MetricKind, MetricType, MetricWindow


class MetricHealth(BaseModel):
    id: str
    metric_type: MetricType
    value: float | None
    status: HealthStatus
    score: float | None = Field(default=None, ge=0, le=100)
    warning: float
    critical: float
    message: str


class HealthReport(BaseModel):
    overall_status: HealthStatus
    score: float | None = Field(default=None, ge=0, le=100, description="0-100, None when nothing is known")
    business_impact: float = Field(ge=0, le=10)
    confidence: float = Field(ge=0, le=1, description="share of the type weights covered by readings")
    metrics: list[MetricHealth]
    recommendations: list[str]


def _metric_score(value: float, t: MetricThreshold) -> float:
    """100 up to the warning threshold, 50 at critical, 0 at twice the distance past critical."""
    sign = 1.0 if t.direction == Direction.INCREASE_IS_BAD else -1.0
    v, w, c = sign * value, sign * t.warning, sign * t.critical
    if v <= w:
        return 100.0
    span = c - w
    if span <= 0:
        return 0.0 if v > c else 100.0
    if v <= c:
        return 100.0 - 50.0 * (v - w) / span
    return max(0.0, 50.0 - 50.0 * (v - c) / span)


def _status_of(value: float | None, t: MetricThreshold) -> HealthStatus:
    if value is None or not math.isfinite(value):
        return HealthStatus.UNKNOWN
    sign = 1.0 if t.direction == Direction.INCREASE_IS_BAD else -1.0
    if sign * value >= sign * t.critical:
        return HealthStatus.CRITICAL
    if sign * value >= sign * t.warning:
        return HealthStatus.WARNING
    return HealthStatus.HEALTHY


_ADVICE = {
    "error_rate": "look at the new version's errors and logs; roll back if it is the cause",
    "latency_p99_ms": "check slow dependencies, cold starts and memory size; roll back if the new version is slower",
    "cpu_utilization": "scale out or up, or find the hot path",
    "memory_utilization": "raise memory or look for a leak before it runs out",
    "disk_utilization": "free disk space or extend the volume",
    "conversion_rate_drop": "check the checkout path of the new version with the product owner",
    "revenue_impact_per_hour": "treat it as an incident: revenue is being lost",
    "auth_failure_rate": "check for credential problems or an attack",
}


def _fmt(value: float, unit: str) -> str:
    number = f"{value:.0f}" if 1e3 <= abs(value) < 1e15 else f"{value:.3g}"  # 1433ms, not 1.43e+03ms
    return f"{number}{unit}" if unit in ("%", "ms", "/h") else f"{number} {unit}".rstrip()


def assess_health(values: dict[str, float | None], settings: HealthSettings | None = None) -> HealthReport:
    """Status, score, business impact and advice from current readings by metric id.

    Readings for ids outside the catalogue are reported as unknown-typed (not scored);
    catalogue metrics without a reading are unknown.
    """
    settings = settings or HealthSettings()
    thresholds = settings.thresholds()
    metrics: list[MetricHealth] = []
    recommendations: list[str] = []
    by_type: dict[MetricType, list[float]] = {}
    for mid, t in thresholds.items():
        raw = values.get(mid)
        value = None if raw is None or not math.isfinite(raw) else float(raw)
        status = _status_of(value, t)
        metric_score = None if value is None else round(_metric_score(value, t), 2)
        if value is None:
            message = f"{t.title}: no reading"
        else:
            message = (
                f"{t.title} {_fmt(value, t.unit)} ({status.value}; warning at {_fmt(t.warning, t.unit)}, "
                f"critical at {_fmt(t.critical, t.unit)})"
            )
            by_type.setdefault(t.metric_type, []).append(metric_score or 0.0)
        metrics.append(
            MetricHealth(
                id=mid,
                metric_type=t.metric_type,
                value=value,
                status=status,
                score=metric_score,
                warning=t.warning,
                critical=t.critical,
                message=message,
            )
        )
        if status in (HealthStatus.WARNING, HealthStatus.CRITICAL) and value is not None:
            advice = _ADVICE.get(mid, "look at what changed")
            level = "critical" if status == HealthStatus.CRITICAL else "above the warning level"
            recommendations.append(f"{t.title.capitalize()} is {_fmt(value, t.unit)}, {level}: {advice}.")

    total_weight = sum(settings.type_weights.values())
    known_weight = sum(settings.type_weights.get(k, 0.0) for k in by_type)
    score: float | None = None
    if by_type and known_weight > 0:
        score = sum(settings.type_weights.get(k, 0.0) * (sum(v) / len(v)) for k, v in by_type.items()) / known_weight
        score = round(min(100.0, max(0.0, score)), 2)
    elif by_type:  # readings only of types weighted 0
        score = round(sum(sum(v) / len(v) for v in by_type.values()) / len(by_type), 2)
    confidence = round(known_weight / total_weight, 4) if total_weight else 0.0

    statuses = [m.status for m in metrics if m.status != HealthStatus.UNKNOWN]
    if not statuses or score is None:
        overall = HealthStatus.UNKNOWN
    else:
        overall = HealthStatus.HEALTHY
        if score < settings.critical_score:
            overall = HealthStatus.CRITICAL
        elif score < settings.warning_score:
            overall = HealthStatus.WARNING
        for m in metrics:
            if m.status == HealthStatus.CRITICAL:
                heavy = m.metric_type in (MetricType.APPLICATION, MetricType.INFRASTRUCTURE, MetricType.BUSINESS)
                overall = HealthStatus.CRITICAL if heavy else max(overall, HealthStatus.WARNING, key=_rank)
            elif m.status == HealthStatus.WARNING:
                overall = max(overall, HealthStatus.WARNING, key=_rank)

    impact = _business_impact(metrics)
    if overall == HealthStatus.UNKNOWN:
        recommendations.append("No readings to judge health on: check that the metrics are published.")
    elif not recommendations:
        recommendations.append("All readings are within their thresholds: nothing to do.")
    elif overall == HealthStatus.CRITICAL:
        recommendations.insert(0, "Health is critical: stop the rollout and consider rolling back now.")
    return HealthReport(
        overall_status=overall,
        score=score,
        business_impact=impact,
        confidence=confidence,
        metrics=metrics,
        recommendations=recommendations,
    )


def _rank(status: HealthStatus) -> int:
    return [HealthStatus.UNKNOWN, HealthStatus.HEALTHY, HealthStatus.WARNING, HealthStatus.CRITICAL].index(status)


def _business_impact(metrics: list[MetricHealth]) -> float:
    """0-10: 5 at a business metric's critical threshold, 10 at twice it; customer-facing
    errors count half as much."""
    impact = 0.0
    for m in metrics:
        if m.value is None or m.critical == 0:
            continue
        if m.metric_type == MetricType.BUSINESS:
            impact = max(impact, 5.0 * max(0.0, m.value) / abs(m.critical))
        elif m.id == "error_rate":
            impact = max(impact, 2.5 * max(0.0, m.value) / abs(m.critical))
    return round(min(10.0, impact), 2)


def _recent(values: list[float | None], periods: int) -> list[tuple[int, float]]:
    got = [(i, v) for i, v in enumerate(values) if v is not None]
    return got[-periods:]


def health_values_from_window(
    window: CanaryWindow, recent_periods: int = 5, min_count: float = 200.0
) -> dict[str, float | None]:
    """The canary's current readings from a CanaryWindow (its last ``recent_periods`` periods).

    A rate or a drop needs ``min_count`` requests behind it (on both versions for a drop):
    below that it is sampling noise, not a reading, and stays unknown (None).

    error_rate (% of invocations), latency_p99_ms (median of the recent per-period
    p99), conversion_rate_drop (% below the baseline's rate in the same periods), and
    any gauge (e.g. cpu_utilization) by its id, as the median of its recent values.
    """
    from deployguard.analysis.settings import resolve_spec

    ids = {m.spec.id for m in window.metrics}
    metrics: dict[str, MetricWindow] = {}
    for m in window.metrics:
        metrics[m.spec.id] = MetricWindow.model_construct(spec=resolve_spec(m.spec, ids), baseline=m.baseline,
                                                          canary=m.canary)  # fmt: skip
    out: dict[str, float | None] = {"error_rate": None, "latency_p99_ms": None, "conversion_rate_drop": None}
    n = window.periods
    start = max(0, n - recent_periods)
    for m in metrics.values():
        spec = m.spec
        if spec.kind == MetricKind.RATE_COUNT and spec.relative_to in metrics:
            den = metrics[spec.relative_to]
            kc = sum(v or 0.0 for v in m.canary[start:n])
            nc = sum(v or 0.0 for v in den.canary[start:n])
            kb = sum(v or 0.0 for v in m.baseline[start:n])
            nb = sum(v or 0.0 for v in den.baseline[start:n])
            if spec.direction == Direction.INCREASE_IS_BAD:
                out[f"{spec.id}_rate"] = 100.0 * kc / nc if nc >= min_count else None
            else:
                drop = None
                if nc >= min_count and nb >= min_count and kb > 0:
                    drop = max(0.0, 100.0 * (1.0 - (kc / nc) / (kb / nb)))
                out[f"{spec.id}_drop"] = drop
                if out["conversion_rate_drop"] is None:
                    out["conversion_rate_drop"] = drop
        elif spec.kind == MetricKind.LATENCY:
            recent = [v for _, v in _recent(m.canary[:n], recent_periods)]
            if recent and spec.stat.lower() == "p99" and out["latency_p99_ms"] is None:
                recent.sort()
                value = recent[len(recent) // 2]
                out["latency_p99_ms"] = value * 1000.0 if (spec.unit or "").lower() == "seconds" else value
        elif spec.kind == MetricKind.GAUGE:
            recent = sorted(v for _, v in _recent(m.canary[:n], recent_periods))
            out[spec.id] = recent[len(recent) // 2] if recent else None
    if "errors_rate" in out:
        out["error_rate"] = out.pop("errors_rate")
    return out
