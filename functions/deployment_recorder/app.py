"""Deployment recorder (EventBridge: CodeDeploy state-change notifications): keeps each
deployment's record and phases, and publishes deployment statistics as EMF metrics.
The logic is in deployguard.recorder."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard import runtime
from deployguard.recorder import DeploymentRecorder, StateChangeDetail

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    detail = StateChangeDetail.model_validate(event.detail)
    recorder = DeploymentRecorder(runtime.config(), runtime.repository(), runtime.publisher())
    outcome = recorder.record(detail, event.time)
    if outcome.changed:
        metrics.add_dimension(name="environment", value=outcome.environment)
        metrics.add_dimension(name="strategy", value=outcome.strategy)
        metrics.add_metric(name=f"Deployments{outcome.status.value.title().replace('_', '')}", unit="Count", value=1)
        if outcome.status.is_terminal:
            metrics.add_metric(name="DeploymentsEnded", unit="Count", value=1)
            metrics.add_metric(name="DeploymentsSucceededRatio", unit="Percent",
                               value=100.0 if outcome.status.value == "succeeded" else 0.0)  # fmt: skip
            if outcome.duration_seconds is not None:
                metrics.add_metric(name="DeploymentDuration", unit="Seconds", value=outcome.duration_seconds)
    return {"deployment_id": outcome.deployment_id, "state": outcome.state, "changed": outcome.changed,
            "status": outcome.status.value}  # fmt: skip
