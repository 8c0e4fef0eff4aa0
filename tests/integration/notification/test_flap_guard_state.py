"""The flap guard's state (moto's DynamoDB, the simulated clock) when a flush and an assessment or a
trigger interleave, when a deferred resolve's channel went away or resolves at once now, and when
DynamoDB fails the flush: calls interleaved by hand, no threads racing; a receiver on 127.0.0.1 stands
in for PagerDuty and Slack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from notif_support import Aws, make_event, pagerduty_actions, status_event

from deployguard.models import EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.flapguard import FlapGuard
from deployguard.notification.settings import NotificationSettings
from deployguard_local.chaos.faults import FaultInjector, body_mentions
from deployguard_local.receivers import LocalReceivers, local_receivers

PD = "ops-pagerduty"


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(echo=None) as group:
        yield group


def _settings(receivers: LocalReceivers, delay: int = 180, **extra: Any) -> NotificationSettings:
    channels: dict[str, Any] = {
        PD: {"type": "pagerduty", "url": receivers.urls["pagerduty"], "routing_key": "k",
             "trigger_severity": "warning", "resolve_after_healthy_seconds": delay},
        "ops-slack": {"type": "slack", "url": receivers.urls["slack"],
                      "rate_limit": {"max_messages": 1, "per_seconds": 3600}},
    }  # fmt: skip
    document: dict[str, Any] = {
        "allowed_hosts": ["127.0.0.1"],
        "channels": channels,
        "routes": [{"channels": list(channels)}],
        "digest": {"window_seconds": 30},
        "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.001},
    }
    document.update(extra)
    return NotificationSettings.model_validate(document)


def test_an_unhealthy_assessment_during_a_flush_revokes_its_lease_and_keeps_a_newer_deferred_resolve(
    aws: Aws,
) -> None:
    guard = FlapGuard(aws.repository)
    assert guard.healthy(PD, status_event(aws, "healthy"), 300)
    aws.clock.advance(301)
    [found] = guard.due(aws.clock())
    leased = guard.take(found)
    assert leased is not None and guard.still_mine(leased)
    guard.unhealthy(PD, status_event(aws, "degraded"))  # while the flush sends the resolve
    assert not guard.still_mine(leased)  # the flush checks right before sending: it does not send
    aws.clock.advance(60)
    assert guard.healthy(PD, status_event(aws, "healthy"), 300)  # healthy again: a new resolve waits
    assert guard.finish(leased, done=True) is False  # the old flush finishing deletes nothing
    assert guard.replays(leased) == []  # the degraded assessment sent no trigger (PagerDuty is not told)
    guard.release(leased)
    assert guard.due(aws.clock()) == []
    aws.clock.advance(301)
    [again] = guard.due(aws.clock())
    assert again.resolve_due > leased.resolve_due and guard.take(again) is not None


def test_a_trigger_during_a_flush_revokes_its_lease(aws: Aws) -> None:
    guard = FlapGuard(aws.repository)
    guard.healthy(PD, status_event(aws, "healthy"), 60)
    aws.clock.advance(61)
    leased = guard.take(guard.due(aws.clock())[0])
    assert leased is not None
    aws.clock.advance(-30)  # a trigger older than the lease, arriving late, cancels all the same
    failed = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL, at=aws.clock())
    guard.triggered(PD, failed)
    assert not guard.still_mine(leased) and guard.finish(leased, done=True) is False
    assert [e.event_id for e in guard.replays(leased)] == [failed.event_id]  # sent again after the resolve
    guard.release(leased)
    aws.clock.advance(600)
    assert guard.due(aws.clock()) == []


def test_the_router_does_not_send_a_resolve_cancelled_after_it_was_taken(aws: Aws, receivers: LocalReceivers) -> None:
    router = aws.router(_settings(receivers))
    router.route(status_event(aws, "degraded"))
    aws.clock.advance(60)
    router.route(status_event(aws, "healthy"))
    aws.clock.advance(181)
    leased = router.flaps.take(router.flaps.due(aws.clock())[0])
    assert leased is not None
    router.route(status_event(aws, "degraded"))  # the page goes out while the flush holds the resolve
    assert router._send_resolve(leased) == []
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1")] * 2
    aws.clock.advance(600)
    assert router.flush_resolves() == []
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1")] * 2


def test_resolves_of_a_removed_channel_are_dropped_and_do_not_hold_the_others(
    aws: Aws, receivers: LocalReceivers
) -> None:
    guard = FlapGuard(aws.repository)
    for i in range(60):  # more than one flush's page of due resolves, due first
        guard.healthy("old-pagerduty", status_event(aws, "healthy", deployment_id=f"dg-old-{i}"), 60)
    aws.clock.advance(10)
    router = aws.router(_settings(receivers))
    router.route(status_event(aws, "degraded"))
    aws.clock.advance(10)
    router.route(status_event(aws, "healthy"))
    aws.clock.advance(181)
    router.flush_resolves()
    router.flush_resolves()
    assert pagerduty_actions(receivers)[-1] == ("resolve", "deployguard/dg-1")
    assert guard.due(aws.clock()) == []


def test_a_resolve_deferred_before_its_channel_resolves_at_once_is_sent_when_due(
    aws: Aws, receivers: LocalReceivers
) -> None:
    router = aws.router(_settings(receivers))
    router.route(status_event(aws, "degraded"))
    aws.clock.advance(10)
    router.route(status_event(aws, "healthy"))
    aws.clock.advance(181)
    now = aws.router(_settings(receivers, delay=0))  # reconfigured meanwhile: resolves at once now
    assert [n.status.value for n in now.flush_resolves()] == ["delivered"]
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1"), ("resolve", "deployguard/dg-1")]
    assert FlapGuard(aws.repository).due(aws.clock() + timedelta(hours=1)) == []


def test_a_dynamodb_failure_of_the_resolve_flush_does_not_hold_the_digests(aws: Aws, receivers: LocalReceivers) -> None:
    router = aws.router(_settings(receivers, routes=[{"channels": ["ops-slack"]}]))
    for i in range(3):
        router.route(make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, details={"step_index": i}))
    assert receivers.counts()["slack"] == 1  # two held for the digest
    aws.clock.advance(31)
    with FaultInjector(aws.clock) as faults:
        faults.on("dynamodb", "Query", [], then="throttle", when=body_mentions("PENDING#PD-FLAP"))
        digest = router.flush_digests()
    assert [n.status.value for n in digest] == ["delivered"] * 2
    assert receivers.counts()["slack"] == 2


def test_a_redelivered_trigger_cancels_the_deferred_resolve(aws: Aws, receivers: LocalReceivers) -> None:
    """``notifications retry`` redelivering a dead-lettered page after the canary recovered: the page
    stays open (the resolve deferred since the healthy assessment is not sent afterwards)."""
    router = aws.router(_settings(receivers))
    router.route(status_event(aws, "degraded"))
    aws.clock.advance(10)
    router.route(status_event(aws, "healthy"))
    aws.clock.advance(10)
    failed = make_event(EventType.DEPLOYMENT_FAILED, Severity.CRITICAL, at=aws.clock())
    assert router.redeliver(DeadLetter(kind="event", channel=PD, events=[failed], error="HTTP 503")).ok
    aws.clock.advance(600)
    assert router.flush_resolves() == []
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1")] * 2
