"""Scheduled assessor (EventBridge schedule, every minute): the minute tick. Under a run lock it
lists the due deployments and assesses them within its time budget, or hands them out in shards
to the assessment queue (AssessorShardFunction); then reconciliation and the alert tick.
The logic is in deployguard.workflows.assessor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployguard.inbound import parse_eventbridge_event
from deployguard.workflows import runtime
from deployguard.workflows.assessor import run_tick

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_eventbridge_event(raw, "scheduled event")
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
    summary = {"scheduled_at": event.time.isoformat(), **run.report(metrics.add_metric)}
    logger.info("assessment run", extra={**summary, **runtime.deployment_keys(_deployments(summary))})
    return summary


def _deployments(summary: dict[str, Any]) -> list[str]:
    """The deployments a run's summary names: assessed, monitored, deferred, unreadable, failed."""
    ids = [a["deployment_id"] for a in summary["assessed"]] + summary["monitored"] + summary["deferred"]
    return ids + summary["unreadable"] + list(summary["failed"])
