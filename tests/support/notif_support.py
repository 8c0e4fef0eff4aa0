"""Fixtures of the notification tests: moto AWS, a simulated clock, a router factory."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
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


# ------------------------------------------------------------------ the router function's handler

ROUTER_APP = Path(__file__).resolve().parents[2] / "functions" / "notification_router" / "app.py"
SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event"}  # the router's one-minute schedule
TOPIC = "arn:aws:sns:us-east-1:123456789012:deployguard-events"


@dataclass
class Context:
    """The Lambda context the router function's handler reads."""

    function_name: str = "NotificationRouterFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:NotificationRouterFunction"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000  # the router function's timeout; the deliveries here end long before


def sns_event(*messages: str) -> dict[str, Any]:
    """An SNS invocation of the router function, one record per message."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{TOPIC}:sub-1",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"msg-{i}",
                    "TopicArn": TOPIC,
                    "Subject": "[production] Deployment Failed",
                    "Message": message,
                    "Timestamp": "2026-03-01T12:00:00.000Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
            for i, message in enumerate(messages)
        ]
    }


@contextmanager
def router_app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The router function's module (functions/notification_router/app.py), in local mode with the
    dead-letter queue; its cached configuration and router are dropped at the end."""
    monkeypatch.setenv("NOTIFICATION_DLQ_URL", aws.dlq_url)
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    spec = importlib.util.spec_from_file_location("notification_router_app", ROUTER_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        module.reset()


def write_notifications(path: Path, notifications: dict[str, Any]) -> Path:
    """A configuration file with these ``notifications`` (the router reads DEPLOYGUARD_CONFIG_FILE)."""
    path.write_text(yaml.safe_dump({"environment": "production", "notifications": notifications}), encoding="utf-8")
    return path


def status_event(aws: Aws, status: str, deployment_id: str = "dg-1") -> DeploymentEvent:
    """The assessment's change of status now (degraded: a warning; PagerDuty triggers at warning in the
    flap guard's tests)."""
    severity = Severity.INFO if status == "healthy" else Severity.WARNING
    return make_event(EventType.ASSESSMENT_STATUS_CHANGED, severity, deployment_id=deployment_id, at=aws.clock(),
                      details={"status": status})  # fmt: skip


def invoke(app: ModuleType, event: Any, new_container: bool = True) -> Any:
    """One invocation of the router function's handler, by default in a new container (nothing kept in
    memory: the configuration is read again); else in the container of the last one (faster)."""
    if new_container:
        app.reset()
    return app.lambda_handler(event, Context())


def send(app: ModuleType, event: DeploymentEvent, new_container: bool = True) -> Any:
    """``event`` published on the topic: the SNS invocation of the router function."""
    return invoke(app, sns_event(event.model_dump_json()), new_container)


def pagerduty_actions(receivers: Any) -> list[tuple[str, str]]:
    """What the local PagerDuty receiver was told: (event_action, dedup_key), in the order it got them."""
    return [(r.json()["event_action"], r.json()["dedup_key"]) for r in receivers.received("pagerduty")]


def write_pagerduty_config(path: Path, url: str, delay: int = 180) -> Path:
    """A configuration routing every event to one PagerDuty channel at ``url`` (a local receiver) that
    triggers at warning and defers the resolve of a recovery ``delay`` seconds (its flap guard)."""
    pagerduty = {"type": "pagerduty", "url": url, "routing_key": "local-routing-key",
                 "trigger_severity": "warning", "resolve_after_healthy_seconds": delay}  # fmt: skip
    notifications = {
        "allowed_hosts": ["127.0.0.1"],  # loopback receivers: explicit opt-in, local mode only
        "channels": {"ops-pagerduty": pagerduty},
        "routes": [{"channels": ["ops-pagerduty"]}],
        "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.001},
    }
    return write_notifications(path, notifications)
