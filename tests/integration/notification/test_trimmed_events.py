"""An event over SNS's 256 KiB is published trimmed (``deployguard.aws.events.fit_for_sns``): what the
router reads to route and act is kept, so a trimmed event still does what it says at the receivers
(real HTTP receivers on 127.0.0.1, moto's SNS topic and queue between the publisher and the router)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from notif_support import Aws, make_event

from deployguard.aws import events
from deployguard.aws.events import EventPublisher
from deployguard.models import DeploymentEvent, EventType, Severity, VerdictReason
from deployguard.notification.settings import NotificationSettings
from deployguard_local.receivers import LocalReceivers, local_receivers


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(echo=None) as group:
        yield group


def _settings(receivers: LocalReceivers) -> NotificationSettings:
    return NotificationSettings.model_validate({
        "allowed_hosts": ["127.0.0.1"],
        "channels": {"ops-pagerduty": {"type": "pagerduty", "url": receivers.urls["pagerduty"], "routing_key": "k"},
                     "ops-slack": {"type": "slack", "url": receivers.urls["slack"]}},
        "roles": {"oncall": {"channels": ["ops-pagerduty"]}},
        "routes": [{"name": "chat", "channels": ["ops-slack"]}],  # PagerDuty only by an escalation's routes
        "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.001},
    })  # fmt: skip


def _through_sns(event: DeploymentEvent) -> DeploymentEvent:
    """Published on a topic (moto refuses a message over 256 KiB as SNS does), read back as the router gets it."""
    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="deployguard-events")["TopicArn"]
    queue = sqs.create_queue(QueueName="events-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    EventPublisher(topic).publish(event)
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    return DeploymentEvent.model_validate_json(message["Body"])


def _actions(receivers: LocalReceivers) -> list[tuple[str, str]]:
    return [(r.json()["event_action"], r.json()["dedup_key"]) for r in receivers.received("pagerduty")]


def _reasons(count: int) -> list[VerdictReason]:
    return [VerdictReason(metric_id=f"m{i}", status="fail", message="x" * 400) for i in range(count)]


def test_an_oversized_incident_resolved_still_resolves_its_pagerduty_incident(
    aws: Aws, receivers: LocalReceivers
) -> None:
    details: dict[str, Any] = {"kind": "incident_resolved", "incident_id": "inc-1", "state": "resolved",
                               "routes": ["oncall"], "timeline": ["y" * 1000] * 100}  # fmt: skip
    resolved = make_event(EventType.ALERT, Severity.CRITICAL, message="z" * 300_000, details=details)
    got = _through_sns(resolved)
    assert got.event_id == resolved.event_id and "left out" in got.details[events.TRIMMED]
    router = aws.router(_settings(receivers))
    router.route(got)
    assert _actions(receivers) == [("resolve", "deployguard/dg-1/incident/inc-1")]


def test_oversized_reasons_leave_the_details_whole(aws: Aws, receivers: LocalReceivers) -> None:
    healthy = make_event(EventType.ASSESSMENT_STATUS_CHANGED, Severity.INFO, reasons=_reasons(700),
                         details={"status": "healthy", "previous": "failing", "duration_seconds": 60})  # fmt: skip
    got = _through_sns(healthy)
    assert got.details["status"] == "healthy" and got.details["duration_seconds"] == 60
    assert 0 < len(got.reasons) < 700 and "reasons" in got.details[events.TRIMMED]
    assert got.message == healthy.message


def test_an_oversized_escalation_page_keeps_its_routes(aws: Aws, receivers: LocalReceivers) -> None:
    page = make_event(EventType.ALERT, Severity.WARNING, reasons=_reasons(300), message="m" * 200_000,
                      details={"kind": "page", "incident_id": "inc-2", "routes": ["oncall"], "step_index": 1,
                               "report": {"checks": ["c" * 1000] * 200}})  # fmt: skip
    got = _through_sns(page)
    assert got.details["routes"] == ["oncall"] and got.details["detail_keys"] == ["report"]
    router = aws.router(_settings(receivers))
    statuses = {n.channel: n.status.value for n in router.route(got)}
    assert statuses["ops-pagerduty"] == "delivered"
    assert _actions(receivers) == [("trigger", "deployguard/dg-1/incident/inc-2")]
    assert json.loads(receivers.received("pagerduty")[0].body)["payload"]["severity"] == "warning"
