"""The outbox (deployguard.storage.outbox) on moto: DynamoDB, an SNS topic with an SQS queue
subscribed (what reached the topic), publication faults injected with a botocore hook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto_table import TABLE, aws, sim_clock  # noqa: F401  (fixtures)

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.models import DeploymentEvent, EventType
from deployguard.storage import outbox
from deployguard.storage.repository import DeploymentRepository


class Topic:
    """A real SNS topic (moto) and a queue subscribed to it; ``down`` makes every Publish fail."""

    def __init__(self) -> None:
        sns, sqs = clients.client("sns"), clients.client("sqs")
        self.arn = sns.create_topic(Name="events")["TopicArn"]
        self.queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        self.down = False
        self.seen: list[str] = []
        sns.meta.events.register("before-call.sns.Publish", self._refuse, unique_id="test-outbox-down")

    def _refuse(self, **_: Any) -> None:
        if self.down:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "injected"}}, "Publish")

    def received(self) -> list[str]:
        """Event ids that reached the topic so far (in order)."""
        sqs = clients.client("sqs")
        while messages := sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                self.seen.append(json.loads(message["Body"])["event_id"])
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return self.seen

    def close(self) -> None:
        clients.client("sns").meta.events.unregister("before-call.sns.Publish", unique_id="test-outbox-down")


@pytest.fixture
def topic(aws: None) -> Iterator[Topic]:  # noqa: F811
    made = Topic()
    yield made
    made.close()


@pytest.fixture
def table(aws: None) -> DeploymentRepository:  # noqa: F811
    return DeploymentRepository(TABLE)


class Engine:
    """What the outbox calls: the alert engine's entry for an event (failing ``fail`` times first)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def __call__(self, event: DeploymentEvent) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("alert engine down")
        self.seen.append(event.event_id)


def _event(event_id: str = "ev-1") -> DeploymentEvent:
    return DeploymentEvent(event_id=event_id, event_type=EventType.ROLLBACK_FAILED, deployment_id="d-1",
                           service="orders", version="2", environment="prod", title="Rollback Failed")  # fmt: skip


def _waiting(repository: DeploymentRepository) -> list[str]:
    return [e.event.event_id for e in repository.outbox(clock.now() + timedelta(days=1))]


def _tick(repository: DeploymentRepository, topic: Topic, alert: Any, minutes: int = 2) -> None:
    """Minutes pass (the simulated clock); the minute tick's part of the outbox runs."""
    clock.sleep(60 * minutes)
    outbox.drain(repository, EventPublisher(topic.arn), repository.outbox(clock.now()), alert=alert)


def test_a_refused_publication_waits_in_the_outbox_and_the_alert_engine_runs_at_once(
    table: DeploymentRepository, topic: Topic
) -> None:
    engine, publisher, event = Engine(), EventPublisher(topic.arn), _event()
    topic.down = True
    entry = outbox.announce(table, publisher, event, alert=engine)
    assert entry.new and topic.received() == [] and engine.seen == ["ev-1"]
    assert _waiting(table) == ["ev-1"]
    outbox.announce(table, publisher, event, alert=engine)  # the step retried (same id and time): not alerted twice
    assert engine.seen == ["ev-1"]
    _tick(table, topic, engine)  # SNS still down: stays
    assert topic.received() == [] and _waiting(table) == ["ev-1"]
    topic.down = False
    _tick(table, topic, engine)
    assert topic.received() == ["ev-1"] and _waiting(table) == [] and engine.seen == ["ev-1"]
    assert not outbox.announce(table, publisher, event, alert=engine).new  # a retry after: nothing again
    assert topic.received() == ["ev-1"] and engine.seen == ["ev-1"]


def test_an_alert_engine_that_fails_is_run_again_by_the_tick_once_it_works(
    table: DeploymentRepository, topic: Topic
) -> None:
    engine = Engine(fail=1)
    outbox.announce(table, EventPublisher(topic.arn), _event(), alert=engine)
    assert topic.received() == ["ev-1"] and engine.seen == []
    assert _waiting(table) == ["ev-1"]  # published, not alerted: it stays for the tick
    _tick(table, topic, engine)
    assert engine.seen == ["ev-1"] and _waiting(table) == [] and topic.received() == ["ev-1"]
    [failed] = [a for a in table.audit_trail("d-1") if a.action == "alerting_failed"]
    assert "the minute tick runs it again" in failed.reason


def test_an_alert_engine_that_keeps_failing_is_given_up_loudly(table: DeploymentRepository, topic: Topic) -> None:
    engine = Engine(fail=10)
    outbox.announce(table, EventPublisher(topic.arn), _event(), alert=engine)
    for _ in range(outbox.MAX_ALERT_ATTEMPTS + 2):
        _tick(table, topic, engine)
    assert engine.fail == 10 - outbox.MAX_ALERT_ATTEMPTS and _waiting(table) == []
    reasons = [a.reason for a in table.audit_trail("d-1") if a.action == "alerting_failed"]
    assert len(reasons) == outbox.MAX_ALERT_ATTEMPTS and "given up" in reasons[-1]


def test_an_alert_run_in_flight_is_not_run_beside_it(table: DeploymentRepository, topic: Topic) -> None:
    """A run that died holding the lease (a function timed out) is redone once the lease expires."""
    engine = Engine()
    event = _event()
    table.outbox_record(event, alerts=True)
    assert table.claim_once(outbox.ALERTING, event.event_id, outbox.ALERT_LEASE)  # another attempt runs it
    _tick(table, topic, engine)
    assert engine.seen == [] and topic.received() == ["ev-1"] and _waiting(table) == ["ev-1"]
    _tick(table, topic, engine, minutes=16)
    assert engine.seen == ["ev-1"] and _waiting(table) == []
