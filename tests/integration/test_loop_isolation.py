"""One stored item the guard's models reject (a status, phase or event type written by a newer release,
or a hand edit) costs the loops that read it only itself: the minute tick (AssessorFunction on its
schedule event), the shard that holds it (AssessorShardFunction, from the assessment queue) and the
traffic checks (TrafficCheckFunction) skip it and work on every other item; it is logged and audited
once with its key, and counted every run (RecordsUnreadable: RecordsUnreadableAlarm after 3 minutes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf
from tick_support import CANARIES, minute_tick, schedule_event, seeded_loop

from deployguard import clock
from deployguard.aws.shards import send_shards
from deployguard.models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Phase,
    TrafficCheck,
)
from deployguard.storage import keys
from deployguard.storage.repository import RECORDED_AT, DeploymentRepository
from deployguard_local.bench_scale import seed_loop
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
POISON_KEY = f"{keys.deployment_pk('poison-1')}|{keys.META}"


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with seeded_loop() as aws:
        yield aws


def _poison(repository: DeploymentRepository) -> None:
    """An active deployment record with a status this release does not know (a newer release wrote it)."""
    item = repository._deployment_item(repository.get_deployment("bench-00001"))
    item[keys.PK] = keys.deployment_pk("poison-1")
    item["deployment_id"] = "poison-1"
    item["status"] = "paused_by_newer_release"
    item[keys.GSI1_SK] = item[keys.GSI1_SK].replace("bench-00001", "poison-1")
    repository.table.put_item(Item=item)


def _assessed_now(repository: DeploymentRepository) -> list[str]:
    """The canaries whose last look is this minute's."""
    recent = clock.now() - timedelta(seconds=30)
    found = []
    for deployment in repository.deployments_by_id(CANARIES):
        if deployment.last_assessment is not None and deployment.last_assessment.at >= recent:
            found.append(deployment.deployment_id)
    return found


def _unreadable_notes(repository: DeploymentRepository, deployment_id: str) -> list[Any]:
    return [a for a in repository.audit_trail(deployment_id) if a.action == "record_unreadable"]


def test_an_unreadable_active_record_is_skipped_the_tick_assesses_the_others(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    _poison(repository)
    payload = minute_tick(loop)  # the function does not fail
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == CANARIES
    assert payload["records_unreadable"] == [POISON_KEY] and payload["failed"] == {}
    assert loop.clock is not None
    loop.clock.advance(60)
    again = minute_tick(loop)  # counted every run, noted once
    assert sorted(a["deployment_id"] for a in again["assessed"]) == CANARIES
    assert again["records_unreadable"] == [POISON_KEY]
    [note] = _unreadable_notes(repository, "poison-1")
    assert note.details["record"] == POISON_KEY and "paused_by_newer_release" in note.reason


def test_an_unreadable_outbox_event_is_skipped_the_others_are_published(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    deployment = repository.get_deployment("bench-00002")
    waiting = DeploymentEvent.about(deployment, EventType.CONTROL_ACTION, "Canary Paused", "paused by bob",
                                    at=clock.now() - timedelta(minutes=2))  # fmt: skip
    assert not repository.outbox_record(waiting).published
    repository.table.update_item(Key=repository._event_key(waiting), UpdateExpression=f"SET {RECORDED_AT} = :at",
                                 ExpressionAttributeValues={":at": keys.time_key(waiting.at)})  # fmt: skip
    newer = DeploymentEvent.about(deployment, EventType.CONTROL_ACTION, "x", "y", at=clock.now() - timedelta(minutes=3))
    item = repository._outbox_item(newer, False)
    item["event_type"] = "canary.some_newer_event"  # written by a newer release of the guard
    repository.table.put_item(Item=item)
    payload = minute_tick(loop)
    assert "published_at" in repository.table.get_item(Key=repository._event_key(waiting))["Item"]
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == CANARIES
    assert payload["records_unreadable"] == [f"{item[keys.PK]}|{item[keys.SK]}"]
    assert len(_unreadable_notes(repository, "bench-00002")) == 1


def _unreadable_incident(loop: EmbeddedAws, repository: DeploymentRepository) -> str:
    """An open incident (bench-00000's, the long-running rule's) with a status this release does not know."""
    repository.update_deployment("bench-00000", lambda d: setattr(d, "expected_duration_seconds", 60))
    minute_tick(loop)
    incidents = [
        i
        for i in repository.table.query(
            IndexName=keys.GSI1,
            KeyConditionExpression="gsi1pk = :pk",
            ExpressionAttributeValues={":pk": keys.LOOP},
        )["Items"]
        if keys.loop_kind(i[keys.GSI1_SK]) == keys.INCIDENT_OPEN
    ]
    assert len(incidents) == 1
    incidents[0]["status"] = "some_newer_status"
    repository.table.put_item(Item=incidents[0])
    assert loop.clock is not None
    loop.clock.advance(60)
    return f"{incidents[0][keys.PK]}|{incidents[0][keys.SK]}"


def test_an_unreadable_open_incident_is_skipped_the_tick_goes_on(loop: EmbeddedAws) -> None:
    key = _unreadable_incident(loop, DeploymentRepository())
    payload = minute_tick(loop)
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == CANARIES
    assert payload["records_unreadable"] == [key]


def test_an_unreadable_open_incident_is_skipped_by_a_shard(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    _unreadable_incident(loop, repository)
    send_shards(loop.ref("AssessmentQueue"), [CANARIES], clock.now())
    [(payload, errored)] = loop.deliver_queue("AssessorShardFunction")  # its own read of the open incidents
    assert not errored, payload
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == CANARIES
    assert _assessed_now(repository) == CANARIES


def test_an_unreadable_record_in_a_shard_costs_the_shard_only_itself(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    _poison(repository)
    send_shards(loop.ref("AssessmentQueue"), [["poison-1", "bench-00000", "bench-00002"]], clock.now())
    [(payload, errored)] = loop.deliver_queue("AssessorShardFunction")
    assert not errored, payload
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == ["bench-00000", "bench-00002"]
    assert payload["records_unreadable"] == [POISON_KEY]
    assert _assessed_now(repository) == ["bench-00000", "bench-00002"]


def test_an_unreadable_ended_record_leaves_the_other_traffic_checks_to_run(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    versions = loop.deploy_sample_function("split-fn", "live", sample_handler)
    lam = boto3.client("lambda")
    lam.update_alias(FunctionName="split-fn", Name="live", FunctionVersion=versions[0],
                     RoutingConfig={"AdditionalVersionWeights": {versions[1]: 0.1}})  # fmt: skip
    now = clock.now()
    target = LambdaTarget(function_name="split-fn", alias="live", stable_version=versions[0], new_version=versions[1])
    split = Deployment(deployment_id="split-1", service="split-fn", environment="production", version=versions[1],
                       target=target, status=DeploymentStatus.ROLLED_BACK, phase=Phase.FAILED, driver="codedeploy",
                       started_at=now - timedelta(minutes=12), ended_at=now - timedelta(minutes=2),
                       traffic_check=TrafficCheck(checks=0, next_at=now - timedelta(minutes=1)))  # fmt: skip
    repository.create_deployment(split)
    bad = repository._deployment_item(split.model_copy(update={"deployment_id": "bad-1"}))
    bad[keys.PK] = keys.deployment_pk("bad-1")
    bad[keys.GSI1_SK] = bad[keys.GSI1_SK].replace("split-1", "bad-1")
    bad["phase"] = "some_newer_phase"
    repository.table.put_item(Item=bad)
    payload, errored = loop.invoke("TrafficCheckFunction", schedule_event())
    assert not errored, payload
    alias = lam.get_alias(FunctionName="split-fn", Name="live")
    assert not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")  # repaired
    assert alias["FunctionVersion"] == versions[0]
    assert [r["deployment_id"] for r in payload["repaired"]] == ["split-1"]
    assert payload["records_unreadable"] == [f"{keys.deployment_pk('bad-1')}|{keys.META}"]
    assert len(_unreadable_notes(repository, "bad-1")) == 1


def test_records_unreadable_three_minutes_running_raise_the_alarm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: each run prints its EMF record
    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC), quiet=False) as aws:
        seed_loop(deployments=3, age_minutes=5, monitored=0)
        assert aws.clock is not None
        aws.clock.advance(60)
        _poison(DeploymentRepository())
        alarm = create_alarm(Stack.load(ROOT), "RecordsUnreadableAlarm")
        capsys.readouterr()
        logs = ""
        for _ in range(3):
            minute_tick(aws)
            printed = capsys.readouterr()
            logs += printed.out + printed.err
            put_emf(printed.out + "\n" + printed.err, clock.now())  # as CloudWatch Logs would: the run's metrics
            aws.clock.advance(60)
        assert evaluate(alarm, clock.now().replace(second=0, microsecond=0)) == "ALARM"
        assert logs.count("a stored record cannot be read") == 1  # logged once, not every minute
        assert POISON_KEY in logs
