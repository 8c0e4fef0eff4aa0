"""Canary step function: one task of the canary state machine (validate, shift,
assess, promote, rollback, notify). The logic is in deployguard.canary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard import runtime
from deployguard.canary import CanaryTask, run_task
from deployguard.inbound import parse_event

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse_event(CanaryTask, event, "canary task")
    logger.append_keys(action=task.action, deployment_id=task.state.get("deployment_id"))
    result = run_task(task, runtime.canary_controller())
    metrics.add_metric(name=f"Canary{task.action.title()}", unit="Count", value=1)
    logger.info("canary task done", extra={"next": result.get("next"), "decision": result.get("decision")})
    return result
