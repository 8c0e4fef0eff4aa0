"""DeployGuard's own CloudWatch alarms reaching the notification router function (the SNS invocation of its
handler, as the operator topic's subscription sends it): routed as alerts to the configured channels,
local receivers on 127.0.0.1; a malformed alarm notification is dead-lettered naming the field."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from notif_support import TABLE, Aws, invoke, make_event, pagerduty_actions, router_app, sns_event, write_notifications

from deployguard.exceptions import ConfigError
from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.settings import parse_notification_settings
from deployguard_local import notifications_cli
from deployguard_local.receivers import LocalReceivers, local_receivers

NAME = "deployguard-AssessorStalledAlarm-1A2B3C"
KEY = f"deployguard/guard-alarms/alert/{NAME}"


def alarm(state: str = "ALARM", at: str = "2026-03-01T12:00:00.000+0000", name: str = NAME, **changes: Any) -> str:
    """The message CloudWatch publishes to the operator topic when an alarm changes state."""
    document: dict[str, Any] = {
        "AlarmName": name,
        "AlarmDescription": "The assessor has not run for 5 minutes.",
        "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": "2026-03-01T09:00:00.000+0000",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 5 missing datapoints were treated as [Breaching].",
        "StateChangeTime": at,
        "Region": "US East (N. Virginia)",
        "AlarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        "OldStateValue": "OK" if state == "ALARM" else "ALARM",
        "OKActions": ["arn:aws:sns:us-east-1:123456789012:deployguard-OperatorTopic"],
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:deployguard-OperatorTopic"],
        "InsufficientDataActions": [],
        "Trigger": {"MetricName": "DeploymentsDue", "Namespace": "DeployGuard", "Statistic": "SAMPLE_COUNT",
                    "Dimensions": [{"value": "deployguard", "name": "service"}], "Period": 60,
                    "EvaluationPeriods": 5, "ComparisonOperator": "LessThanThreshold", "Threshold": 1.0,
                    "TreatMissingData": "breaching"},
    }  # fmt: skip
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None})


def write_config(path: Path, receivers: LocalReceivers, **guard_alarms: Any) -> Path:
    """On-call (PagerDuty and Slack, the role the default escalation pages), ops' Teams by a route for alerts,
    a webhook only for the checkout services' deployments."""
    notifications: dict[str, Any] = {
        "allowed_hosts": ["127.0.0.1"],  # loopback receivers: explicit opt-in, local mode only
        "channels": {
            "ops-pagerduty": {"type": "pagerduty", "url": receivers.urls["pagerduty"], "routing_key": "rk"},
            "ops-slack": {"type": "slack", "url": receivers.urls["slack"]},
            "ops-teams": {"type": "teams", "url": receivers.urls["teams"]},
            "dev-webhook": {"type": "webhook", "url": receivers.urls["webhook"], "signing_key": "k"},
        },
        "roles": {"oncall-primary": {"channels": ["ops-pagerduty", "ops-slack"]}, "ops": {"channels": ["ops-teams"]}},
        "routes": [
            {"name": "ops-alerts", "roles": ["ops"], "event_types": ["alert"]},
            {"name": "dev", "channels": ["dev-webhook"], "services": ["checkout-*"]},
        ],
        "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.001},
    }
    if guard_alarms:
        notifications["guard_alarms"] = guard_alarms
    return write_notifications(path, notifications)


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with router_app(aws, monkeypatch) as module:
        yield module


@pytest.fixture
def receivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalReceivers]:
    with local_receivers(signing_key="k", echo=None) as found:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", found)))
        yield found


def test_alarm_pages_on_call_and_its_ok_resolves_the_same_incident(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    fired = invoke(app, sns_event(alarm("ALARM")))
    resolved = invoke(app, sns_event(alarm("OK", at="2026-03-01T12:07:30.000+0000")))
    assert fired["malformed"] == resolved["malformed"] == 0
    assert fired["delivered"] == resolved["delivered"] == 3  # PagerDuty, Slack (on-call), Teams (route for alerts)
    assert pagerduty_actions(receivers) == [("trigger", KEY), ("resolve", KEY)]
    trigger = receivers.received("pagerduty")[0].json()
    assert trigger["payload"]["severity"] == "critical" and NAME in trigger["payload"]["summary"]
    details = trigger["payload"]["custom_details"]
    assert details["alarm"] == NAME and details["state"] == "ALARM (was OK)"
    assert details["region"] == "US East (N. Virginia) (us-east-1)" and details["account"] == "123456789012"
    assert details["reason"].startswith("Threshold Crossed") and details["time"] == "2026-03-01 12:00:00 UTC"
    # Slack: alarm name, state, reason, time, region and account, a link to the alarm
    slack = [r.json() for r in receivers.received("slack")]
    fields = [f["text"] for f in slack[0]["blocks"][1]["fields"]]
    for expected in (f"*Alarm*\n{NAME}", "*State*\nALARM (was OK)", "*Time*\n2026-03-01 12:00:00 UTC",
                     "*Region*\nUS East (N. Virginia) (us-east-1)", "*Account*\n123456789012"):  # fmt: skip
        assert expected in fields, fields
    assert any(f.startswith("*Reason*\nThreshold Crossed") for f in fields)
    assert "OK (was ALARM)" in json.dumps(slack[1])
    buttons = next(b for b in slack[0]["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["url"].endswith(f"#alarmsV2:alarm/{NAME}") and "region=us-east-1" in buttons[0]["url"]
    card = json.dumps(receivers.received("teams")[0].json())
    assert NAME in card and "123456789012" in card and "Threshold Crossed" in card
    assert receivers.counts()["webhook"] == 0  # the dev route is for the checkout services only
    recorded = aws.repository.notifications("guard-alarms")
    assert len(recorded) == 6 and {n.status for n in recorded} == {DeliveryStatus.DELIVERED}


def test_alarms_page_one_incident_each_and_a_redelivery_is_not_sent_again(
    app: ModuleType, receivers: LocalReceivers
) -> None:
    other = "deployguard-RollbackFailuresAlarm-9Z8Y7X"
    invoke(app, sns_event(alarm("ALARM"), alarm("ALARM", name=other)))
    invoke(app, sns_event(alarm("ALARM")))  # SNS delivers at least once: the same message again
    assert pagerduty_actions(receivers) == [("trigger", KEY), ("trigger", f"deployguard/guard-alarms/alert/{other}")]
    assert receivers.counts()["slack"] == 2


def test_a_late_alarm_after_its_ok_does_not_reopen_pagerduty(app: ModuleType, receivers: LocalReceivers) -> None:
    invoke(app, sns_event(alarm("OK", at="2026-03-01T12:05:00.000+0000")))
    invoke(app, sns_event(alarm("ALARM", at="2026-03-01T12:00:00.000+0000")))  # SNS keeps no order
    assert pagerduty_actions(receivers) == [("resolve", KEY)]


def test_routes_and_severity_come_from_the_configuration(
    aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_receivers(signing_key="k", echo=None) as receivers:
        config = write_config(tmp_path / "dg.yaml", receivers, routes=["dev-webhook"], severity="error")
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
        invoke(app, sns_event(alarm("ALARM")))
        counts = receivers.counts()
    # not on-call: the webhook named, and Teams by the route for alerts; an error does not trigger PagerDuty
    assert counts == {"slack": 0, "teams": 1, "pagerduty": 0, "webhook": 1}
    sent = receivers.received("webhook")[0].json()
    assert sent["event"]["severity"] == "error" and sent["event"]["details"]["alert"] == NAME


def test_malformed_alarm_notifications_are_dead_lettered_naming_the_field(
    aws: Aws, app: ModuleType, receivers: LocalReceivers, caplog: pytest.LogCaptureFixture
) -> None:
    no_state = alarm(NewStateValue=None)
    bad_time = alarm(StateChangeTime=1767225600)
    unknown_state = alarm("BROKEN")
    not_json = '{"AlarmName": "x", '
    result = invoke(app, sns_event(no_state, bad_time, unknown_state, not_json, alarm("ALARM")))
    assert result["malformed"] == 4 and result["delivered"] == 3  # the good one still goes out
    letters = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    errors = sorted(letter.error for letter in letters if letter.kind == "malformed")
    assert len(errors) == 4
    assert "cloudwatch alarm: field NewStateValue: Field required" in errors
    assert any(e.startswith("cloudwatch alarm: field StateChangeTime: ") and "ISO 8601" in e for e in errors)
    assert any(e.startswith("cloudwatch alarm: field NewStateValue: Input should be 'ALARM'") for e in errors)
    assert "cloudwatch alarm: not a JSON document" in errors
    assert {letter.raw for letter in letters} == {no_state, bad_time, unknown_state, not_json}
    logged = [r.__dict__["field"] for r in caplog.records if r.getMessage() == "malformed cloudwatch alarm"]
    assert sorted(logged) == ["(message)", "NewStateValue", "NewStateValue", "StateChangeTime"]


def test_guard_alarms_switched_off_are_neither_sent_nor_dead_lettered(
    aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_receivers(signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers, enabled=False)))
        result = invoke(app, sns_event(alarm("ALARM")))
        assert sum(receivers.counts().values()) == 0
    assert result["malformed"] == 0 and aws.dlq_messages() == []


def test_a_deployment_event_is_still_routed_as_before(app: ModuleType, receivers: LocalReceivers) -> None:
    event = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR, service="checkout-api",
                       message='the "AlarmName" key in a message')  # fmt: skip
    result = invoke(app, sns_event(event.model_dump_json()))
    assert result["malformed"] == 0 and receivers.counts()["webhook"] == 1


def test_a_route_written_for_guard_alarms_must_exist_and_the_default_applies_only_where_defined() -> None:
    slack = {"ops-slack": {"type": "slack", "url": "https://hooks.slack.com/services/x"}}
    with pytest.raises(ConfigError) as raised:
        parse_notification_settings({"channels": slack, "guard_alarms": {"routes": ["oncall"]}}, "dg.yaml")
    assert (
        raised.value.field == "notifications"
        and "guard_alarms.routes.0: unknown route, role or channel 'oncall'" in str(raised.value)
    )
    assert parse_notification_settings({"channels": slack}, "dg.yaml").guard_alarm_routes() == []
    defined = {"channels": slack, "roles": {"oncall-primary": {"channels": ["ops-slack"]}}}
    assert parse_notification_settings(defined, "dg.yaml").guard_alarm_routes() == ["oncall-primary"]


def test_retry_routes_a_guard_alarm_lambda_gave_up_on_or_sns_could_not_hand_over(
    aws: Aws, receivers: LocalReceivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notification DLQ is the operator topic's redrive target and the function's on-failure destination
    too: `deployguard notifications retry` routes the alarm in either shape, as its alert (same id)."""
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    on_failure = {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": sns_event(alarm("ALARM")),
        "responsePayload": {"errorType": "DeliveryError", "errorMessage": "..."},
    }
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=json.dumps(on_failure))
    other = "deployguard-DeadLetterQueuesAlarm-Q1W2E3"
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=alarm("ALARM", name=other))  # SNS's redrive: the message
    args = ["retry", "--queue-url", aws.dlq_url, "--table", TABLE, "--config", os.environ["DEPLOYGUARD_CONFIG_FILE"]]
    out = io.StringIO()
    assert notifications_cli.main(args, out) == 0, out.getvalue()
    assert "redelivered 2, still failing 0" in out.getvalue()
    assert sorted(pagerduty_actions(receivers)) == [
        ("trigger", KEY),
        ("trigger", f"deployguard/guard-alarms/alert/{other}"),
    ]
    assert aws.dlq_messages() == []


def test_retry_routes_a_guard_alarm_with_the_configured_severity(
    aws: Aws, receivers: LocalReceivers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`notifications retry --config` reads guard_alarms' severity (and the file's environment) as the router
    does: a retried alarm is the same alert as when it first came, not the defaults'."""
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    config = write_config(tmp_path / "warn.yaml", receivers, severity="warning")
    boto3.client("sqs", region_name="us-east-1").send_message(QueueUrl=aws.dlq_url, MessageBody=alarm("ALARM"))
    args = ["retry", "--queue-url", aws.dlq_url, "--table", TABLE, "--config", str(config)]
    out = io.StringIO()
    assert notifications_cli.main(args, out) == 0, out.getvalue()
    # a warning goes to Slack and Teams; PagerDuty takes critical only (the defaults' severity would page)
    assert "2 delivered, 1 suppressed" in out.getvalue(), out.getvalue()
    assert receivers.received("pagerduty") == [] and len(receivers.received("slack")) == 1


def test_retry_drops_a_guard_alarm_when_guard_alarms_are_off(
    aws: Aws, receivers: LocalReceivers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the router drops them (notifications.guard_alarms.enabled: false), `notifications retry` delivers
    no guard alarm from the queue either; the message is taken off it."""
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    config = write_config(tmp_path / "off.yaml", receivers, enabled=False)
    boto3.client("sqs", region_name="us-east-1").send_message(QueueUrl=aws.dlq_url, MessageBody=alarm("ALARM"))
    args = ["retry", "--queue-url", aws.dlq_url, "--table", TABLE, "--config", str(config)]
    out = io.StringIO()
    assert notifications_cli.main(args, out) == 0, out.getvalue()
    assert "no channel matched" in out.getvalue(), out.getvalue()
    assert all(receivers.received(name) == [] for name in ("pagerduty", "slack", "teams", "webhook"))
    assert aws.dlq_messages() == []
