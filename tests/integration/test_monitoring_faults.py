"""Post-deployment monitoring when CloudWatch's answer is not the whole answer: a failed or partial
read, or the latest periods missing, is never read as "back to usual". Such a look is stored as
unknown with its reason, announces nothing, runs no alert rule (clears no incident), and the next
look compares with the last judged status; a read that keeps failing is counted and raises
DeploymentsUnreadableAlarm. On the embedded AWS, faults injected by botocore event hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf
from metric_history import write_lambda_history
from tick_support import minute_tick

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.cloudwatch import MetricsReader
from deployguard.aws.events import EventPublisher
from deployguard.config import DeployGuardConfig, load_config
from deployguard.models import Deployment, DeploymentStatus, HealthStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard.workflows.monitoring import MonitoringRun, monitor_promoted
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
Fault = Callable[[dict[str, Any], dict[str, str]], None]  # (a MetricDataResult, its query's Id -> MetricName)


class CloudWatchFaults:
    """Rewrites GetMetricData answers of the embedded CloudWatch (botocore hooks on the shared client)."""

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self.names: dict[str, str] = {}
        self.injected = 0

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self.names = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in params.get("MetricDataQueries", [])}

    def _answer(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.fault is not None:
            for result in parsed.get("MetricDataResults", []):
                self.fault(result, self.names)
            self.injected += 1


@pytest.fixture
def faults(embedded: Any) -> Iterator[CloudWatchFaults]:
    injector = CloudWatchFaults()
    events = clients.client("cloudwatch").meta.events
    events.register("provide-client-params.cloudwatch.GetMetricData", injector._params)
    events.register("after-call.cloudwatch.GetMetricData", injector._answer)
    yield injector
    events.unregister("provide-client-params.cloudwatch.GetMetricData", injector._params)
    events.unregister("after-call.cloudwatch.GetMetricData", injector._answer)


def internal_error(metric: str | None = None) -> Fault:
    """CloudWatch's InternalError for every query (or only those of ``metric``): no values."""

    def fault(result: dict[str, Any], names: dict[str, str]) -> None:
        if metric is None or names.get(result["Id"]) == metric:
            result.update(StatusCode="InternalError", Timestamps=[], Values=[],
                          Messages=[{"Code": "InternalError", "Value": "injected"}])  # fmt: skip

    return fault


def latest_missing(periods: int, status: str) -> Fault:
    """The last ``periods`` periods not returned (ScanBy TimestampAscending), with ``status`` and no NextToken."""

    def fault(result: dict[str, Any], names: dict[str, str]) -> None:
        result.update(StatusCode=status, Timestamps=result["Timestamps"][:-periods], Values=result["Values"][:-periods])

    return fault


def _erring_release(embedded: Any, minutes_since_promotion: int = 10) -> tuple[DeployGuardConfig, DeploymentRepository]:
    """4 hours of the stable version erring 5 per 1000; a promoted release erring 80 per 1000 since."""
    config = load_config(embedded.root / "examples" / "deployguard.yaml")
    repository = DeploymentRepository()
    write_lambda_history("checkout-api", "1", clock.now(), 4 * 60, 5)
    embedded.clock.advance(4 * 3600)
    promoted = clock.now()
    repository.create_deployment(
        Deployment(
            deployment_id="promoted", service="checkout-api", environment="production", version="2", target=TARGET,
            status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING, started_at=promoted - timedelta(minutes=15),
            ended_at=promoted, canary_weight=1.0,
        )
    )  # fmt: skip
    write_lambda_history("checkout-api", "2", promoted, minutes_since_promotion + 10, 80)
    embedded.clock.advance(minutes_since_promotion * 60)
    return config, repository


def _look(config: DeployGuardConfig, repository: DeploymentRepository, **kwargs: Any) -> MonitoringRun:
    return monitor_promoted(config, repository, EventPublisher(), clock.now(), **kwargs)


def _titles(repository: DeploymentRepository) -> list[str]:
    return [e.title for e in repository.events("promoted") if e.title.startswith("Post-Deployment")]


def _latest(repository: DeploymentRepository) -> Any:
    return repository.assessments("promoted")[-1]


def test_a_failed_read_of_an_erring_release_is_not_back_to_usual(embedded: Any, faults: CloudWatchFaults) -> None:
    config, repository = _erring_release(embedded)
    assert _look(config, repository).assessed[0].health_status == HealthStatus.WARNING
    embedded.clock.advance(60)
    faults.fault = internal_error()
    run = _look(config, repository)
    assert faults.injected == 1 and run.assessed == [] and run.unreadable == ["promoted"]
    stored = _latest(repository)  # recorded, as unknown, with CloudWatch's answer
    assert stored.health_status == HealthStatus.UNKNOWN and stored.details["inconclusive"] is True
    assert "CloudWatch returned InternalError (InternalError: injected) for metric errors (alias)" in (
        stored.verdict.summary
    )
    cursor = repository.get_deployment("promoted").last_assessment
    assert cursor is not None and cursor.health_status == HealthStatus.WARNING  # what the next look compares with
    [audited] = [a for a in repository.audit_trail("promoted") if a.action == "metrics_unreadable"]
    assert "CloudWatch returned InternalError" in audited.reason
    embedded.clock.advance(60)
    faults.fault = None
    assert _look(config, repository).assessed[0].health_status == HealthStatus.WARNING
    assert _titles(repository) == ["Post-Deployment Anomaly"]  # once: no "Back To Usual", no second "Anomaly"


def test_a_failed_read_of_the_unusual_metric_alone_is_not_back_to_usual(
    embedded: Any, faults: CloudWatchFaults
) -> None:
    """Errors unreadable, Duration and Throttles read and usual: the error rate is not judged, so not usual."""
    config, repository = _erring_release(embedded)
    _look(config, repository)
    embedded.clock.advance(60)
    faults.fault = internal_error("Errors")
    run = _look(config, repository)
    assert run.unreadable == ["promoted"] and run.assessed == []
    stored = _latest(repository)
    assert stored.health_status == HealthStatus.UNKNOWN
    assert {r.metric_id: r.status for r in stored.verdict.reasons}["errors"] == "inconclusive"
    assert "pass" in {r.status for r in stored.verdict.reasons}  # the others were judged, and usual
    assert _titles(repository) == ["Post-Deployment Anomaly"]


def test_an_unusual_metric_is_news_even_when_another_cannot_be_read(embedded: Any, faults: CloudWatchFaults) -> None:
    config, repository = _erring_release(embedded)
    faults.fault = internal_error("Duration")
    run = _look(config, repository)
    [assessment] = run.assessed
    assert assessment.health_status == HealthStatus.WARNING and run.unreadable == ["promoted"]
    assert set(assessment.details["unread"]) == {"duration_p50", "duration_p99"}
    assert _titles(repository) == ["Post-Deployment Anomaly"]


def test_a_failed_read_does_not_clear_the_open_incident(embedded: Any, faults: CloudWatchFaults) -> None:
    config, repository = _erring_release(embedded)
    engine = runtime.alert_engine()
    _look(config, repository, alerts=engine)
    [incident] = engine.incident_store.open_incidents_of("promoted")
    embedded.clock.advance(60)
    faults.fault = internal_error()
    _look(config, repository, alerts=engine)
    actions = [a.action for a in repository.audit_trail("promoted")]
    assert "incident_condition_cleared" not in actions
    assert [i.key for i in engine.incident_store.open_incidents_of("promoted")] == [incident.key]


@pytest.mark.parametrize("status", ["Complete", "PartialData"])
def test_the_latest_periods_missing_are_not_the_latest_periods_usual(
    embedded: Any, faults: CloudWatchFaults, status: str
) -> None:
    """The last 25 minutes not returned: the "recent" values would be the usual ones of before the
    release. Complete (CloudWatch late): unknown, not counted; PartialData with no page left: a failed read."""
    config, repository = _erring_release(embedded)
    _look(config, repository)
    embedded.clock.advance(60)
    faults.fault = latest_missing(5, status)
    run = _look(config, repository)
    stored = _latest(repository)
    assert stored.health_status == HealthStatus.UNKNOWN, stored.verdict.summary
    assert "metrics usual" not in stored.verdict.summary
    if status == "Complete":
        assert "no value in the last 15 minutes" in stored.verdict.summary and run.unreadable == []
    else:
        assert "CloudWatch returned PartialData" in stored.verdict.summary and run.unreadable == ["promoted"]
    assert _titles(repository) == ["Post-Deployment Anomaly"]


def test_a_release_back_to_usual_is_still_announced(embedded: Any) -> None:
    """The other side: the release stops erring (its fix shipped); once 15 minutes of usual values are
    read in full, "Back To Usual" is announced."""
    config, repository = _erring_release(embedded)
    _look(config, repository)
    write_lambda_history("checkout-api", "2", clock.now() + timedelta(minutes=10), 60, 5)  # after the erring 30 minutes
    embedded.clock.advance(30 * 60)
    assert _look(config, repository).assessed[0].health_status == HealthStatus.HEALTHY
    assert _titles(repository) == ["Post-Deployment Anomaly", "Post-Deployment Back To Usual"]


def test_a_reader_kept_between_reads_forgets_a_failure_once_read_again(embedded: Any, faults: CloudWatchFaults) -> None:
    config, repository = _erring_release(embedded)
    reader = MetricsReader()
    faults.fault = internal_error()
    assert _look(config, repository, reader=reader).unreadable == ["promoted"] and reader.failures
    embedded.clock.advance(60)
    faults.fault = None
    run = _look(config, repository, reader=reader)
    assert run.unreadable == [] and reader.failures == {}
    assert run.assessed[0].health_status == HealthStatus.WARNING


def _tick(embedded: Any) -> dict[str, Any]:
    return minute_tick(embedded)


@pytest.fixture
def loud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example stack with the functions' EMF metrics on, as deployed."""
    from deployguard_local.emulator import EmbeddedAws

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    with EmbeddedAws(config_file=ROOT / "examples" / "deployguard.yaml", quiet=False) as aws:
        yield aws


def test_a_read_that_keeps_failing_is_looked_at_every_minute_and_raises_the_unreadable_alarm(
    loud: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the minute tick (AssessorFunction): a release two hours in (every 5 minutes on the schedule)
    whose reads fail is looked at again each minute, counted each time (DeploymentsUnreadable), and
    DeploymentsUnreadableAlarm goes to ALARM after 3 minutes; nothing is announced."""
    injector = CloudWatchFaults()
    events = clients.client("cloudwatch").meta.events
    events.register("provide-client-params.cloudwatch.GetMetricData", injector._params)
    events.register("after-call.cloudwatch.GetMetricData", injector._answer)
    _, repository = _erring_release(loud, minutes_since_promotion=120)
    alarm = create_alarm(Stack.load(ROOT), "DeploymentsUnreadableAlarm")
    injector.fault = internal_error()
    for _ in range(3):
        payload = _tick(loud)
        assert "promoted" in payload["unreadable"], payload
        printed = capsys.readouterr()
        put_emf(printed.out + "\n" + printed.err, clock.now())
        loud.clock.advance(60)
    assert injector.injected >= 3
    injector.fault = None  # the alarm's own read
    assert evaluate(alarm, clock.now().replace(second=0, microsecond=0)) == "ALARM"
    assert _titles(repository) == []
    assert {a.health_status for a in repository.assessments("promoted")} == {HealthStatus.UNKNOWN}
