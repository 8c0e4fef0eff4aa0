"""CodeDeploy lifecycle hook (BeforeAllowTraffic / AfterAllowTraffic, and ECS hooks): validates
the deployment and answers CodeDeploy exactly once. The logic is in deployguard.hooks.lifecycle."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard import runtime
from deployguard.hooks.lifecycle import LifecycleHook

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # the event is validated inside, so a malformed one still gets a Failed answer when it can
    hook = LifecycleHook(
        runtime.config(), runtime.repository(), runtime.publisher(), local_mode=runtime.environment().local_mode
    )
    outcome = hook.handle(event, context.get_remaining_time_in_millis)
    metrics.add_metric(name=f"Hook{outcome.status or 'Unanswered'}", unit="Count", value=1)
    logger.info("lifecycle hook", extra=outcome.as_dict())
    return outcome.as_dict()
