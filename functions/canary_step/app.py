"""Canary step function: one task of the canary state machine (validate, shift,
assess, promote, rollback, notify). The logic is in deployguard.workflows.canary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import EphemeralMetrics

from deployguard.inbound import parse_event
from deployguard.workflows import runtime
from deployguard.workflows.canary import CanaryTask, run_task

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse_event(CanaryTask, event, "canary task")
    logger.append_keys(action=task.action, deployment_id=task.state.get("deployment_id"))
    result = run_task(task, runtime.canary_controller())
    metrics.add_metric(name=f"Canary{task.action.title()}", unit="Count", value=1)
    statistics = runtime.canary_controller().statistics(task.action, result)
    if statistics is not None and statistics[1]:  # deployment statistics by environment and strategy, as the recorder's
        deployment, points = statistics
        emf = EphemeralMetrics()  # its own blob: the task metric above keeps its dimensions
        emf.add_dimension(name="environment", value=deployment.environment)
        emf.add_dimension(name="strategy", value=deployment.strategy.value)
        for name, unit, value in points:
            emf.add_metric(name=name, unit=unit, value=value)
        emf.flush_metrics()
    logger.info("canary task done", extra={"next": result.get("next"), "decision": result.get("decision")})
    return result
