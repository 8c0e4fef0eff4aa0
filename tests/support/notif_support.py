"""Fixtures of the notification tests: moto AWS, a simulated clock, a router factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployguard import clock
from deployguard.aws import clients
from deployguard.models import DeploymentEvent, EventType, Severity, VerdictReason
from deployguard.notification.delivery import Deliverer
from deployguard.notification.router import NotificationRouter
from deployguard.notification.settings import NotificationSettings
from deployguard.storage.repository import DeploymentRepository

TABLE = "deployguard-test-deployments"


def create_table(name: str = TABLE) -> None:
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                    {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in ("gsi1", "gsi2")
        ],
    )


@dataclass
class Aws:
    repository: DeploymentRepository
    dlq_url: str
    email_topic: str
    sms_topic: str
    clock: clock.SimulatedClock
    sleeps: list[float] = field(default_factory=list)

    def dlq_messages(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name="us-east-1")
        found: list[dict[str, Any]] = []
        while True:
            resp = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            batch = resp.get("Messages", [])
            new = [m for m in batch if m["MessageId"] not in {f["MessageId"] for f in found}]
            if not new:
                return found
            found += new

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def router(self, settings: NotificationSettings, dlq: bool = True, **kwargs: Any) -> NotificationRouter:
        deliverer = Deliverer(settings.delivery, settings.allowed_hosts, True, sleep=self.sleep)
        return NotificationRouter(
            settings,
            self.repository,
            self.dlq_url if dlq else None,
            local_mode=kwargs.pop("local_mode", True),
            deliverer=kwargs.pop("deliverer", deliverer),
            **kwargs,
        )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    monkeypatch.setenv("DEPLOYMENTS_TABLE", TABLE)
    sim = clock.SimulatedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    with mock_aws():
        clients.reset()
        clock.install(sim)
        create_table()
        dlq_url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="notification-dlq")["QueueUrl"]
        sns = boto3.client("sns", region_name="us-east-1")
        email_topic = sns.create_topic(Name="deployguard-email")["TopicArn"]
        sms_topic = sns.create_topic(Name="deployguard-sms")["TopicArn"]
        try:
            yield Aws(DeploymentRepository(TABLE), dlq_url, email_topic, sms_topic, sim)
        finally:
            clock.reset()
            clients.reset()


def make_event(
    event_type: EventType = EventType.DEPLOYMENT_FAILED,
    severity: Severity = Severity.ERROR,
    deployment_id: str = "dg-1",
    service: str = "checkout",
    environment: str = "production",
    **kwargs: Any,
) -> DeploymentEvent:
    defaults: dict[str, Any] = {
        "version": "42",
        "title": f"{event_type.value} for {service}",
        "message": "canary error rate above baseline",
        "reasons": [
            VerdictReason(
                metric_id="error_rate",
                status="fail",
                effect=3.2,
                baseline_value=0.01,
                canary_value=0.042,
                confidence=0.99,
                message="canary errors 4x baseline",
            )
        ],
        "links": {"Dashboard": "https://console.aws.amazon.com/cloudwatch/home#dashboards"},
        "details": {"duration_seconds": 754, "components": ["checkout-api", "checkout-worker"], "error": "5xx spike"},
    }
    defaults.update(kwargs)
    return DeploymentEvent(
        event_type=event_type,
        severity=severity,
        deployment_id=deployment_id,
        service=service,
        environment=environment,
        **defaults,
    )


@pytest.fixture
def event_factory() -> Callable[..., DeploymentEvent]:
    return make_event
