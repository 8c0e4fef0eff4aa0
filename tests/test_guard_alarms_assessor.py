"""DeploymentsUnreadableAlarm and AssessorStalledAlarm through the path of a deployed stack: the EventBridge
schedule runs the real AssessorFunction every (simulated) minute on the embedded AWS, the EMF record each
run prints goes to CloudWatch as CloudWatch Logs would put it there, and the alarms, created as
template.yaml writes them, are evaluated minute by minute (tests/support/alarm_evaluation.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf
from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.aws import clients
from deployguard_local.emulator import EmbeddedAws, ScheduleRun

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
UNREADABLE, STALLED = "DeploymentsUnreadableAlarm", "AssessorStalledAlarm"


@dataclass
class Minutes:
    aws: EmbeddedAws
    capsys: pytest.CaptureFixture[str]
    runs: list[ScheduleRun] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    _in_runs: bool = False  # the minute's runs going on (the alarm evaluation's own reads come after)

    def __post_init__(self) -> None:
        self.capsys.readouterr()
        self.aws.follow_schedules(["AssessorFunction"], on_fire=self._fired)

    def _fired(self, run: ScheduleRun) -> None:
        self.runs.append(run)
        captured = self.capsys.readouterr()
        self.records += put_emf(captured.out + "\n" + captured.err, clock.now())

    def advance(self, minutes: int, alarms: tuple[str, ...] = ()) -> list[dict[str, str]]:
        assert self.aws.clock is not None
        states = []
        for _ in range(minutes):
            now = clock.now()
            minute = datetime.fromtimestamp(int(now.timestamp()) // 60 * 60 + 60, tz=UTC)
            self._in_runs = True
            try:
                self.aws.clock.advance((minute - now).total_seconds())
            finally:
                self._in_runs = False
            states.append({name: evaluate(name, minute) for name in alarms})
        return states


@pytest.fixture
def minutes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Minutes]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: each run prints its EMF record
    with EmbeddedAws(start=START, quiet=False) as aws:
        aws.seed_sample()  # CodeDeploy-driven deployments in progress: due every minute
        yield Minutes(aws, capsys)


def _assessor_record(record: dict[str, Any]) -> bool:
    return "DeploymentsDue" in record


def test_every_run_writes_the_heartbeat_and_the_alarms_read_what_it_writes(minutes: Minutes) -> None:
    minutes.advance(2)
    records = [r for r in minutes.records if _assessor_record(r)]
    assert len(records) == len(minutes.runs) == 2
    for record in records:
        (directive,) = [d for d in record["_aws"]["CloudWatchMetrics"] if "DeploymentsDue" in str(d["Metrics"])]
        for logical_id in (UNREADABLE, STALLED):
            alarm = minutes.aws.stack.resolve(minutes.aws.stack.resources[logical_id]["Properties"])
            assert alarm["Namespace"] == directive["Namespace"]
            assert alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
            assert [[d["Name"] for d in alarm["Dimensions"]]] == directive["Dimensions"]
            assert all(record[d["Name"]] == d["Value"] for d in alarm["Dimensions"])
    assert records[0]["DeploymentsDue"][0] >= 1  # the sample's deployments were due
    assert [[float(run.payload["due"])] for run in minutes.runs] == [r["DeploymentsDue"] for r in records]


def test_a_failed_metrics_read_three_minutes_running_raises_the_unreadable_alarm(minutes: Minutes) -> None:
    """GetMetricData refused (AccessDenied) on every tick: the due deployments are not judged, counted in
    DeploymentsUnreadable (and AssessmentsFailed), and the alarm goes to ALARM after 3 minutes; OK again
    once the reads work."""
    minutes.advance(2)
    create_alarm(minutes.aws.stack, UNREADABLE)
    events = clients.client("cloudwatch").meta.events

    def refuse(**_: Any) -> None:
        if not minutes._in_runs:
            return
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "GetMetricData")

    events.register_first("before-call.cloudwatch.GetMetricData", refuse, unique_id="refuse-reads")
    first = len(minutes.runs)
    try:
        states = minutes.advance(4, (UNREADABLE,))
    finally:
        events.unregister("before-call.cloudwatch.GetMetricData", unique_id="refuse-reads")
    runs = minutes.runs[first:]
    assert all(not run.errored and run.payload["failed"] and run.payload["unreadable"] for run in runs)
    assert all("AccessDenied" in reason for run in runs for reason in run.payload["failed"].values())
    refused = [r for r in minutes.records if _assessor_record(r)][-len(runs) :]
    assert all(r["DeploymentsUnreadable"][0] >= 1 and r["AssessmentsFailed"][0] >= 1 for r in refused)
    # states[n] is evaluated at the minute of runs[n], over the 3 minutes before it (runs[n - 3] ... runs[n - 1])
    assert [s[UNREADABLE] for s in states] == ["OK", "OK", "OK", "ALARM"]
    states = minutes.advance(2, (UNREADABLE,))  # reads work again: OK once a minute of the 3 read them
    assert [s[UNREADABLE] for s in states] == ["ALARM", "OK"]
    assert [r for r in minutes.records if _assessor_record(r)][-1]["DeploymentsUnreadable"] == [0.0]


def test_an_assessor_that_stops_running_pages_after_three_minutes_without_a_run(minutes: Minutes) -> None:
    """The assessor's schedule rule disabled: no run, no DeploymentsDue datapoint. ALARM once three minutes
    passed without one, whatever another function's schedule writes; OK again after a run."""
    minutes.advance(3)
    create_alarm(minutes.aws.stack, STALLED)
    assert minutes.advance(1, (STALLED,)) == [{STALLED: "OK"}]
    (rule,) = minutes.aws.schedule_rules(["AssessorFunction"])
    events = clients.client("events")
    events.disable_rule(Name=rule)
    ran = len(minutes.runs)
    states = minutes.advance(5, (STALLED,))
    assert len(minutes.runs) == ran
    assert [s[STALLED] for s in states] == ["OK"] * 3 + ["ALARM"] * 2
    events.enable_rule(Name=rule)
    states = minutes.advance(2, (STALLED,))
    assert [s[STALLED] for s in states] == ["ALARM", "OK"]


def test_an_idle_assessor_still_writes_the_heartbeat(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing deployed: every run still writes DeploymentsDue 0, so the stalled alarm stays OK."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    with EmbeddedAws(start=START, quiet=False) as aws:
        minutes = Minutes(aws, capsys)
        minutes.advance(2)
        create_alarm(aws.stack, STALLED)
        states = minutes.advance(4, (STALLED,))
    assert [r["DeploymentsDue"] for r in minutes.records if _assessor_record(r)] == [[0.0]] * 6
    assert all(s[STALLED] == "OK" for s in states)
