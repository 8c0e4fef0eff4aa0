"""DynamoDB (moto) with the DeploymentsTable's keys, a simulated clock and a publisher on a moto SNS topic
that reads back what it published."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.models import DeploymentEvent
from deployguard.storage.repository import DeploymentRepository

TABLE = "deployguard-test-deployments"


class RecordingPublisher(EventPublisher):
    """The real publisher on a moto SNS topic, with an SQS queue subscribed (raw delivery) to read back what
    was published: ``events`` is every event SNS took, in order. The topic is made on first use, so the
    publisher can be built before the mocked AWS is up."""

    def __init__(self) -> None:
        self._topic: str | None = None
        self._queue = ""
        self._received: list[DeploymentEvent] = []

    @property  # type: ignore[override]
    def topic_arn(self) -> str:
        if self._topic is None:
            sns, sqs = clients.client("sns"), clients.client("sqs")
            topic = sns.create_topic(Name="deployguard-test-events")["TopicArn"]
            self._queue = sqs.create_queue(QueueName="deployguard-test-events")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
            self._topic = topic
        return self._topic

    @topic_arn.setter
    def topic_arn(self, value: str) -> None:  # EventPublisher.__init__ is not called: the topic is ours
        raise AttributeError("the recording publisher makes its own topic")

    @property
    def events(self) -> list[DeploymentEvent]:
        if self._topic is not None:
            sqs = clients.client("sqs")
            while messages := sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10).get("Messages"):
                for message in messages:
                    self._received.append(DeploymentEvent.model_validate_json(message["Body"]))
                    sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        return list(self._received)

    def publish(self, event: DeploymentEvent) -> str:
        _ = self.topic_arn
        return super().publish(event)

    def kinds(self) -> list[str]:
        return [str(e.details.get("kind")) for e in self.events]


def create_table() -> None:
    index = lambda name: {  # noqa: E731
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": f"{name}pk", "KeyType": "HASH"},
            {"AttributeName": f"{name}sk", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    clients.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[index("gsi1"), index("gsi2")],
    )


@pytest.fixture
def sim_clock() -> Iterator[clock.SimulatedClock]:
    sim = clock.SimulatedClock()
    clock.install(sim)
    yield sim
    clock.reset()


@pytest.fixture
def aws(sim_clock: clock.SimulatedClock, atomic_dynamodb: None) -> Iterator[Any]:
    with mock_aws():
        clients.reset()
        create_table()
        yield
    clients.reset()


@pytest.fixture
def repo(aws: Any) -> DeploymentRepository:
    return DeploymentRepository(TABLE)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()
