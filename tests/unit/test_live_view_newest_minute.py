"""A live look reads up to the minute that just ended, whose datapoints may not all have landed: a guarded
metric silent in that newest minute only (while the version was invoked, and CloudWatch reported nothing
wrong) is judged at the next look instead of read as missing evidence; silent for longer, it is missing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.analysis.judge import judge_canary, live_view
from deployguard.analysis.settings import JudgeSettings
from deployguard.aws.cloudwatch import MetricsReader, put_metric_values
from deployguard.models import Decision, Deployment, DeploymentStatus, LambdaTarget, MetricKind, MetricSpec

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
SPECS = [
    MetricSpec(id="invocations", name="Invocations", stat="Sum", kind=MetricKind.COUNT),
    MetricSpec(id="errors", name="Errors", stat="Sum", kind=MetricKind.RATE_COUNT, relative_to="invocations"),
]


def _publish(start: Any, minutes: int, canary_errors_until: int) -> None:
    for minute in range(minutes):
        at = start + timedelta(minutes=minute, seconds=30)
        for version, calls in (("1", 900), ("2", 100)):
            dims = {"FunctionName": "checkout-api", "Resource": "checkout-api:live", "ExecutedVersion": version}
            put_metric_values("AWS/Lambda", "Invocations", dims, at, "Count", value=calls)
            if version == "1" or minute < canary_errors_until:
                put_metric_values("AWS/Lambda", "Errors", dims, at, "Count", value=0)


def _look(embedded: Any, canary_errors_until: int) -> tuple[int, Any]:
    start = clock.now()
    _publish(start, 12, canary_errors_until)
    embedded.clock.advance(12 * 60)
    deployment = Deployment(
        deployment_id="d-live", service="checkout-api", environment="prod", version="2", target=TARGET,
        status=DeploymentStatus.IN_PROGRESS, started_at=start,
    )  # fmt: skip
    window = MetricsReader().canary_windows([(deployment, SPECS)], clock.now())["d-live"]
    judged = live_view(window)
    return judged.periods, judge_canary(judged, JudgeSettings(metrics=SPECS))


def test_the_newest_minute_still_arriving_is_judged_next_look_not_missing(embedded: Any) -> None:
    periods, verdict = _look(embedded, canary_errors_until=11)  # the canary's Errors of minute 11 not landed yet
    assert periods == 11 and verdict.decision == Decision.HEALTHY, verdict.summary


def test_a_metric_silent_for_two_minutes_is_missing_evidence(embedded: Any) -> None:
    periods, verdict = _look(embedded, canary_errors_until=10)
    assert periods == 11 and verdict.decision == Decision.INCONCLUSIVE
    assert "errors: missing evidence: no datapoint for the canary in period 10" in verdict.summary, verdict.summary


def test_a_complete_newest_minute_is_judged_at_once(embedded: Any) -> None:
    periods, verdict = _look(embedded, canary_errors_until=12)
    assert periods == 12 and verdict.decision == Decision.HEALTHY
