"""The minute tick (the AssessorFunction on its schedule event, on the embedded AWS) keeps one
deployment's trouble to that deployment: an alert engine or a write that fails for one does not
stop the others' assessments, the outbox or the alert tick; a deployment whose metrics cannot be
read is not skipped in silence (audited once, logged, counted)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf
from tick_support import function_faults, minute_tick, seeded_loop

from deployguard import clock
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EcsTarget,
    EventType,
    Phase,
)
from deployguard.storage import keys
from deployguard.storage.repository import RECORDED_AT, DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.emulator import EmbeddedAws
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call (adaptive mode: 8 retries)


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with seeded_loop() as aws:
        yield aws


@pytest.fixture
def faults(loop: EmbeddedAws) -> Iterator[FaultInjector]:
    with function_faults(loop) as injector:  # the functions' calls only
        yield injector


def _tick(aws: EmbeddedAws) -> dict[str, Any]:
    return minute_tick(aws)


def _when(*texts: bytes) -> Any:
    return lambda request: all(text in (request.body or b"") for text in texts)


def _waiting_event(deployment_id: str) -> DeploymentEvent:
    """An event recorded two minutes ago whose publication failed then: the tick's outbox publishes it."""
    deployment = DeploymentRepository().get_deployment(deployment_id)
    event = DeploymentEvent.about(deployment, EventType.CONTROL_ACTION, "Canary Paused", "paused by bob",
                                  at=clock.now() - timedelta(minutes=2))  # fmt: skip
    repository = DeploymentRepository()
    assert not repository.outbox_record(event).published
    repository.table.update_item(  # recorded then too: the tick's grace runs from the recording
        Key=repository._event_key(event),
        UpdateExpression=f"SET {RECORDED_AT} = :at",
        ExpressionAttributeValues={":at": keys.time_key(event.at)},
    )
    return event


def test_one_deployment_s_alerting_failure_stops_neither_the_others_nor_the_tick(
    loop: EmbeddedAws, faults: FaultInjector
) -> None:
    repository = DeploymentRepository()
    # bench-00000, assessed first, runs past its expected duration: the long-running rule fires on its assessment
    repository.update_deployment("bench-00000", lambda d: setattr(d, "expected_duration_seconds", 60))
    waiting = _waiting_event("bench-00002")
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_when(b"ALERT-COOLDOWN", b"bench-00000"))
    payload = _tick(loop)
    assert plan.injected == 9  # its alerting failed
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == ["bench-00000", "bench-00001", "bench-00002"]
    assert payload["failed"] == {}
    actions = Counter(a.action for a in repository.audit_trail("bench-00000"))
    assert actions["alerting_failed"] == 1
    # the rest of the tick ran: the outbox went out, and the alert tick raised the rule (its cooldown is free)
    assert repository.outbox(clock.now() + timedelta(days=1)) == []
    assert [e.event_id for e in repository.events("bench-00002") if e.event_id == waiting.event_id]
    incidents = [i for i in IncidentRepository(repository).recent() if i.deployment_id == "bench-00000"]
    assert [i.rules for i in incidents] == [["long-running-deployment"]]


def test_a_deployment_whose_assessment_cannot_be_stored_is_retried_the_others_are_assessed(
    loop: EmbeddedAws, faults: FaultInjector
) -> None:
    plan = faults.on("dynamodb", "TransactWriteItems", ONE_CALL, when=_when(b"bench-00000"))
    payload = _tick(loop)
    assert plan.injected == 9
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == ["bench-00001", "bench-00002"]
    assert list(payload["failed"]) == ["bench-00000"]  # reported, and still due: the next tick assesses it
    assert loop.clock is not None
    loop.clock.advance(60)
    assert "bench-00000" in [a["deployment_id"] for a in _tick(loop)["assessed"]]


def _unreadable_ecs(status: DeploymentStatus, phase: Phase, deployment_id: str) -> None:
    """An ECS deployment of checkout-web (target groups' metrics) whose target groups were never learnt."""
    now = clock.now()
    DeploymentRepository().create_deployment(
        Deployment(
            deployment_id=deployment_id, service="checkout-web", environment="production", version="checkout-web:2",
            target=EcsTarget(cluster="shop", service="checkout-web"), status=status, phase=phase,
            driver="codedeploy", started_at=now - timedelta(minutes=20),
            ended_at=now - timedelta(minutes=10) if status.is_terminal else None,
        )
    )  # fmt: skip


@pytest.fixture
def loud(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedAws]:
    """The demo's stack with the functions' logs and EMF metrics on, as deployed."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # each run prints its EMF record
    with EmbeddedAws(config_file=ROOT / "examples" / "deployguard.yaml", quiet=False) as aws:
        yield aws


def test_a_deployment_whose_metrics_cannot_be_read_is_audited_once_and_counted(
    loud: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded = loud
    _unreadable_ecs(DeploymentStatus.IN_PROGRESS, Phase.DEPLOYMENT_ACTIVE, "dep-ecs-canary")
    _unreadable_ecs(DeploymentStatus.SUCCEEDED, Phase.MONITORING, "dep-ecs-monitored")
    assert embedded.clock is not None
    payloads, logs = [], ""
    alarm = create_alarm(Stack.load(Path(__file__).resolve().parents[2]), "DeploymentsUnreadableAlarm")
    for _ in range(3):  # three minutes: due every minute, never assessed
        payloads.append(_tick(embedded))
        printed = capsys.readouterr()
        logs += printed.out + printed.err
        put_emf(printed.out + "\n" + printed.err, clock.now())  # as CloudWatch Logs would: the run's metrics
        embedded.clock.advance(60)
    assert evaluate(alarm, clock.now().replace(second=0, microsecond=0)) == "ALARM"  # the operator is told
    for payload in payloads:
        assert {"dep-ecs-canary", "dep-ecs-monitored"} <= set(payload["unreadable"])
        assert "dep-ecs-monitored" not in payload["monitored"]
    repository = DeploymentRepository()
    for deployment_id, kind in (("dep-ecs-canary", "canary"), ("dep-ecs-monitored", "post_deployment")):
        [entry] = [a for a in repository.audit_trail(deployment_id) if a.action == "metrics_unreadable"]
        assert entry.details["kind"] == kind and "cannot be read" in entry.reason
    assert "deployment not assessed: its metrics cannot be read" in logs


def test_a_metrics_read_that_fails_leaves_its_chunk_due_and_the_tick_ends(
    loop: EmbeddedAws, faults: FaultInjector
) -> None:
    """GetMetricData throttled past botocore's retries: the chunk's deployments are reported failed and stay
    due (the next tick assesses them); the outbox is published and the alert tick runs all the same."""
    repository = DeploymentRepository()
    # bench-00000 runs past its expected duration: with its assessment failed, only the alert tick raises the rule
    repository.update_deployment("bench-00000", lambda d: setattr(d, "expected_duration_seconds", 60))
    waiting = _waiting_event("bench-00002")
    plan = faults.on("cloudwatch", "GetMetricData", ONE_CALL)
    payload = _tick(loop)
    assert plan.injected == len(ONE_CALL)
    assert sorted(payload["failed"]) == ["bench-00000", "bench-00001", "bench-00002"]
    assert all("metrics not read" in reason for reason in payload["failed"].values())
    assert waiting.event_id not in {o.event.event_id for o in repository.outbox(clock.now() + timedelta(days=1))}
    incidents = [i for i in IncidentRepository(repository).recent() if i.deployment_id == "bench-00000"]
    assert [i.rules for i in incidents] == [["long-running-deployment"]]  # the alert tick ran
    before = {d: len(repository.assessments(d)) for d in payload["failed"]}
    assert loop.clock is not None
    loop.clock.advance(60)
    again = _tick(loop)
    assert again["failed"] == {} and all(len(repository.assessments(d)) == n + 1 for d, n in before.items())
