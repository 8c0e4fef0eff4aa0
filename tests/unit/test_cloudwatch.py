from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.aws.cloudwatch import MetricQuery, MetricsReader, WindowRequest, put_metric_values
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, MetricKind, MetricSpec

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
SPECS = [
    MetricSpec(id="invocations", name="Invocations", stat="Sum", kind=MetricKind.COUNT),
    MetricSpec(id="duration_p99", name="Duration", stat="p99", kind=MetricKind.LATENCY),
]


def _dims(version: str) -> dict[str, str]:
    return {"FunctionName": "checkout-api", "Resource": "checkout-api:live", "ExecutedVersion": version}


def test_canary_window_aligns_periods_and_keeps_gaps(embedded: Any) -> None:
    start = clock.now()
    deployment = Deployment(
        deployment_id="d-cw",
        service="checkout-api",
        environment="prod",
        version="2",
        target=TARGET,
        status=DeploymentStatus.IN_PROGRESS,
        started_at=start,
    )
    for minute in range(4):
        at = start + timedelta(minutes=minute, seconds=30)
        put_metric_values("AWS/Lambda", "Invocations", _dims("1"), at, "Count", value=100 + minute)
        if minute != 2:  # the canary had no invocation in minute 2
            put_metric_values("AWS/Lambda", "Invocations", _dims("2"), at, "Count", value=10)
        put_metric_values("AWS/Lambda", "Duration", _dims("1"), at, "Milliseconds", values=[80, 300], counts=[98, 2])
    embedded.clock.advance(4 * 60)
    reader = MetricsReader()
    window = reader.canary_windows([(deployment, SPECS)], clock.now())["d-cw"]
    by_id = {m.spec.id: m for m in window.metrics}
    assert by_id["invocations"].baseline == [100, 101, 102, 103]
    assert by_id["invocations"].canary == [10, 10, None, 10]
    assert by_id["duration_p99"].baseline == [300, 300, 300, 300]  # the p99 of each minute's distribution
    assert by_id["duration_p99"].canary == [None] * 4
    assert reader.calls == 1


def test_queries_are_batched_500_per_call(embedded: Any) -> None:
    start = clock.now()
    specs = [MetricSpec(id=f"m{i}", name=f"Metric{i}", stat="Sum") for i in range(4)]
    deployments = [
        (
            Deployment(
                deployment_id=f"d-{n}",
                service="s",
                environment="e",
                version="2",
                target=TARGET,
                status=DeploymentStatus.IN_PROGRESS,
                started_at=start,
            ),
            specs,
        )
        for n in range(80)
    ]  # 80 deployments x 4 metrics x 2 versions = 640 queries
    embedded.clock.advance(120)
    reader = MetricsReader()
    windows = reader.canary_windows(deployments, clock.now())
    assert len(windows) == 80
    assert reader.calls == 2  # ceil(640 / 500)


def test_no_complete_period_reads_nothing(embedded: Any) -> None:
    reader = MetricsReader()
    query = MetricQuery(("r", "m", "canary"), SPECS[0], _dims("2"))
    assert reader.read([query], clock.now(), clock.now(), 60) == {("r", "m", "canary"): []}
    assert reader.calls == 0


def test_reads_of_different_ranges_and_periods_go_together_each_in_its_own_periods(embedded: Any) -> None:
    day_ago = clock.now()
    put_metric_values("AWS/Lambda", "Invocations", _dims("1"), day_ago + timedelta(minutes=2), "Count", value=7)
    embedded.clock.advance(24 * 3600)
    young = clock.now()
    put_metric_values("AWS/Lambda", "Invocations", _dims("2"), young + timedelta(seconds=30), "Count", value=3)
    embedded.clock.advance(180)
    history = WindowRequest([MetricQuery(("old", "invocations", "baseline"), SPECS[0], _dims("1"))],
                            day_ago, day_ago + timedelta(hours=1), 300)  # fmt: skip
    canary = WindowRequest([MetricQuery(("new", "invocations", "canary"), SPECS[0], _dims("2"))],
                           young, clock.now(), 60)  # fmt: skip
    reader = MetricsReader()
    values = reader.read_windows([canary, history])
    assert reader.calls == 1  # two queries, one GetMetricData call
    assert values[("old", "invocations", "baseline")] == [7.0] + [None] * 11  # twelve 5-minute periods
    assert values[("new", "invocations", "canary")] == [3.0, None, None]  # three minutes from its own start


def _deployment(start: Any) -> Deployment:
    return Deployment(
        deployment_id="d-status",
        service="checkout-api",
        environment="prod",
        version="2",
        target=TARGET,
        status=DeploymentStatus.IN_PROGRESS,
        started_at=start,
    )


def _errors_specs() -> list[MetricSpec]:
    return [
        MetricSpec(id="invocations", name="Invocations", stat="Sum", kind=MetricKind.COUNT),
        MetricSpec(id="errors", name="Errors", stat="Sum", kind=MetricKind.RATE_COUNT, relative_to="invocations"),
    ]


def _publish(start: Any, minutes: int) -> None:
    for minute in range(minutes):
        at = start + timedelta(minutes=minute, seconds=30)
        for version, calls in (("1", 900), ("2", 100)):
            put_metric_values("AWS/Lambda", "Invocations", _dims(version), at, "Count", value=calls)
            put_metric_values("AWS/Lambda", "Errors", _dims(version), at, "Count", value=0)


def test_failed_result_status_is_missing_evidence_not_zero(embedded: Any) -> None:
    """InternalError for the canary's Errors query: its periods are unknown, and the judge says so."""
    from deployguard.analysis.judge import judge_canary
    from deployguard.analysis.settings import JudgeSettings
    from deployguard.aws import clients
    from deployguard.models import Decision

    start = clock.now()
    _publish(start, 12)
    embedded.clock.advance(12 * 60)

    def fail_canary_errors(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        for result in parsed.get("MetricDataResults", []):
            ids = {q["Id"]: q for q in fail_canary_errors.request}  # type: ignore[attr-defined]
            stat = ids[result["Id"]]["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in stat["Dimensions"]}
            if stat["MetricName"] == "Errors" and dims["ExecutedVersion"] == "2":
                result.update(StatusCode="InternalError", Timestamps=[], Values=[],
                              Messages=[{"Code": "InternalError", "Value": "try again"}])  # fmt: skip

    def remember(params: dict[str, Any], **_: Any) -> None:
        fail_canary_errors.request = params["MetricDataQueries"]  # type: ignore[attr-defined]

    events = clients.client("cloudwatch").meta.events
    events.register("provide-client-params.cloudwatch.GetMetricData", remember)
    events.register("after-call.cloudwatch.GetMetricData", fail_canary_errors)
    try:
        reader = MetricsReader()
        window = reader.canary_windows([(_deployment(start), _errors_specs())], clock.now())["d-status"]
    finally:
        events.unregister("after-call.cloudwatch.GetMetricData", fail_canary_errors)
        events.unregister("provide-client-params.cloudwatch.GetMetricData", remember)
    errors = next(m for m in window.metrics if m.spec.id == "errors")
    assert errors.canary == [None] * 12 and errors.baseline == [0.0] * 12
    assert [(g.version, g.periods[0], g.periods[-1]) for g in errors.gaps] == [("canary", 0, 11)]
    verdict = judge_canary(window, JudgeSettings(metrics=_errors_specs()))
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "errors" in verdict.summary and "InternalError" in verdict.summary and "periods 0-11" in verdict.summary


def test_partial_data_is_paged_to_completion(embedded: Any) -> None:
    """A PartialData result with a NextToken is read on; one left partial is a gap, not zeros."""
    from deployguard.aws import clients

    start = clock.now()
    _publish(start, 4)
    embedded.clock.advance(4 * 60)
    pages: list[dict[str, Any]] = []

    def split_pages(parsed: dict[str, Any], **_: Any) -> None:
        # the first answer holds only the first two periods of each series and asks for more
        if not pages:
            for result in parsed["MetricDataResults"]:
                pages.append({k: list(v) if isinstance(v, list) else v for k, v in result.items()})
                result.update(StatusCode="PartialData", Timestamps=result["Timestamps"][:2],
                              Values=result["Values"][:2])  # fmt: skip
            parsed["NextToken"] = "page-2"

    def no_token_to_moto(params: dict[str, Any], **_: Any) -> None:
        params.pop("NextToken", None)

    events = clients.client("cloudwatch").meta.events
    events.register("after-call.cloudwatch.GetMetricData", split_pages)
    events.register("provide-client-params.cloudwatch.GetMetricData", no_token_to_moto)
    try:
        reader = MetricsReader()
        window = reader.canary_windows([(_deployment(start), _errors_specs())], clock.now())["d-status"]
    finally:
        events.unregister("after-call.cloudwatch.GetMetricData", split_pages)
        events.unregister("provide-client-params.cloudwatch.GetMetricData", no_token_to_moto)
    assert reader.calls == 2 and not reader.failures
    invocations = next(m for m in window.metrics if m.spec.id == "invocations")
    assert invocations.canary == [100.0] * 4 and not invocations.gaps
