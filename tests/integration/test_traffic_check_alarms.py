"""TrafficCheckBacklogAlarm and TrafficCheckStalledAlarm through the path of a deployed stack: the
EventBridge schedule runs TrafficCheckFunction every (simulated) minute, the EMF record each run
prints goes to CloudWatch as CloudWatch Logs would put it there, and the two alarms, created as
template.yaml writes them, are evaluated minute by minute over it (moto stores alarms but never
evaluates one: tests/support/alarm_evaluation.py models CloudWatch's evaluation of a metric alarm)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf

from deployguard import clock
from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase, TrafficCheck
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.reconciler import LEASE_SECONDS, RESERVE_MS
from deployguard_local.emulator import EmbeddedAws, ScheduleRun, sample_handler
from deployguard_local.template import Stack

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # on a minute: a run starts at its schedule's time
BACKLOG, STALLED = "TrafficCheckBacklogAlarm", "TrafficCheckStalledAlarm"
BACKLOG_ALARM = Stack.load(Path(__file__).resolve().parents[2]).resources[BACKLOG]["Properties"]
TO_ALARM, EVALUATED = int(BACKLOG_ALARM["DatapointsToAlarm"]), int(BACKLOG_ALARM["EvaluationPeriods"])
ALIAS_READ_SECONDS = 9.0  # a slow Lambda control plane (a throttled one, its retries)
# a check starts while RESERVE_MS of the run's lease is left: 6 checks a run
CHECKS_A_RUN = int((LEASE_SECONDS - RESERVE_MS / 1000) // ALIAS_READ_SECONDS) + 1


@dataclass
class Minutes:
    """The stack's minutes: the traffic check function's scheduled runs, their EMF metrics put into
    CloudWatch, and the alarms evaluated at each minute (over the minutes before it)."""

    aws: EmbeddedAws
    capsys: pytest.CaptureFixture[str]
    runs: list[ScheduleRun] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, str]] = field(default_factory=list)  # the alarms' states, a minute each

    def __post_init__(self) -> None:
        self.capsys.readouterr()
        self.aws.follow_schedules(["TrafficCheckFunction"], on_fire=self._fired)

    def _fired(self, run: ScheduleRun) -> None:
        assert not run.errored, run.payload
        self.runs.append(run)
        # stderr, or stdout when pytest put its capture back after the fixture's setup (over the embedded
        # AWS's stdout for the functions: deployguard_local.function_logs)
        captured = self.capsys.readouterr()
        self.records += put_emf(captured.out + "\n" + captured.err, clock.now())  # flushed as the run ended

    def advance(self, minutes: int, alarms: tuple[str, ...] = ()) -> list[dict[str, str]]:
        """Let ``minutes`` minutes pass: at each minute its run (when the schedule is enabled), then the
        alarms evaluated; returns their states, a minute each."""
        assert self.aws.clock is not None
        states = []
        for _ in range(minutes):
            now = clock.now()
            minute = datetime.fromtimestamp(int(now.timestamp()) // 60 * 60 + 60, tz=UTC)
            self.aws.clock.advance((minute - now).total_seconds())  # the minute's run fires and finishes
            states.append({name: evaluate(name, minute) for name in alarms})
        self.states += states
        return states


@pytest.fixture
def minutes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Minutes]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: each run prints its EMF record
    with EmbeddedAws(start=START, quiet=False) as aws:
        yield Minutes(aws, capsys)


def _ended_deployments(aws: EmbeddedAws, count: int) -> None:
    """``count`` rolled-back deployments of one function, ended half an hour ago, their next check due now."""
    versions = aws.deploy_sample_function("ended-fn", "live", sample_handler)
    target = LambdaTarget(function_name="ended-fn", alias="live", stable_version=versions[0], new_version=versions[1])
    repository, ended = DeploymentRepository(), clock.now() - timedelta(minutes=30)
    for n in range(count):
        repository.create_deployment(Deployment(
            deployment_id=f"end-{n:03d}", service="ended-fn", environment="production", version=versions[1],
            target=target, status=DeploymentStatus.ROLLED_BACK, phase=Phase.FAILED, started_at=ended,
            ended_at=ended, decision="rolled_back", traffic_check=TrafficCheck(checks=3, next_at=clock.now()),
        ))  # fmt: skip


def _slow_alias_reads() -> Any:
    """Every GetAlias answers after ALIAS_READ_SECONDS of simulated time (a throttled control plane, its
    retries); returns the undo."""
    events = clients.client("lambda").meta.events

    def slow(**_: Any) -> None:
        clock.sleep(ALIAS_READ_SECONDS)

    events.register_first("before-send.lambda.GetAlias", slow, unique_id="slow-alias-reads")
    return lambda: events.unregister("before-send.lambda.GetAlias", unique_id="slow-alias-reads")


def _backlog(run: ScheduleRun) -> bool:
    return bool(run.payload["deferred"] or run.payload["more_due"])


def test_a_run_writes_the_metrics_the_alarms_read(minutes: Minutes) -> None:
    minutes.advance(1)
    (record,) = minutes.records
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    for logical_id in (BACKLOG, STALLED):
        alarm = minutes.aws.stack.resolve(minutes.aws.stack.resources[logical_id]["Properties"])
        assert alarm["Namespace"] == directive["Namespace"]
        assert alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
        assert [[d["Name"] for d in alarm["Dimensions"]]] == directive["Dimensions"]
        assert all(record[d["Name"]] == d["Value"] for d in alarm["Dimensions"])
    assert record["TrafficChecks"] == [0.0] and record["TrafficChecksDeferred"] == [0.0]  # nothing due: still written


@pytest.mark.parametrize("backlog_minutes", [TO_ALARM - 1, TO_ALARM])
def test_a_backlog_pages_when_sustained_not_when_a_burst_clears(minutes: Minutes, backlog_minutes: int) -> None:
    """Ended deployments due at once while every alias read is slow: each run checks CHECKS_A_RUN and
    leaves the rest for the next. A backlog 9 minutes long does not page; one 10 minutes long (the
    alarm's 10 of 15) pages at the minute after its 10th, and the alarm is OK again once fewer than 10
    of the last 15 minutes had one. The runs never stop: the stalled-run alarm stays OK throughout."""
    minutes.advance(5)  # a stack that has been running (its metrics there), nothing due
    ended = CHECKS_A_RUN * (backlog_minutes + 1)
    _ended_deployments(minutes.aws, ended)
    for logical_id in (BACKLOG, STALLED):
        create_alarm(minutes.aws.stack, logical_id)
    first = len(minutes.runs)
    undo = _slow_alias_reads()
    try:
        states = minutes.advance(backlog_minutes + EVALUATED - TO_ALARM + 2, (BACKLOG, STALLED))
    finally:
        undo()
    runs = minutes.runs[first:]
    assert [r.payload["checked"] for r in runs[: backlog_minutes + 1]] == [CHECKS_A_RUN] * (backlog_minutes + 1)
    assert sum(r.payload["checked"] for r in runs) == ended  # every check made, none twice
    backlog = [_backlog(r) for r in runs]
    assert backlog == [True] * backlog_minutes + [False] * (len(runs) - backlog_minutes)
    assert all(s[STALLED] == "OK" for s in states)
    paging = [n for n, s in enumerate(states) if s[BACKLOG] == "ALARM"]
    # states[n] is evaluated at the minute of runs[n], over the 15 minutes before it (runs[n - 15] ... runs[n - 1]):
    # ALARM from the minute after the 10th backlog run, until fewer than 10 of the last 15 minutes had one
    pages = backlog_minutes >= TO_ALARM
    assert paging == (list(range(TO_ALARM, backlog_minutes + EVALUATED - TO_ALARM + 1)) if pages else [])
    assert states[-1][BACKLOG] == "OK"


def test_runs_that_stop_page_when_five_minutes_pass_without_one(minutes: Minutes) -> None:
    """The schedule rule disabled (through EventBridge, as a person or a deployment might): no run, no
    TrafficChecks datapoint. The stalled-run alarm goes to ALARM once five minutes passed without a
    run; the backlog alarm, whose missing data is no backlog, stays OK. Enabled again: OK."""
    minutes.advance(5)
    for logical_id in (BACKLOG, STALLED):
        create_alarm(minutes.aws.stack, logical_id)
    assert minutes.advance(1, (BACKLOG, STALLED)) == [{BACKLOG: "OK", STALLED: "OK"}]
    (rule,) = minutes.aws.schedule_rules(["TrafficCheckFunction"])
    events = clients.client("events")
    events.disable_rule(Name=rule)
    ran = len(minutes.runs)
    states = minutes.advance(7, (BACKLOG, STALLED))
    assert len(minutes.runs) == ran  # stopped
    assert [s[STALLED] for s in states] == ["OK"] * 5 + ["ALARM"] * 2  # ALARM once 5 minutes passed without a run
    assert all(s[BACKLOG] == "OK" for s in states)
    events.enable_rule(Name=rule)
    states = minutes.advance(2, (BACKLOG, STALLED))  # a run in each: OK once the first one's minute is evaluated
    assert states == [{BACKLOG: "OK", STALLED: "ALARM"}, {BACKLOG: "OK", STALLED: "OK"}]
    assert len(minutes.runs) == ran + 2
