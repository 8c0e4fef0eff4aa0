"""The Lambda handler on an SNS event, and `deployguard notifications retry|list`."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from notif_support import SCHEDULE, TABLE, Aws, Context, make_event, router_app, sns_event, write_notifications

from deployguard.config import load_config
from deployguard.exceptions import DeliveryError
from deployguard.models import DeliveryStatus, DeploymentEvent, EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard_local import notifications_cli
from deployguard_local.chaos.faults import FaultInjector, body_mentions
from deployguard_local.receivers import Behaviour, LocalReceivers, local_receivers


def write_config(path: Path, receivers: LocalReceivers, slack: dict[str, Any] | None = None, **delivery: Any) -> Path:
    notifications = {
        "allowed_hosts": ["127.0.0.1"],  # loopback receivers: explicit opt-in, local mode only
        "channels": {
            "ops-slack": {"type": "slack", "url": receivers.urls["slack"], **(slack or {})},
            "ops-webhook": {"type": "webhook", "url": receivers.urls["webhook"], "signing_key": "k"},
        },
        "roles": {"ops": {"channels": ["ops-slack", "ops-webhook"]}},
        "routes": [{"roles": ["ops"]}],
        "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.001, **delivery},
    }
    return write_notifications(path, notifications)


@pytest.fixture
def faults(aws: Aws) -> Iterator[FaultInjector]:
    """Faults on the AWS clients the router uses (botocore ``before-send`` hooks, before moto answers);
    botocore's retry back-offs move the simulated clock."""
    with FaultInjector(aws.clock) as injector:
        yield injector


def recorded(aws: Aws, deployment_id: str = "dg-1") -> dict[str, list[str]]:
    """The statuses recorded per channel, oldest first."""
    found: dict[str, list[str]] = {}
    for n in aws.repository.notifications(deployment_id):
        found.setdefault(n.channel, []).append(n.status.value)
    return found


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with router_app(aws, monkeypatch) as module:
        yield module


def test_handler_delivers_valid_records_and_dead_letters_a_malformed_one(
    aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with local_receivers(signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers)))
        good = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR)
        bad = json.loads(make_event().model_dump_json())
        del bad["event_type"]
        result = app.lambda_handler(sns_event(good.model_dump_json(), json.dumps(bad), "not json"), Context())
        assert receivers.counts() == {"slack": 1, "teams": 0, "pagerduty": 0, "webhook": 1}
    assert result["delivered"] == 2 and result["malformed"] == 2
    letters = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert sorted(letter.kind for letter in letters) == ["malformed", "malformed"]
    assert any("field event_type" in letter.error for letter in letters)
    assert any(letter.raw == json.dumps(bad) for letter in letters)
    malformed = [r for r in caplog.records if r.getMessage() == "malformed deployment event"]
    assert [r.__dict__["field"] for r in malformed] == ["event_type", "(message)"]
    assert {n.status for n in aws.repository.notifications("dg-1")} == {DeliveryStatus.DELIVERED}


def test_handler_on_a_schedule_flushes_digests(aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: Any) -> None:
    with local_receivers(signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers)))
        router = app.router()
        router.noise.hold("ops-slack", make_event(EventType.VALIDATION_WARNED, Severity.WARNING))
        aws.clock.advance(120)
        result = app.lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Context())
        assert result["delivered"] == 1 and receivers.counts()["slack"] == 1


def test_handler_without_a_dlq_fails_so_sns_retries(
    aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("NOTIFICATION_DLQ_URL")
    with local_receivers({"slack": Behaviour(mode="error")}, signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers)))
        with pytest.raises(DeliveryError, match="to be retried"):
            app.lambda_handler(sns_event(make_event().model_dump_json()), Context())


def test_retry_redelivers_dead_letters_and_list_shows_every_attempt(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dg.yaml"
    with local_receivers({"slack": Behaviour(mode="down")}, signing_key="k", echo=None) as down:
        write_config(config, down)
        from deployguard.config import load_config

        router = aws.router(load_config(config).notifications)
        event: DeploymentEvent = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL)
        router.route(event)
    assert len(aws.dlq_messages()) == 1
    base = ["--queue-url", aws.dlq_url, "--table", TABLE, "--config", str(config)]
    out, err = io.StringIO(), io.StringIO()  # literal URLs in the configuration: local mode only
    assert notifications_cli.main(["retry", *base], out, err) == 2 and "only in local mode" in err.getvalue()
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")

    out = io.StringIO()  # still down: the letter stays, with its redelivery count
    assert notifications_cli.main(["retry", "--limit", "5", *base], out) == 1
    assert "still failing 1" in out.getvalue()
    [kept] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert kept.redeliveries == 1 and kept.events[0].event_id == event.event_id

    with local_receivers(signing_key="k", echo=None) as up:
        write_config(config, up)
        out = io.StringIO()  # --json: one object, the counts and what happened to each message
        assert notifications_cli.main(["notifications", "retry", "--limit", "5", *base, "--json"], out) == 0
        answer = json.loads(out.getvalue())
        assert (answer["redelivered"], answer["still_failing"], answer["skipped"]) == (1, 0, 0)
        [delivered] = answer["messages"]
        assert (delivered["outcome"], delivered["letter"]) == ("delivered", f"event to ops-slack ({event.event_id})")
        assert up.counts()["slack"] == 1
    assert aws.dlq_messages() == []

    out = io.StringIO()
    assert notifications_cli.main(["list", "dg-1", "--table", TABLE], out) == 0
    text = out.getvalue()
    assert text.count("ops-slack") == 3 and "dead_lettered" in text and "redelivery 1" in text
    assert '"delivered": 2' in text  # webhook at first, slack on the second retry
    out = io.StringIO()
    assert notifications_cli.main(["list", "dg-1", "--table", TABLE, "--json"], out) == 0
    listed = json.loads(out.getvalue())  # one JSON array, as the other list commands print
    assert len(listed) == 4 and [n["channel"] for n in listed].count("ops-slack") == 3


def test_cli_needs_a_queue_and_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFICATION_DLQ_URL", raising=False)
    monkeypatch.delenv("DEPLOYMENTS_TABLE", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert notifications_cli.main(["retry"], out, err) == 2 and "--queue-url" in err.getvalue()
    assert out.getvalue() == "" and err.getvalue().startswith("deployguard notifications retry: ")


def test_retry_leaves_what_cannot_be_redelivered_in_the_queue(aws: Aws) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(
        QueueUrl=aws.dlq_url, MessageBody=DeadLetter(kind="malformed", raw="{", error="x").model_dump_json()
    )
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="garbage")
    out = io.StringIO()
    assert notifications_cli.main(["retry", "--queue-url", aws.dlq_url, "--table", TABLE], out) == 0
    assert "redelivered 0, still failing 0, skipped 2" in out.getvalue()
    assert len(aws.dlq_messages()) == 2


def test_retry_routes_lambda_failure_records_and_sns_redrives_again(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    failed_invocation = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR, deployment_id="dg-7")
    on_failure = {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": sns_event(failed_invocation.model_dump_json()),
        "responsePayload": {"errorType": "DeliveryError", "errorMessage": "..."},
    }
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=json.dumps(on_failure))
    redriven = make_event(EventType.ROLLBACK_COMPLETED, Severity.INFO, deployment_id="dg-8")
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=redriven.model_dump_json())
    with local_receivers(signing_key="k", echo=None) as receivers:
        config = write_config(tmp_path / "dg.yaml", receivers)
        out = io.StringIO()
        args = ["retry", "--queue-url", aws.dlq_url, "--table", TABLE, "--config", str(config)]
        assert notifications_cli.main(args, out) == 0
        assert "redelivered 2, still failing 0" in out.getvalue()
        assert receivers.counts() == {"slack": 2, "teams": 0, "pagerduty": 0, "webhook": 2}
    assert aws.dlq_messages() == []
    assert {n.status for n in aws.repository.notifications("dg-7")} == {DeliveryStatus.DELIVERED}


def test_a_malformed_sns_envelope_is_kept_whole(aws: Aws, app: ModuleType) -> None:
    result = app.lambda_handler({"Records": [{"EventSource": "aws:sns"}]}, Context())
    assert result["malformed"] == 1
    [message] = aws.dlq_messages()
    letter = DeadLetter.model_validate_json(message["Body"])
    assert letter.kind == "malformed" and letter.error.startswith("SNS envelope: field Records.0.")
    assert json.loads(letter.raw or "") == {"Records": [{"EventSource": "aws:sns"}]}


def test_a_delivery_an_invocation_died_in_is_kept_then_delivered_once_its_claim_expires(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: the router claimed the channels, the invocation died at its timeout mid-delivery,
    Lambda's on-failure record reached the queue. ``retry`` must neither call the channels
    "duplicate" nor delete the record before they have the event."""
    import boto3

    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    event = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR, deployment_id="dg-died")
    with local_receivers(signing_key="k", echo=None) as receivers:
        config = write_config(tmp_path / "dg.yaml", receivers)
        dying = aws.router(load_config(str(config)).notifications)
        lease_until = aws.clock().timestamp() + 120  # the dead invocation's remaining time
        for channel in ("ops-slack", "ops-webhook"):
            assert dying.noise.claim_delivery(event, channel, lease_until).mine  # ...then it was killed
        on_failure = {
            "version": "1.0",
            "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": sns_event(event.model_dump_json()),
            "responsePayload": {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 120.00 seconds"},
        }
        boto3.client("sqs", region_name="us-east-1").send_message(
            QueueUrl=aws.dlq_url, MessageBody=json.dumps(on_failure)
        )
        args = ["retry", "--queue-url", aws.dlq_url, "--table", TABLE, "--config", str(config)]
        early = io.StringIO()
        assert notifications_cli.main(args, early) == 1  # the claims' lease still runs: kept, not deleted
        assert "not every channel has it yet (kept in the queue)" in early.getvalue()
        assert len(aws.dlq_messages()) == 1 and receivers.counts()["slack"] == 0
        aws.clock.advance(200)  # past the dead invocation's lease
        later = io.StringIO()
        assert notifications_cli.main(args, later) == 0
        assert "redelivered 1, still failing 0" in later.getvalue()
        assert receivers.counts() == {"slack": 1, "teams": 0, "pagerduty": 0, "webhook": 1}
    assert aws.dlq_messages() == []
    delivered = [n for n in aws.repository.notifications("dg-died") if n.status is DeliveryStatus.DELIVERED]
    assert sorted(n.channel for n in delivered) == ["ops-slack", "ops-webhook"]


def test_a_digest_that_can_be_neither_delivered_nor_dead_lettered_stays_held_for_the_next_schedule(
    aws: Aws, app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: a digest that failed without a dead-letter queue was released all the same, while the
    error said "kept held": the held events were gone."""
    monkeypatch.delenv("NOTIFICATION_DLQ_URL")
    limited = {"rate_limit": {"max_messages": 1, "per_seconds": 3600}}
    with local_receivers(signing_key="k", echo=None) as receivers:
        config = write_config(tmp_path / "dg.yaml", receivers, slack=limited, max_attempts=1)
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
        events = [make_event(EventType.VALIDATION_WARNED, Severity.WARNING, deployment_id=f"dg-{i}") for i in range(3)]
        for event in events:
            app.lambda_handler(sns_event(event.model_dump_json()), Context())
        assert receivers.counts()["slack"] == 1  # the other two are held for the digest
        receivers.receivers["slack"].behaviour = Behaviour(mode="error")
        aws.clock.advance(120)
        with pytest.raises(DeliveryError, match="kept held for the next flush"):
            app.lambda_handler(SCHEDULE, Context())
        assert [h.event.event_id for h in app.router().noise.held("ops-slack")] == [e.event_id for e in events[1:]]

        receivers.receivers["slack"].behaviour = Behaviour()  # Slack is back
        aws.clock.advance(60)
        result = app.lambda_handler(SCHEDULE, Context())
        assert result["delivered"] == 2 and app.router().noise.held("ops-slack") == []
        assert receivers.received("slack")[-1].json()["text"] == "DeployGuard digest: 2 events for 2 deployment(s)"
    for event in events[1:]:
        assert recorded(aws, event.deployment_id)["ops-slack"] == ["suppressed", "failed", "delivered"]


def test_records_throttled_after_delivery_fail_the_invocation_and_its_retry_records_what_was_done(
    aws: Aws, app: ModuleType, faults: FaultInjector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: the invocation raised once its first record write was throttled, leaving the channels
    claimed; Lambda's retry a minute later found them "in progress" and returned, so the channel that
    had failed was never dead-lettered. Now what was delivered is marked so, what failed is
    dead-lettered, and the retry writes the records the throttled invocation could not."""
    with local_receivers({"webhook": Behaviour(mode="error")}, signing_key="k", echo=None) as receivers:
        config = write_config(tmp_path / "dg.yaml", receivers, max_attempts=1)
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
        message = sns_event(make_event().model_dump_json())
        writes = faults.on("dynamodb", "PutItem", [], then="throttle", when=body_mentions('"NOTIF#'))
        with pytest.raises(DeliveryError, match="to be retried"):
            app.lambda_handler(message, Context())
        assert writes.injected >= 2 and recorded(aws) == {}
        assert receivers.counts()["slack"] == 1
        [letter] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
        assert letter.channel == "ops-webhook"

        faults.clear()
        aws.clock.advance(60)  # Lambda retries a failed asynchronous invocation about a minute later
        result = app.lambda_handler(message, Context())
        assert receivers.counts()["slack"] == 1  # not twice
    assert result["suppressed"] == 2  # both channels: handled already
    assert len(aws.dlq_messages()) == 1
    assert recorded(aws) == {"ops-slack": ["delivered", "suppressed"], "ops-webhook": ["dead_lettered", "suppressed"]}


def test_a_channel_throttled_before_its_delivery_is_given_back_and_the_retry_delivers_it_once(
    aws: Aws, app: ModuleType, faults: FaultInjector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook's rate-limit count is throttled after its delivery was claimed: the claim (and its
    cooldown) is given back, the invocation fails, and Lambda's retry delivers it; Slack, delivered
    by the first invocation, is not delivered again."""
    with local_receivers(signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers)))
        message = sns_event(make_event().model_dump_json())
        faults.on("dynamodb", "UpdateItem", [], then="throttle", when=body_mentions("NOTIFY-RATE#ops-webhook"))
        with pytest.raises(DeliveryError, match="to be retried"):
            app.lambda_handler(message, Context())
        assert (receivers.counts()["slack"], receivers.counts()["webhook"]) == (1, 0)

        faults.clear()
        aws.clock.advance(60)
        result = app.lambda_handler(message, Context())
        assert (receivers.counts()["slack"], receivers.counts()["webhook"]) == (1, 1)
    assert (result["delivered"], result["suppressed"]) == (1, 1)
    assert recorded(aws) == {"ops-slack": ["delivered", "suppressed"], "ops-webhook": ["delivered"]}


def test_a_claim_that_cannot_be_given_back_fails_every_retry_until_its_lease_ends_then_delivers(
    aws: Aws, app: ModuleType, faults: FaultInjector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, and giving the webhook's claim back is throttled too: while its lease runs a retry
    must not take "in progress" for done (the audit: it returned, and nothing more came); it fails
    again, and the retry after the lease takes the claim over and delivers."""
    with local_receivers(signing_key="k", echo=None) as receivers:
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_config(tmp_path / "dg.yaml", receivers)))
        event = make_event()
        message = sns_event(event.model_dump_json())
        faults.on("dynamodb", "UpdateItem", [], then="throttle", when=body_mentions("NOTIFY-RATE#ops-webhook"))
        faults.on("dynamodb", "DeleteItem", [], then="throttle", when=body_mentions(f"{event.event_id}#ops-webhook"))
        with pytest.raises(DeliveryError, match="to be retried"):
            app.lambda_handler(message, Context())
        faults.clear()
        claim = app.router().noise.deliveries.get(f"{event.event_id}#ops-webhook")
        assert claim is not None and claim.state == "claimed" and not claim.lease_over

        aws.clock.advance(claim.lease_until - aws.clock().timestamp() - 1)  # a retry while the lease runs
        with pytest.raises(DeliveryError, match="to be retried"):
            app.lambda_handler(message, Context())
        assert receivers.counts()["webhook"] == 0
        aws.clock.advance(120)  # Lambda's second retry, two minutes later: the lease is over
        app.lambda_handler(message, Context())
        assert (receivers.counts()["slack"], receivers.counts()["webhook"]) == (1, 1)
    webhook = [n for n in aws.repository.notifications("dg-1") if n.channel == "ops-webhook"]
    assert [(n.status.value, n.error) for n in webhook] == [
        ("suppressed", "in progress: another invocation is delivering it"),
        ("delivered", None),
    ]
