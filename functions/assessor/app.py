"""Scheduled assessor (EventBridge schedule, every minute): the minute tick. Under a run lock it
lists the due deployments and assesses them within its time budget, or hands them out in shards
to the assessment queue (AssessorShardFunction); then reconciliation and the alert tick.
The logic is in deployguard.workflows.assessor."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard.inbound import parse_event
from deployguard.workflows import runtime
from deployguard.workflows.assessor import AssessorRun, run_tick

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_event(EventBridgeModel, raw, "scheduled event")
    queue_url = runtime.environment().assessment_queue_url
    send = None
    if queue_url:
        from deployguard.aws.shards import send_shards

        def send(shards: list[list[str]]) -> int:
            return send_shards(queue_url, shards, event.time)

    run = run_tick(
        runtime.config(), runtime.repository(), runtime.publisher(), alerts=runtime.alert_engine(),
        remaining_ms=context.get_remaining_time_in_millis, send_shards=send,
    )  # fmt: skip
    summary = report(run, event.time.isoformat())
    logger.info("assessment run", extra=summary)
    return summary


def report(run: AssessorRun, scheduled_at: str) -> dict[str, Any]:
    """The run's summary (returned and logged) and its EMF metrics."""
    metrics.add_metric(name="DeploymentsAssessed", unit="Count", value=len(run.assessed))
    metrics.add_metric(name="GetMetricDataCalls", unit="Count", value=run.metric_calls)
    metrics.add_metric(name="DeploymentsDeferred", unit="Count", value=len(run.deferred))
    metrics.add_metric(name="AlertsRaised", unit="Count", value=run.alerts)
    metrics.add_metric(name="IncidentPages", unit="Count", value=len(run.tick.pages) if run.tick else 0)
    return {
        "scheduled_at": scheduled_at,
        "assessed": [
            {"deployment_id": a.deployment_id, "decision": a.verdict.decision.value, "summary": a.verdict.summary}
            for a in run.assessed
        ],
        "skipped": run.skipped,
        "deferred": run.deferred,
        "shards": run.shards,
        "overlapping": run.overlapping,
        "metric_calls": run.metric_calls,
        "alerts": run.alerts,
        "monitored": [a.deployment_id for a in run.monitoring.assessed] if run.monitoring else [],
        "pages": len(run.tick.pages) if run.tick else 0,
        "incidents_resolved": len(run.tick.resolved) if run.tick else 0,
    }
