"""DynamoDB (moto) with the DeploymentsTable's keys, a simulated clock and a recording publisher."""

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
    def __init__(self) -> None:
        self.topic_arn = "arn:aws:sns:us-east-1:123456789012:test"
        self.events: list[DeploymentEvent] = []

    def publish(self, event: DeploymentEvent) -> str:
        self.events.append(event)
        return event.event_id

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
