"""The router end to end: real HTTP receivers on 127.0.0.1, SNS/SQS/DynamoDB on moto."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from notif_support import Aws, make_event

from deployguard.exceptions import ConfigError, DeliveryError
from deployguard.models import DeliveryStatus, EventType, Notification, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.settings import NotificationSettings
from deployguard.notification.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from deployguard_local.receivers import Behaviour, LocalReceivers, local_receivers

SIGNING_KEY = "local-signing-key"


def settings_for(
    receivers: LocalReceivers, aws: Aws, *, extra: dict[str, Any] | None = None, **channel_extra: Any
) -> NotificationSettings:
    urls = receivers.urls
    channels: dict[str, Any] = {
        "ops-slack": {"type": "slack", "url": urls["slack"]},
        "ops-teams": {"type": "teams", "url": urls["teams"]},
        "ops-pagerduty": {"type": "pagerduty", "url": urls["pagerduty"], "routing_key": "local-routing-key"},
        "audit-webhook": {"type": "webhook", "url": urls["webhook"], "signing_key": SIGNING_KEY},
        "ops-email": {"type": "email", "topic_arn": aws.email_topic},
        "ops-sms": {"type": "sms", "topic_arn": aws.sms_topic},
    }
    for name, values in channel_extra.items():
        channels[name.replace("_", "-")].update(values)
    document: dict[str, Any] = {
        "allowed_hosts": ["127.0.0.1"],  # loopback receivers: explicit opt-in, local mode only
        "channels": channels,
        "roles": {"ops": {"channels": list(channels)}},
        "routes": [{"name": "ops-everything", "roles": ["ops"]}],
        "delivery": {"max_attempts": 3, "backoff_base_seconds": 0.01, "read_timeout_seconds": 2},
    }
    document.update(extra or {})
    return NotificationSettings.model_validate(document)


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(signing_key=SIGNING_KEY, echo=None) as group:
        yield group


def email_inbox(aws: Aws, topic: str) -> str:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"inbox-{topic.rsplit(':', 1)[1]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns", region_name="us-east-1").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url


def inbox(url: str) -> list[dict[str, Any]]:
    resp = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in resp.get("Messages", [])]


def statuses(notifications: list[Notification]) -> dict[str, str]:
    return {n.channel: n.status.value for n in notifications}


def test_every_channel_gets_its_documented_payload(aws: Aws, receivers: LocalReceivers) -> None:
    email, sms = email_inbox(aws, aws.email_topic), email_inbox(aws, aws.sms_topic)
    router = aws.router(settings_for(receivers, aws))
    event = make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL)

    recorded = router.route(event)

    assert statuses(recorded) == {name: "delivered" for name in router.channels}
    assert receivers.counts() == {"slack": 1, "teams": 1, "pagerduty": 1, "webhook": 1}
    slack = receivers.received("slack")[0].json()
    assert slack["blocks"][0]["type"] == "header" and "Deployment Failed" in slack["text"]
    teams = receivers.received("teams")[0].json()
    assert teams["type"] == "message"
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    pagerduty = receivers.received("pagerduty")[0].json()
    assert pagerduty["routing_key"] == "local-routing-key" and pagerduty["event_action"] == "trigger"
    assert pagerduty["dedup_key"] == "deployguard/dg-1"
    assert {"summary", "severity", "source"} <= set(pagerduty["payload"])
    hook = receivers.received("webhook")[0]
    assert verify_signature(
        SIGNING_KEY, hook.headers[TIMESTAMP_HEADER], hook.body, hook.headers[SIGNATURE_HEADER], 10**9
    )
    [mail] = inbox(email)
    assert mail["Subject"] == "[production] Deployment Failed"
    assert "Deployment id: dg-1" in mail["Message"] and "Duration:      12m 34s" in mail["Message"]
    [text] = inbox(sms)
    assert len(text["Message"]) <= 140

    stored = aws.repository.notifications("dg-1")
    assert {n.channel for n in stored} == set(router.channels)
    assert all(n.status is DeliveryStatus.DELIVERED and n.attempts == 1 for n in stored)
    assert all(n.latency_ms is not None and n.latency_ms >= 0 for n in stored)


def test_webhook_urls_never_reach_the_logs(
    aws: Aws, receivers: LocalReceivers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    aws.router(settings_for(receivers, aws)).route(make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL))
    assert receivers.counts()["slack"] == 1
    for url in receivers.urls.values():
        assert url.split("/", 3)[3] not in caplog.text
    assert "local-routing-key" not in caplog.text and SIGNING_KEY not in caplog.text


def test_sns_redelivery_of_the_same_event_is_suppressed(aws: Aws, receivers: LocalReceivers) -> None:
    router = aws.router(settings_for(receivers, aws))
    event = make_event(EventType.DEPLOYMENT_STARTED, Severity.INFO)
    router.route(event)
    again = router.route(event.model_copy())
    assert set(statuses(again).values()) == {"suppressed"}
    assert all(n.error == "duplicate: event already handled" for n in again)
    assert receivers.counts()["slack"] == 1


def test_cooldown_per_deployment_and_event_type(aws: Aws, receivers: LocalReceivers) -> None:
    router = aws.router(settings_for(receivers, aws, extra={"noise": {"cooldown_seconds": 600}}))
    first = router.route(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING))
    second = router.route(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING))
    other_deployment = router.route(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING, "dg-2"))
    assert statuses(first)["ops-slack"] == "delivered"
    assert statuses(second)["ops-slack"] == "suppressed" and "cooldown" in (second[0].error or "")
    assert statuses(other_deployment)["ops-slack"] == "delivered"
    aws.clock.advance(601)
    assert statuses(router.route(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING)))["ops-slack"] == (
        "delivered"
    )


def test_pagerduty_one_incident_per_deployment_then_resolved(aws: Aws, receivers: LocalReceivers) -> None:
    router = aws.router(settings_for(receivers, aws))
    alert = make_event(EventType.ALERT, Severity.CRITICAL, details={"alert": "HighErrorRate", "state": "firing"})
    aws.repository.outbox_record(alert)  # stored as every announcement is
    for event in (
        make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL),
        make_event(EventType.ROLLBACK_INITIATED, Severity.CRITICAL),
        alert,
        make_event(EventType.VALIDATION_WARNED, Severity.WARNING),
        make_event(EventType.ROLLBACK_COMPLETED, Severity.INFO),
    ):
        router.route(event)
    sent = [(r.json()["event_action"], r.json()["dedup_key"]) for r in receivers.received("pagerduty")]
    assert sent == [
        ("trigger", "deployguard/dg-1"),
        ("trigger", "deployguard/dg-1"),
        ("trigger", "deployguard/dg-1/alert/HighErrorRate"),
        ("resolve", "deployguard/dg-1"),
        ("resolve", "deployguard/dg-1/alert/HighErrorRate"),
    ]
    pd_records = [n for n in aws.repository.notifications("dg-1") if n.channel == "ops-pagerduty"]
    skipped = [n for n in pd_records if n.status is DeliveryStatus.SUPPRESSED]
    assert len(skipped) == 1 and skipped[0].error == "pagerduty does not act on this event"


def test_burst_is_grouped_into_one_digest_and_critical_bypasses_the_limit(aws: Aws, receivers: LocalReceivers) -> None:
    aws.clock.advance(60 - aws.clock().timestamp() % 60)
    settings = settings_for(
        receivers,
        aws,
        ops_slack={"rate_limit": {"max_messages": 2, "per_seconds": 60}},
        extra={"digest": {"window_seconds": 30}, "routes": [{"channels": ["ops-slack"]}]},
    )
    router = aws.router(settings)
    burst = [make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, details={"step_index": i}) for i in range(6)]
    outcomes = [router.route(e)[0] for e in burst]
    assert [o.status.value for o in outcomes] == ["delivered"] * 2 + ["suppressed"] * 4
    assert outcomes[-1].error == "rate limited: held for the digest"
    critical = router.route(make_event(EventType.ROLLBACK_INITIATED, Severity.CRITICAL))
    assert critical[0].status is DeliveryStatus.DELIVERED
    assert router.flush_digests() == []  # the oldest held event is not 30 s old yet
    aws.clock.advance(31)
    digest = router.flush_digests()
    assert [n.status for n in digest] == [DeliveryStatus.DELIVERED] * 4
    assert receivers.counts()["slack"] == 4  # 2 + the critical one + one digest
    assert receivers.received("slack")[-1].json()["text"] == "DeployGuard digest: 4 events for 1 deployment(s)"
    assert router.flush_digests(force=True) == []


def test_retry_after_from_a_throttling_receiver_is_honoured(aws: Aws) -> None:
    with local_receivers({"slack": Behaviour(mode="flaky", status=429, retry_after="3", failures=1)}, echo=None) as r:
        router = aws.router(settings_for(r, aws, extra={"routes": [{"channels": ["ops-slack"]}]}))
        [outcome] = router.route(make_event())
    assert outcome.status is DeliveryStatus.DELIVERED and outcome.attempts == 2
    assert aws.sleeps == [3.0]


def test_5xx_then_success_is_retried(aws: Aws) -> None:
    with local_receivers({"teams": Behaviour(mode="flaky", status=502, failures=2)}, echo=None) as r:
        router = aws.router(settings_for(r, aws, extra={"routes": [{"channels": ["ops-teams"]}]}))
        [outcome] = router.route(make_event())
        assert r.receivers["teams"].requests == 3
    assert outcome.status is DeliveryStatus.DELIVERED and outcome.attempts == 3 and len(aws.sleeps) == 2


def test_receiver_down_for_the_whole_run_lands_in_the_dlq(aws: Aws, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with local_receivers({"slack": Behaviour(mode="down")}, echo=None) as r:
        settings = settings_for(r, aws)
        router = aws.router(settings)
        recorded = router.route(make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL))
        secret_url = r.urls["slack"]
        assert r.counts()["pagerduty"] == 1  # the other channels are not held up
    slack = next(n for n in recorded if n.channel == "ops-slack")
    assert slack.status is DeliveryStatus.DEAD_LETTERED and slack.attempts == 3
    assert slack.error == "connection failed"
    [message] = aws.dlq_messages()
    letter = DeadLetter.model_validate_json(message["Body"])
    assert letter.kind == "event" and letter.channel == "ops-slack" and letter.events[0].deployment_id == "dg-1"
    stored = {n.channel: n for n in aws.repository.notifications("dg-1")}
    assert stored["ops-slack"].status is DeliveryStatus.DEAD_LETTERED
    secret_path = secret_url.split("/", 3)[3]
    assert secret_path not in caplog.text and secret_path not in message["Body"]
    assert all(secret_path not in (n.error or "") for n in stored.values())


def test_without_a_dlq_the_failure_is_raised_and_the_event_can_come_again(aws: Aws) -> None:
    with local_receivers({"slack": Behaviour(mode="error")}, echo=None) as r:
        router = aws.router(settings_for(r, aws, extra={"routes": [{"channels": ["ops-slack"]}]}), dlq=False)
        event = make_event()
        with pytest.raises(DeliveryError, match="nor dead-lettered"):
            router.route(event)
        with pytest.raises(DeliveryError):
            router.route(event)  # SNS redelivery is not mistaken for a duplicate
    assert [n.status for n in aws.repository.notifications("dg-1")] == [DeliveryStatus.FAILED] * 2


def test_secrets_come_from_ssm(aws: Aws, receivers: LocalReceivers) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/deployguard/slack-url", Value=receivers.urls["slack"], Type="SecureString"
    )
    settings = NotificationSettings.model_validate(
        {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {"slack": {"type": "slack", "url_parameter": "/deployguard/slack-url"}},
            "routes": [{"channels": ["slack"]}],
        }
    )
    [outcome] = aws.router(settings).route(make_event())
    assert outcome.status is DeliveryStatus.DELIVERED and receivers.counts()["slack"] == 1


def test_literal_urls_are_refused_outside_local_mode(aws: Aws, receivers: LocalReceivers) -> None:
    with pytest.raises(ConfigError) as caught:
        aws.router(settings_for(receivers, aws), local_mode=False)
    assert caught.value.field == "notifications.channels.ops-slack.url"
    assert "only in local mode" in str(caught.value)


def test_missing_secret_goes_to_the_dlq(aws: Aws) -> None:
    settings = NotificationSettings.model_validate(
        {
            "channels": {"slack": {"type": "slack", "url_parameter": "/deployguard/missing"}},
            "routes": [{"channels": ["slack"]}],
        }
    )
    [outcome] = aws.router(settings).route(make_event())
    assert outcome.status is DeliveryStatus.DEAD_LETTERED
    assert "ssm:/deployguard/missing" in (outcome.error or "")
    assert len(aws.dlq_messages()) == 1


def test_a_failed_digest_is_dead_lettered_whole_and_redelivered(aws: Aws) -> None:
    limited = {"rate_limit": {"max_messages": 1, "per_seconds": 3600}}
    extra = {"routes": [{"channels": ["ops-slack"]}], "digest": {"window_seconds": 1}}
    events = [make_event(EventType.VALIDATION_WARNED, Severity.WARNING, deployment_id=f"dg-{i}") for i in range(4)]
    with local_receivers({"slack": Behaviour(mode="flaky", status=500, failures=1)}, echo=None) as r:
        router = aws.router(settings_for(r, aws, ops_slack=limited, extra=extra))
        assert [router.route(e)[0].status.value for e in events] == ["delivered"] + ["suppressed"] * 3
        aws.clock.advance(5)
        with local_receivers({"slack": Behaviour(mode="error")}, echo=None) as broken:
            router = aws.router(settings_for(broken, aws, ops_slack=limited, extra=extra))
            digest = router.flush_digests()
        assert [n.status for n in digest] == [DeliveryStatus.DEAD_LETTERED] * 3
        letters = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
        [digest_letter] = [letter for letter in letters if letter.kind == "digest"]
        assert [e.deployment_id for e in digest_letter.events] == ["dg-1", "dg-2", "dg-3"]
        outcome = aws.router(settings_for(r, aws, ops_slack=limited, extra=extra)).redeliver(digest_letter)
        assert outcome.ok and len(outcome.notifications) == 3
        assert r.received("slack")[-1].json()["text"] == "DeployGuard digest: 3 events for 3 deployment(s)"
    assert router.noise.held("ops-slack") == []


def test_successive_escalation_pages_are_not_cooled_down(aws: Aws, receivers: LocalReceivers) -> None:
    settings = settings_for(receivers, aws, extra={"routes": [], "noise": {"cooldown_seconds": 3600}})
    router = aws.router(settings)
    for page in (1, 2):
        details = {"kind": "page", "incident_id": "in-1", "page": page, "routes": ["ops-pagerduty", "ops-slack"]}
        outcomes = router.route(make_event(EventType.ALERT, Severity.ERROR, details=details))
        assert statuses(outcomes) == {"ops-pagerduty": "delivered", "ops-slack": "delivered"}
    actions = [(r.json()["event_action"], r.json()["dedup_key"]) for r in receivers.received("pagerduty")]
    assert actions == [("trigger", "deployguard/dg-1/incident/in-1")] * 2


def test_a_digest_whose_secret_cannot_be_read_without_a_dlq_is_recorded_failed_and_kept_held(aws: Aws) -> None:
    """Audit: when the digest could not be rendered nor dead-lettered, the events after the first were
    recorded "dead_lettered", and all were released."""
    settings = NotificationSettings.model_validate(
        {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {"slack": {"type": "slack", "url_parameter": "/deployguard/slack-url"}},
            "routes": [{"channels": ["slack"]}],
            "digest": {"window_seconds": 1},
        }
    )
    router = aws.router(settings, dlq=False)
    events = [make_event(EventType.VALIDATION_WARNED, Severity.WARNING, deployment_id=f"dg-{i}") for i in range(3)]
    for event in events:  # held by the rate limit of earlier invocations
        router.noise.hold("slack", event)
    aws.clock.advance(5)
    with pytest.raises(DeliveryError, match="kept held"):
        router.flush_digests()
    stored = [n for e in events for n in aws.repository.notifications(e.deployment_id)]
    assert [n.status for n in stored] == [DeliveryStatus.FAILED] * 3
    assert all(n.error and "ssm:/deployguard/slack-url" in n.error and "not dead-lettered" in n.error for n in stored)
    assert len(router.noise.held("slack")) == 3

    with local_receivers(echo=None) as receivers:
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/deployguard/slack-url", Value=receivers.urls["slack"], Type="SecureString"
        )
        assert [n.status for n in router.flush_digests()] == [DeliveryStatus.DELIVERED] * 3
        assert receivers.counts()["slack"] == 1
    assert router.noise.held("slack") == []


def _pagerduty_actions(receivers: LocalReceivers) -> list[tuple[str, str]]:
    accepted = [r.json() for r in receivers.received("pagerduty") if r.status == 202]
    return [(p["event_action"], p["dedup_key"].removeprefix("deployguard/")) for p in accepted]


def test_pagerduty_pages_acknowledges_and_resolves_are_never_held_back(aws: Aws, receivers: LocalReceivers) -> None:
    """Audit: over the channel's rate limit, pages and resolves were held for a digest PagerDuty does not
    have, then recorded "suppressed" and dropped. PagerDuty is never rate limited nor cooled down (it
    groups repeated triggers by dedup_key itself): a re-trigger after a resolve is a new page, and the
    resolve after it must close it. Slack, under the same limits, holds and cools down."""
    aws.clock.advance(3600 - aws.clock().timestamp() % 3600)  # the start of a rate-limit window
    limits = {"cooldown_seconds": 3600, "default_rate_limit": {"max_messages": 1, "per_seconds": 3600}}
    settings = settings_for(
        receivers,
        aws,
        ops_pagerduty={"trigger_severity": "error"},
        extra={"routes": [{"channels": ["ops-slack", "ops-pagerduty"]}], "noise": limits},
    )
    router = aws.router(settings)

    def alert(kind: str, incident: str, severity: Severity = Severity.INFO) -> Any:
        return make_event(EventType.ALERT, severity, details={"kind": kind, "incident_id": incident, "page": 1})

    def health(status: str, severity: Severity) -> Any:
        return make_event(EventType.ASSESSMENT_STATUS_CHANGED, severity, details={"status": status})

    events = [
        alert("page", "in-1", Severity.ERROR),
        alert("page", "in-2", Severity.ERROR),
        alert("incident_acknowledged", "in-1"),
        alert("incident_resolved", "in-1"),
        health("critical", Severity.ERROR),
        health("healthy", Severity.INFO),
        health("critical", Severity.ERROR),  # flapping within the cooldown
        health("healthy", Severity.INFO),
    ]
    events = [e.model_copy(update={"at": e.at + timedelta(seconds=i)}) for i, e in enumerate(events)]  # in turn
    outcomes = [statuses(router.route(e)) for e in events]
    # the resolves of an assessment back to healthy wait for the flap guard (resolve_after_healthy_seconds)
    assert [o["ops-pagerduty"] for o in outcomes] == ["delivered"] * 5 + ["suppressed", "delivered", "suppressed"]
    assert [o["ops-slack"] for o in outcomes] == ["delivered"] + ["suppressed"] * 7
    assert _pagerduty_actions(receivers) == [
        ("trigger", "dg-1/incident/in-1"),
        ("trigger", "dg-1/incident/in-2"),
        ("acknowledge", "dg-1/incident/in-1"),
        ("resolve", "dg-1/incident/in-1"),
        ("trigger", "dg-1"),
        ("trigger", "dg-1"),  # the flap: one PagerDuty incident, no resolve in between, no new page
    ]
    aws.clock.advance(61)
    digest = router.flush_digests()
    assert {n.channel for n in digest} == {"ops-slack"} and len(digest) == 5  # the last two: cooled down
    assert router.noise.held("ops-pagerduty") == []
    aws.clock.advance(300)  # healthy for the default 300 s: the deferred resolve goes out with the flush
    resolves = router.flush_digests()
    assert [(n.channel, n.status.value) for n in resolves] == [("ops-pagerduty", "delivered")]
    assert _pagerduty_actions(receivers)[6:] == [("resolve", "dg-1")]  # once


def test_pagerduty_events_an_earlier_version_held_are_sent_one_by_one_and_in_order(aws: Aws) -> None:
    """Events held for PagerDuty by an earlier version's rate limit are sent alone when the digests
    flush, oldest first; while one can be neither delivered nor dead-lettered the later ones wait,
    so a resolve never overtakes its trigger."""
    with local_receivers({"pagerduty": Behaviour(mode="error")}, echo=None) as r:
        extra = {"routes": [{"channels": ["ops-pagerduty"]}], "digest": {"window_seconds": 1}}
        router = aws.router(settings_for(r, aws, extra=extra), dlq=False)
        router.noise.hold("ops-pagerduty", make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL))
        router.noise.hold("ops-pagerduty", make_event(EventType.ROLLBACK_COMPLETED, Severity.INFO))
        aws.clock.advance(5)
        with pytest.raises(DeliveryError, match="kept held"):
            router.flush_digests()
        assert {x.json()["event_action"] for x in r.received("pagerduty")} == {"trigger"}  # the resolve waited
        assert len(router.noise.held("ops-pagerduty")) == 2

        r.receivers["pagerduty"].behaviour = Behaviour()
        aws.clock.advance(1)
        assert [n.status for n in router.flush_digests()] == [DeliveryStatus.DELIVERED] * 2
        assert _pagerduty_actions(r) == [("trigger", "dg-1"), ("resolve", "dg-1")]
    assert router.noise.held("ops-pagerduty") == []
