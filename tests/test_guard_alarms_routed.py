"""The guard's own alarms reach people: on the embedded AWS built from template.yaml, a CloudWatch alarm
notification published to the operator topic goes through its subscription to the notification router
function, which pages on-call (PagerDuty trigger, then resolve on OK, one dedup key per alarm) and posts to
Slack, local receivers on 127.0.0.1; a malformed one lands in the notification dead-letter queue naming
its field; events/sns_guard_alarm.json, the sample of this trigger, runs clean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployguard.aws import clients
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws
from deployguard_local.receivers import LocalReceivers, local_receivers

NAME = "deployguard-local-AssessorStalledAlarm-1A2B3C4D5E6F"


def _alarm(state: str, at: str, **changes: Any) -> str:
    sample = json.loads((REPO_ROOT / "events" / "sns_guard_alarm.json").read_text(encoding="utf-8"))
    document = json.loads(sample["Records"][0]["Sns"]["Message"])
    document.update(NewStateValue=state, OldStateValue="OK" if state == "ALARM" else "ALARM", StateChangeTime=at)
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    with local_receivers(echo=None) as receivers:
        notifications = {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {
                "ops-pagerduty": {"type": "pagerduty", "url": receivers.urls["pagerduty"], "routing_key": "rk"},
                "ops-slack": {"type": "slack", "url": receivers.urls["slack"]},
            },
            "roles": {"oncall-primary": {"channels": ["ops-pagerduty", "ops-slack"]}},
        }
        config = tmp_path / "deployguard.yaml"
        config.write_text(yaml.safe_dump({"environment": "production", "notifications": notifications}), "utf-8")
        with EmbeddedAws(config_file=config) as aws:
            yield aws, receivers


def test_an_alarm_published_to_the_operator_topic_pages_and_its_ok_resolves(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    aws, receivers = stack
    sns, topic = clients.client("sns"), aws.ref("OperatorTopic")
    for message in (_alarm("ALARM", "2026-01-01T12:16:00.000+0000"), _alarm("OK", "2026-01-01T12:24:00.000+0000"),
                    _alarm("ALARM", "2026-01-01T12:30:00.000+0000", NewStateValue=None)):  # fmt: skip
        sns.publish(TopicArn=topic, Message=message, Subject=f"ALARM: {NAME}")
    aws.invoker.drain()
    key = f"deployguard/guard-alarms/alert/{NAME}"
    assert [(r.json()["event_action"], r.json()["dedup_key"]) for r in receivers.received("pagerduty")] == [
        ("trigger", key),
        ("resolve", key),
    ]
    slack = json.dumps([r.json() for r in receivers.received("slack")])
    assert NAME in slack and "ALARM (was OK)" in slack and "OK (was ALARM)" in slack
    assert "US East (N. Virginia) (us-east-1)" in slack and "123456789012" in slack and "Breaching" in slack
    assert aws.invoker.failed == []
    queue = aws.ref("NotificationDeadLetterQueue")
    bodies = [m["Body"] for m in clients.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
              .get("Messages", [])]  # fmt: skip
    assert len(bodies) == 1 and "cloudwatch alarm: field NewStateValue: Field required" in bodies[0]


def test_the_sample_guard_alarm_event_runs_clean(stack: tuple[EmbeddedAws, LocalReceivers]) -> None:
    aws, receivers = stack
    event = json.loads((REPO_ROOT / "events" / "sns_guard_alarm.json").read_text(encoding="utf-8"))
    payload, errored = aws.invoke("NotificationRouterFunction", event)
    assert not errored and payload["malformed"] == 0 and payload["delivered"] == 2, payload
    assert receivers.counts()["pagerduty"] == receivers.counts()["slack"] == 1


def test_the_router_is_subscribed_to_the_operator_topic_with_the_dead_letter_queue() -> None:
    with EmbeddedAws() as aws:
        subscriptions = clients.client("sns").list_subscriptions_by_topic(TopicArn=aws.ref("OperatorTopic"))
        endpoints = [s["Endpoint"] for s in subscriptions["Subscriptions"]]
        assert endpoints == [aws.stack.get_att("NotificationRouterFunction", "Arn")]
        event = aws.stack.resolve(aws.stack.resources["NotificationRouterFunction"]["Properties"]["Events"])
        assert event["GuardAlarms"]["Properties"]["RedrivePolicy"] == {
            "deadLetterTargetArn": aws.stack.get_att("NotificationDeadLetterQueue", "Arn")
        }
        policy = aws.stack.resolve(aws.stack.resources["NotificationDeadLetterQueuePolicy"]["Properties"])
        (redrive,) = policy["PolicyDocument"]["Statement"]
        assert redrive["Condition"]["ArnEquals"]["aws:SourceArn"] == [
            aws.ref("DeploymentEventsTopic"),
            aws.ref("OperatorTopic"),
        ]
