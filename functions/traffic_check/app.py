"""Traffic checks (EventBridge schedule, every minute; a function of its own, not the assessor's
minute tick): the traffic of deployments that ended without promotion is put where the record
says, at most a few checks a second (each reads the alias from Lambda's control plane, whose
quota the account shares). The logic is in deployguard.workflows.reconciler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployguard.exceptions import TrafficChecksUnavailableError
from deployguard.inbound import parse_eventbridge_event
from deployguard.workflows import runtime
from deployguard.workflows.reconciler import run_traffic_checks

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_eventbridge_event(raw, "scheduled event")
    run = run_traffic_checks(
        runtime.repository(), runtime.publisher(), remaining_ms=context.get_remaining_time_in_millis
    )  # fmt: skip
    summary = {"scheduled_at": event.time.isoformat(), **run.report(metrics.add_metric)}
    logger.info("traffic checks", extra=summary)
    if "*" in run.failed:  # the due checks could not be listed: a failed invocation (Errors alarm, on-failure)
        raise TrafficChecksUnavailableError(run.failed["*"])
    return summary
