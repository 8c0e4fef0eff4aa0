"""Notification router (SNS subscription of the events topic, and a schedule that
flushes digests). The logic is in deployguard.workflows.notification_router."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from deployguard.workflows import notification_router, runtime
from deployguard.workflows.notification_router import reset, router

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# the layer logs through logging.getLogger("deployguard.…"), children of the shared logger
logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer

__all__ = ["lambda_handler", "reset", "router"]


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    totals = notification_router.handle(event, context.get_remaining_time_in_millis)
    for status, value in totals.items():
        name = "Notifications" + "".join(part.title() for part in status.split("_"))
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return totals
