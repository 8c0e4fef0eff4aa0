"""Canary step function: one task of the canary state machine (validate, shift,
assess, promote, rollback, notify). The logic is in deployguard.workflows.canary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import EphemeralMetrics

from deployguard.inbound import parse_event
from deployguard.workflows import runtime
from deployguard.workflows.canary import CanaryTask, execution_deployment_id, run_task

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer

# a canary's end counted from the decision: Promote and Rollback count themselves (their task metrics); a
# canary Assess ends (the judge's rollback, or a rollback that ended the record meanwhile: next "done", then
# NotifyOutcome) runs neither, so Assess counts it
OUTCOMES = {"promoted": "CanaryPromote", "rolled_back": "CanaryRollback"}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse_event(CanaryTask, event, "canary task")
    logger.append_keys(action=task.action, deployment_id=_deployment_id(task))
    result = run_task(task, runtime.canary_controller())
    if result.get("deployment_id"):  # validate's record, named after the execution when the request gave none
        logger.append_keys(deployment_id=result["deployment_id"])
    task_metric = f"Canary{task.action.title()}"
    metrics.add_metric(name=task_metric, unit="Count", value=1)
    outcome = OUTCOMES.get(str(result.get("decision")))
    if task.action == "assess" and result.get("next") == "done" and outcome:
        metrics.add_metric(name=outcome, unit="Count", value=1)
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


def _deployment_id(task: CanaryTask) -> str | None:
    """The deployment a task works on: the state's, or for validate the request's (``deployment``), or the
    one named after the execution when the request gave none."""
    state = task.state
    request = state.get("deployment") if isinstance(state.get("deployment"), dict) else {}
    found = state.get("deployment_id") or request.get("deployment_id")
    if found:
        return str(found)
    return execution_deployment_id(task.execution) if task.action == "validate" and task.execution else None
