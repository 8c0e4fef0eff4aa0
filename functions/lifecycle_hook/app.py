"""CodeDeploy lifecycle hook (BeforeAllowTraffic / AfterAllowTraffic, and the ECS hooks): validates
the deployment and answers CodeDeploy exactly once. The logic is in deployguard.hooks.lifecycle.

No event_parser here on purpose: a malformed event must still be answered ``Failed`` when it
carries an execution id, so the hook validates the event itself (naming the field) and never
raises; CodeDeploy is never left waiting on a crash."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployguard.hooks.lifecycle import LifecycleHook, answer_without_setup
from deployguard.workflows import runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        hook = LifecycleHook(
            runtime.config(),
            runtime.repository(),
            runtime.publisher(),
            local_mode=runtime.environment().local_mode,
            alert_engine=runtime.alert_engine,  # built only when the hook raises an alert
        )
    except Exception as exc:  # no configuration, no table: still answer CodeDeploy, Failed, rather than never
        logger.exception("lifecycle hook cannot start")
        outcome = answer_without_setup(event, f"internal error, failing closed: {type(exc).__name__}: {exc}")
    else:
        outcome = hook.handle(event, context.get_remaining_time_in_millis)
    metrics.add_metric(name=outcome.metric_name, unit="Count", value=1)
    report = outcome.as_dict()
    logger.info("lifecycle hook", extra=report)
    return report
