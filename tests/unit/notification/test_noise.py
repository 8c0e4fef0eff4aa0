from __future__ import annotations

from notif_support import Aws, make_event

from deployguard.models import EventType, Severity
from deployguard.notification.noise import NoiseControl, cooldown_key
from deployguard.notification.settings import NotificationSettings, RateLimit


def test_dedup_marker_per_event_and_channel(aws: Aws) -> None:
    noise = NoiseControl(NotificationSettings(), aws.repository)
    event = make_event()
    lease = aws.clock().timestamp() + 120
    slack = noise.claim_delivery(event, "slack", lease)
    assert slack.mine and not noise.claim_delivery(event, "slack", lease).mine  # in progress elsewhere
    assert noise.claim_delivery(event, "teams", lease).mine
    noise.forget_delivery(event, "slack", slack)
    again = noise.claim_delivery(event, "slack", lease)
    assert again.mine
    noise.delivered(event, "slack", "delivered")
    aws.clock.advance(600)  # past the lease: a delivered event stays a duplicate until the TTL
    duplicate = noise.claim_delivery(event, "slack", aws.clock().timestamp() + 120)
    assert not duplicate.mine and duplicate.existing is not None and duplicate.existing.state == "done"


def test_a_claim_whose_invocation_died_is_taken_over_after_its_lease(aws: Aws) -> None:
    noise = NoiseControl(NotificationSettings(), aws.repository)
    event = make_event()
    assert noise.claim_delivery(event, "slack", aws.clock().timestamp() + 120).mine  # then the invocation died
    assert not noise.claim_delivery(event, "slack", aws.clock().timestamp() + 120).mine  # its lease still runs
    aws.clock.advance(121)
    retry = noise.claim_delivery(event, "slack", aws.clock().timestamp() + 120)
    assert retry.mine and retry.taken_over is not None


def test_cooldown_expires_and_escalation_passes(aws: Aws) -> None:
    settings = NotificationSettings.model_validate({"noise": {"cooldown_seconds": 300}})
    noise = NoiseControl(settings, aws.repository)
    waiting = make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING)
    assert noise.cooled_down(waiting, "slack")
    assert not noise.cooled_down(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING), "slack")
    assert noise.cooled_down(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.CRITICAL), "slack")
    aws.clock.advance(301)
    assert noise.cooled_down(make_event(EventType.DEPLOYMENT_LONG_RUNNING, Severity.WARNING), "slack")


def test_cooldown_key_tells_statuses_steps_and_alerts_apart() -> None:
    def key(**details: object) -> str:
        return cooldown_key(make_event(EventType.ASSESSMENT_STATUS_CHANGED, details=details), "c")

    assert key(status="warning") != key(status="critical")
    step = [cooldown_key(make_event(EventType.CANARY_STEP_ADVANCED, details={"step_index": i}), "c") for i in (1, 2)]
    assert step[0] != step[1]


def test_rate_limit_per_channel_and_window(aws: Aws) -> None:
    noise = NoiseControl(NotificationSettings(), aws.repository)
    limit = RateLimit(max_messages=2, per_seconds=60)
    aws.clock.advance(60 - aws.clock().timestamp() % 60)  # start of a window
    assert [noise.rate_allows("slack", limit) for _ in range(3)] == [True, True, False]
    assert noise.rate_allows("teams", limit)
    aws.clock.advance(60)
    assert noise.rate_allows("slack", limit)


def test_digest_buffer_round_trip(aws: Aws) -> None:
    noise = NoiseControl(NotificationSettings(), aws.repository)
    events = [make_event(deployment_id=f"dg-{i}") for i in range(3)]
    for event in events:
        noise.hold("slack", event)
        aws.clock.advance(1)
    held = noise.held("slack")
    assert [h.event.event_id for h in held] == [e.event_id for e in events]
    assert noise.lock_digest("slack") and not noise.lock_digest("slack")
    noise.release_held("slack", held)
    noise.unlock_digest("slack")
    assert noise.held("slack") == [] and noise.lock_digest("slack")
