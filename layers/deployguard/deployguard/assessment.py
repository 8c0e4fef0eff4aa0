"""Turning a judge verdict and the health report into a stored Assessment."""

from __future__ import annotations

from deployguard.alerts.fields import fields_from_window
from deployguard.analysis.health import HealthSettings, assess_health, health_values_from_window
from deployguard.models import Assessment, CanaryWindow, Decision, Deployment, HealthStatus, Verdict

_VERDICT_STATUS = {
    Decision.FAILING: HealthStatus.CRITICAL,
    Decision.INCONCLUSIVE: HealthStatus.UNKNOWN,
    Decision.HEALTHY: HealthStatus.HEALTHY,
}


def assessment_from_verdict(
    deployment: Deployment,
    window: CanaryWindow,
    verdict: Verdict,
    health_settings: HealthSettings | None = None,
) -> Assessment:
    """The assessment of one period: the canary verdict, and the canary's own health.

    The overall status is the worse of the two: a canary that is no worse than a
    sick baseline is still reported as sick.
    """
    report = assess_health(health_values_from_window(window), health_settings or HealthSettings())
    order = [HealthStatus.HEALTHY, HealthStatus.UNKNOWN, HealthStatus.WARNING, HealthStatus.CRITICAL]
    status = max(_VERDICT_STATUS[verdict.decision], report.overall_status, key=order.index)
    return Assessment(
        deployment_id=deployment.deployment_id,
        step_index=deployment.step_index,
        canary_weight=deployment.canary_weight,
        verdict=verdict,
        health_status=status,
        health_score=report.score,
        details={
            "health": report.model_dump(mode="json"),
            "periods": window.periods,
            "fields": fields_from_window(window).as_details(),  # what the alert rules read
        },
    )
