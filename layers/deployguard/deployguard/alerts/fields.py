"""The fields alert rules may use, and how their values are gathered.

A rule naming a field that is neither here nor declared in ``alerting.custom_fields``
is refused when the configuration loads.

Values come from, in order (later wins):
1. the deployment (``environment``, ``service``, ``elapsed_minutes`` ...);
2. the assessment (``health_score``, ``decision``, ``failing_metrics`` ...), and the
   canary/baseline values of each metric the judge reported (``verdict.reasons``);
3. ``assessment.details["metrics"]`` / ``["baseline"]`` when they are mappings;
4. the ``metric_values`` / ``baseline_values`` passed to the engine;
5. the event (``event``, ``event_severity``) for event-driven evaluation.
Derived fields (``error_rate`` from ``errors``/``invocations``, ``conversion_rate_drop``)
are filled in when absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deployguard.alerts.expression import Unit
from deployguard.models import Assessment, Deployment, DeploymentEvent

BUILTIN_FIELDS: dict[str, Unit] = {
    # deployment
    "environment": Unit.TEXT,
    "service": Unit.TEXT,
    "deployment_status": Unit.TEXT,
    "phase": Unit.TEXT,
    "driver": Unit.TEXT,
    "strategy": Unit.TEXT,
    "target_kind": Unit.TEXT,
    "elapsed_minutes": Unit.NUMBER,
    "duration_ratio": Unit.NUMBER,  # elapsed / expected duration
    # assessment
    "health_score": Unit.SCORE,
    "health_status": Unit.TEXT,
    "decision": Unit.TEXT,
    "canary_weight": Unit.RATIO,
    "failing_metrics": Unit.COUNT,
    # event
    "event": Unit.TEXT,
    "event_severity": Unit.TEXT,
    # application
    "error_rate": Unit.RATIO,
    "errors": Unit.COUNT,
    "invocations": Unit.COUNT,
    "throttles": Unit.COUNT,
    "throttle_rate": Unit.RATIO,
    "timeout_rate": Unit.RATIO,
    "availability": Unit.RATIO,
    "cold_starts": Unit.COUNT,
    "concurrent_executions": Unit.COUNT,
    # performance
    "response_time_p50": Unit.MILLISECONDS,
    "response_time_p90": Unit.MILLISECONDS,
    "response_time_p95": Unit.MILLISECONDS,
    "response_time_p99": Unit.MILLISECONDS,
    "response_time_avg": Unit.MILLISECONDS,
    "throughput": Unit.NUMBER,  # requests per minute
    # infrastructure
    "cpu_utilization": Unit.PERCENT,
    "memory_utilization": Unit.PERCENT,
    # business
    "conversion_rate": Unit.RATIO,
    "conversion_rate_drop": Unit.RATIO,
    "revenue_per_minute": Unit.NUMBER,
    "orders_per_minute": Unit.NUMBER,
    # security (custom metrics)
    "failed_authentications": Unit.COUNT,
    "security_violations": Unit.COUNT,
}

Values = dict[str, float | str | None]


@dataclass
class EvaluationContext:
    """Everything one evaluation of the rules sees."""

    values: Values = field(default_factory=dict)
    baseline: dict[str, float | None] = field(default_factory=dict)
    deployment: Deployment | None = None
    assessment: Assessment | None = None
    event: DeploymentEvent | None = None

    @property
    def environment(self) -> str | None:
        value = self.values.get("environment")
        return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value == value else None
    return None


def _merge_numbers(target: dict[str, Any], source: Any) -> None:
    if isinstance(source, Mapping):
        for key, value in source.items():
            number = _number(value)
            if isinstance(key, str) and number is not None:
                target[key] = number


def build_context(
    *,
    now: datetime,
    deployment: Deployment | None = None,
    assessment: Assessment | None = None,
    event: DeploymentEvent | None = None,
    metric_values: Mapping[str, float | None] | None = None,
    baseline_values: Mapping[str, float | None] | None = None,
) -> EvaluationContext:
    values: Values = {}
    baseline: dict[str, float | None] = {}
    if deployment is not None:
        values.update(
            {
                "environment": deployment.environment,
                "service": deployment.service,
                "deployment_status": deployment.status.value,
                "phase": deployment.phase.value,
                "driver": deployment.driver,
                "strategy": deployment.strategy.value,
                "target_kind": deployment.target.kind,
            }
        )
        end = deployment.ended_at or now
        elapsed = max(0.0, (end - deployment.started_at).total_seconds())
        values["elapsed_minutes"] = elapsed / 60.0
        if deployment.expected_duration_seconds:
            values["duration_ratio"] = elapsed / deployment.expected_duration_seconds
    if assessment is not None:
        values["health_score"] = assessment.health_score
        values["health_status"] = assessment.health_status.value
        values["decision"] = assessment.verdict.decision.value
        values["canary_weight"] = assessment.canary_weight
        values["failing_metrics"] = float(len(assessment.verdict.failing_reasons))
        for reason in assessment.verdict.reasons:
            if reason.canary_value is not None:
                values[reason.metric_id] = reason.canary_value
            if reason.baseline_value is not None:
                baseline[reason.metric_id] = reason.baseline_value
        _merge_numbers(values, assessment.details.get("metrics"))
        _merge_numbers(baseline, assessment.details.get("baseline"))
    _merge_numbers(values, metric_values)
    _merge_numbers(baseline, baseline_values)
    if event is not None:
        values["event"] = event.event_type.value
        values["event_severity"] = event.severity.value
        values.setdefault("environment", event.environment)
        values.setdefault("service", event.service)
    else:  # "no event" is known: event rules are false, not unknown, when an assessment is evaluated
        values["event"] = ""
        values["event_severity"] = ""
    _derive(values, baseline)
    return EvaluationContext(
        values=values, baseline=baseline, deployment=deployment, assessment=assessment, event=event
    )


def _derive(values: Values, baseline: dict[str, float | None]) -> None:
    for side in (values, baseline):
        errors, invocations = side.get("errors"), side.get("invocations")
        if "error_rate" not in side and isinstance(errors, float) and isinstance(invocations, float) and invocations:
            side["error_rate"] = errors / invocations
        throttles = side.get("throttles")
        if "throttle_rate" not in side and isinstance(throttles, float) and isinstance(invocations, float):
            if not invocations:
                continue
            side["throttle_rate"] = throttles / invocations
    current, base = values.get("conversion_rate"), baseline.get("conversion_rate")
    if "conversion_rate_drop" not in values and isinstance(current, float) and base:
        values["conversion_rate_drop"] = max(0.0, (base - current) / base)
