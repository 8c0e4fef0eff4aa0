"""Deployment recorder (EventBridge: CodeDeploy deployment and instance state-change notifications,
and a schedule that records the ends whose notification never arrived, looks for long-running deployments,
finishes unconfirmed hook answers and records the Failed hook verdicts whose recording failed):
keeps each deployment's record and phases, and publishes deployment statistics as EMF metrics.
The logic is in deployguard.workflows.recorder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployguard.inbound import parse_event, parse_eventbridge_event
from deployguard.workflows import runtime
from deployguard.workflows.recorder import DeploymentRecorder, RecordOutcome, StateChangeDetail

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer

SCHEDULED = "Scheduled Event"


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # a malformed or oversized event raises InvalidEventError naming the field: two retries, then FunctionFailureQueue
    event = parse_eventbridge_event(raw, "EventBridge event")
    recorder = DeploymentRecorder(
        runtime.config(), runtime.repository(), runtime.publisher(), alerts=runtime.alert_engine()
    )
    if event.detail_type == SCHEDULED:
        # the AssessorStalledAlarm and the dashboard read how many deployments are active
        metrics.add_metric(name="ActiveDeployments", unit="Count", value=len(runtime.repository().active_deployments()))
        reconciled = recorder.sweep_unrecorded_ends()
        for outcome in reconciled:
            _publish_statistics(outcome)
        return {
            "reconciled": [outcome.as_dict() for outcome in reconciled],
            "long_running": recorder.sweep_long_running(),
            "hooks_answered": recorder.sweep_unanswered_hooks(context.get_remaining_time_in_millis),
            "hook_verdicts": _finish_hook_verdicts(context),
        }
    detail = parse_event(StateChangeDetail, event.detail, "CodeDeploy state-change detail")
    outcome = recorder.handle(event.detail_type, detail, event.time)
    points = outcome.metric_points()
    if points:
        metrics.add_dimension(name="environment", value=outcome.environment)
        metrics.add_dimension(name="strategy", value=outcome.strategy)
        for name, unit, value in points:
            metrics.add_metric(name=name, unit=unit, value=value)
    logger.info("deployment recorded", extra=outcome.as_dict())
    return outcome.as_dict()


def _publish_statistics(outcome: RecordOutcome) -> None:
    """The statistics of an end the schedule recorded, each an EMF record of its own (by its environment
    and strategy, as a state change's)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    dimensions = {"environment": outcome.environment, "strategy": outcome.strategy}
    for name, unit, value in outcome.metric_points():
        with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace=runtime.METRICS_NAMESPACE,
                           default_dimensions=dimensions):  # fmt: skip
            pass


def _finish_hook_verdicts(context: LambdaContext) -> list[dict[str, Any]]:
    """The lifecycle hook's Failed verdicts left unrecorded (deployment record, validation.failed, its alert)."""
    from deployguard.hooks.lifecycle import LifecycleHook  # the schedule's only, not a state change's cold start

    hook = LifecycleHook(runtime.config(), runtime.repository(), runtime.publisher(),
                         local_mode=runtime.environment().local_mode, alert_engine=runtime.alert_engine)  # fmt: skip
    return hook.finish_verdicts(seconds_left=lambda: context.get_remaining_time_in_millis() / 1000.0)
