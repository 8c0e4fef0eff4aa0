"""Payload shapes against each service's documented format."""

from __future__ import annotations

import json
from collections.abc import Callable

from notif_support import make_event
from pydantic import SecretStr

from deployguard.models import EventType, Severity
from deployguard.notification import formatting as fmt
from deployguard.notification.base import HttpMessage, SnsMessage
from deployguard.notification.pagerduty import PagerDutyChannel, deployment_dedup_key
from deployguard.notification.slack import SlackChannel, slack_blocks
from deployguard.notification.sns_channels import EmailChannel, SmsChannel
from deployguard.notification.teams import ADAPTIVE_CARD, teams_card
from deployguard.notification.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, verify_signature

URL = SecretStr("https://hooks.slack.com/services/T/B/secret")


def test_slack_block_kit() -> None:
    payload = slack_blocks(make_event())
    assert payload["text"].startswith("[production] Deployment Failed: checkout 42")
    types = [b["type"] for b in payload["blocks"]]
    assert types == ["header", "section", "section", "actions", "context"]
    header = payload["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in payload["blocks"][1]["fields"]}
    assert fields["*Deployment*"] == "dg-1" and fields["*Duration*"] == "12m 34s"
    assert len(payload["blocks"][1]["fields"]) <= 10
    assert "error_rate FAIL: +320.0%" in payload["blocks"][2]["text"]["text"]
    button = payload["blocks"][3]["elements"][0]
    assert button["type"] == "button" and button["url"].startswith("https://")


def test_slack_digest_is_one_message() -> None:
    events = [make_event(EventType.VALIDATION_WARNED, Severity.WARNING, deployment_id=f"dg-{i}") for i in range(7)]
    [message] = SlackChannel("s", lambda: URL, max_digest_events=5).render_digest(events)
    assert isinstance(message, HttpMessage)
    payload = message.payload()
    assert payload["text"] == "DeployGuard digest: 7 events for 7 deployment(s)"
    assert "…and 2 more" in payload["blocks"][1]["text"]["text"]


def test_teams_adaptive_card() -> None:
    payload = teams_card(make_event())
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == ADAPTIVE_CARD == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    facts = next(b for b in card["body"] if b["type"] == "FactSet")["facts"]
    assert {"title": "Environment", "value": "production"} in facts
    assert card["actions"][0]["type"] == "Action.OpenUrl"


def _pd(alert_keys: Callable[[str], list[str]] | None = None) -> PagerDutyChannel:
    url = "https://events.pagerduty.com/v2/enqueue"
    return PagerDutyChannel("pd", url, lambda: SecretStr("R0UT1NGKEY"), alert_keys=alert_keys)


def test_pagerduty_trigger_on_critical_with_dedup_key_per_deployment() -> None:
    [message] = _pd().render(make_event(EventType.ROLLBACK_INITIATED, Severity.CRITICAL))
    assert isinstance(message, HttpMessage)
    body = message.payload()
    assert body["routing_key"] == "R0UT1NGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == deployment_dedup_key("dg-1") == "deployguard/dg-1"
    payload = body["payload"]
    assert set(payload) >= {"summary", "severity", "source", "timestamp", "component", "group", "class"}
    assert payload["severity"] == "critical" and len(payload["summary"]) <= 1024
    assert payload["source"] == "deployguard/checkout/production"
    assert body["links"][0]["href"].startswith("https://")


def test_pagerduty_ignores_non_critical_and_resolves_on_recovery() -> None:
    channel = _pd(alert_keys=lambda deployment_id: ["deployguard/dg-1/alert/HighErrorRate"])
    assert channel.render(make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR)) == []
    messages = channel.render(make_event(EventType.ROLLBACK_COMPLETED, Severity.INFO))
    resolves = [m.payload() for m in messages if isinstance(m, HttpMessage)]
    assert resolves == [
        {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": "deployguard/dg-1"},
        {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": "deployguard/dg-1/alert/HighErrorRate"},
    ]
    healthy = make_event(EventType.ASSESSMENT_STATUS_CHANGED, Severity.INFO, details={"status": "healthy"})
    assert len(channel.render(healthy)) == 2


def test_pagerduty_alerts_have_their_own_incident() -> None:
    channel = _pd()
    firing = make_event(EventType.ALERT, Severity.CRITICAL, details={"alert": "HighErrorRate", "state": "firing"})
    [trigger] = channel.render(firing)
    assert trigger.payload()["dedup_key"] == "deployguard/dg-1/alert/HighErrorRate"  # type: ignore[union-attr]
    resolved = make_event(EventType.ALERT, Severity.INFO, details={"alert": "HighErrorRate", "state": "resolved"})
    [resolve] = channel.render(resolved)
    assert resolve.payload()["event_action"] == "resolve"  # type: ignore[union-attr]
    assert channel.render_digest([firing]) == []


def test_webhook_body_is_signed_with_hmac_sha256() -> None:
    channel = WebhookChannel("w", lambda: URL, lambda: SecretStr("k3y"))
    [message] = channel.render(make_event())
    assert isinstance(message, HttpMessage)
    timestamp = message.headers[TIMESTAMP_HEADER]
    signature = message.headers[SIGNATURE_HEADER]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("k3y", timestamp, message.body, signature, now=float(timestamp))
    assert not verify_signature("other", timestamp, message.body, signature, now=float(timestamp))
    assert not verify_signature("k3y", timestamp, message.body + b" ", signature, now=float(timestamp))
    assert not verify_signature("k3y", timestamp, message.body, signature, now=float(timestamp) + 3600)
    body = json.loads(message.body)
    assert body["type"] == "event" and body["event"]["event_type"] == "deployment.failed"
    assert message.headers["X-DeployGuard-Delivery"] == f"{body['event']['event_id']}/w"


def test_email_subject_and_plain_text_body() -> None:
    [message] = EmailChannel("e", "arn:aws:sns:us-east-1:1:t").render(make_event())
    assert isinstance(message, SnsMessage)
    assert message.subject == "[production] Deployment Failed"
    for text in (
        "Deployment id: dg-1",
        "Environment:   production",
        "Components:    checkout-api, checkout-worker",
        "Duration:      12m 34s",
        "Error:         5xx spike",
        "error_rate FAIL",
    ):
        assert text in message.body


def test_subject_is_ascii_single_line_within_sns_limit() -> None:
    event = make_event(environment="prod\nuction-ü" + "x" * 200)
    subject = fmt.subject(event)
    assert len(subject) <= 100 and "\n" not in subject and subject.isascii()


def test_sms_is_short_and_transactional() -> None:
    [message] = SmsChannel("s", "arn:aws:sns:us-east-1:1:t").render(make_event(details={"error": "x" * 500}))
    assert isinstance(message, SnsMessage)
    assert len(message.body) <= 140
    assert message.attributes["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"


def test_pagerduty_follows_deployguard_incidents() -> None:
    channel = _pd()

    def incident_event(kind: str, severity: Severity = Severity.ERROR, **details: object) -> list[dict[str, object]]:
        event = make_event(EventType.ALERT, severity, details={"kind": kind, "incident_id": "in-9", **details})
        return [m.payload() for m in channel.render(event) if isinstance(m, HttpMessage)]

    key = "deployguard/dg-1/incident/in-9"
    assert incident_event("alert") == []  # an error-level alert does not page by itself
    [page] = incident_event("page", page=1, routes=["ops"])
    assert (page["event_action"], page["dedup_key"]) == ("trigger", key)
    assert incident_event("alert", Severity.CRITICAL, rule="HighErrorRate")[0]["dedup_key"] == key
    assert incident_event("incident_acknowledged") == [
        {"routing_key": "R0UT1NGKEY", "event_action": "acknowledge", "dedup_key": key}
    ]
    assert incident_event("incident_resolved")[0]["event_action"] == "resolve"
