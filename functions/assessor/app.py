"""Scheduled assessor (EventBridge schedule): judges every active CodeDeploy-driven
deployment. The logic is in deployguard.assessor."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard import runtime
from deployguard.assessor import assess_active_deployments
from deployguard.inbound import parse_event

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_event(EventBridgeModel, raw, "scheduled event")
    run = assess_active_deployments(
        runtime.config(), runtime.repository(), runtime.publisher(), alerts=runtime.alert_engine()
    )
    metrics.add_metric(name="DeploymentsAssessed", unit="Count", value=len(run.assessed))
    metrics.add_metric(name="GetMetricDataCalls", unit="Count", value=run.metric_calls)
    metrics.add_metric(name="AlertsRaised", unit="Count", value=run.alerts)
    metrics.add_metric(name="IncidentPages", unit="Count", value=len(run.tick.pages) if run.tick else 0)
    summary = {
        "scheduled_at": event.time.isoformat(),
        "assessed": [
            {"deployment_id": a.deployment_id, "decision": a.verdict.decision.value, "summary": a.verdict.summary}
            for a in run.assessed
        ],
        "skipped": run.skipped,
        "metric_calls": run.metric_calls,
        "alerts": run.alerts,
        "monitored": [a.deployment_id for a in run.monitoring.assessed] if run.monitoring else [],
        "pages": len(run.tick.pages) if run.tick else 0,
        "incidents_resolved": len(run.tick.resolved) if run.tick else 0,
    }
    logger.info("assessment run", extra=summary)
    return summary
