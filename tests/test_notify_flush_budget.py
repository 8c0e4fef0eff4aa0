"""The router function's digest flush keeps within the invocation's remaining time.

Two Slack webhooks on servers that accept the connection and never answer, Teams on a local receiver
(all on 127.0.0.1): the scheduled flush sends every channel's digest at once, each within the budget
taken from ``get_remaining_time_in_millis``, and returns before the invocation's time is up; the
digests it could not send stay held, and the next flush, with time enough, dead-letters them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from notif_support import (
    SCHEDULE,
    Aws,
    Context,
    aws,  # noqa: F401  (the fixture)
    make_event,
    router_app,
    send,
    sns_event,
    status_event,
    write_notifications,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard_local.chaos.faults import never_answering_server
from deployguard_local.receivers import local_receivers


@dataclass
class Countdown(Context):
    """A Lambda context whose remaining time runs out ``seconds`` after it is made (real time)."""

    seconds: float = 120.0

    def __post_init__(self) -> None:
        self.ends_at = time.monotonic() + self.seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends_at - time.monotonic()) * 1000))


def warm(app: ModuleType) -> None:
    """The router function's container warmed by an invocation with nothing to do (the schedule's flush, nothing
    held): its configuration read, its router and clients built. The next invocation's 2 s are then the
    deliveries' own, not the cold start's: on a loaded machine the cold start alone used them up, and every channel
    was dead-lettered after 0 attempts ("delivery deadline of -0s"), the one that answers too."""
    assert app.lambda_handler(SCHEDULE, Countdown(seconds=60))["delivered"] == 0


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:  # noqa: F811
    with router_app(aws, monkeypatch) as module:
        yield module


def test_a_hung_channel_does_not_hold_the_scheduled_flush_past_the_invocation_s_time(
    aws: Aws,  # noqa: F811
    app: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with ExitStack() as stack:
        hung_a = stack.enter_context(never_answering_server("/services/T0/B0/a"))
        hung_b = stack.enter_context(never_answering_server("/services/T0/B0/b"))
        receivers = stack.enter_context(local_receivers(kinds=("teams",), echo=None))
        notifications = {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {
                "slack-a": {"type": "slack", "url": hung_a},
                "slack-b": {"type": "slack", "url": hung_b},
                "teams": {"type": "teams", "url": receivers.urls["teams"]},
            },
            "routes": [{"channels": ["slack-a", "slack-b", "teams"]}],
            "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
            # a hung channel retries until its deadline: it never ends on its own within a budget
            "delivery": {"max_attempts": 10, "read_timeout_seconds": 1, "backoff_base_seconds": 0.01,
                         "deadline_seconds": 4},
        }  # fmt: skip
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_notifications(tmp_path / "dg.yaml", notifications)))
        # the first event goes out at once (dead-lettered on the hung ones), the second is held by the rate limit
        first = make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, details={"step_index": 1})
        second = make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, details={"step_index": 2})
        warm(app)
        app.lambda_handler(sns_event(first.model_dump_json()), Countdown(seconds=2))
        send(app, second, new_container=False)
        router = app.router()
        assert {n: len(router.noise.held(n)) for n in router.channels} == {"slack-a": 1, "slack-b": 1, "teams": 1}
        letters_before = len(aws.dlq_messages())
        aws.clock.advance(120)  # the digest window passed

        context = Countdown(seconds=4.8)  # budget: 4.8 s less a quarter, shorter than the 4 s deadline
        started = time.monotonic()
        totals = app.lambda_handler(SCHEDULE, context)
        took = time.monotonic() - started

        assert took < 4.8, f"the flush took {took:.1f}s of an invocation that had 4.8s"
        assert totals["delivered"] == 1 and totals["dead_lettered"] == 0 and totals["failed"] == 0
        assert receivers.counts()["teams"] == 2  # the event, then the digest: not held up by the hung ones
        # the hung channels' digests were not sent in time: held for the next flush, not dead-lettered yet
        assert {n: len(router.noise.held(n)) for n in router.channels} == {"slack-a": 1, "slack-b": 1, "teams": 0}
        assert len(aws.dlq_messages()) == letters_before
        second_records = {n.channel: n.status for n in aws.repository.notifications("dg-1")
                          if n.event_id == second.event_id and n.status is not DeliveryStatus.SUPPRESSED}  # fmt: skip
        assert second_records == {"teams": DeliveryStatus.DELIVERED}

        # the next flush has time for the whole deadline: the hung channels' digests are dead-lettered
        totals = app.lambda_handler(SCHEDULE, Countdown(seconds=60))
        assert totals["dead_lettered"] == 2 and totals["failed"] == 0
        assert {n: len(router.noise.held(n)) for n in router.channels} == {"slack-a": 0, "slack-b": 0, "teams": 0}
    letters = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    digests = sorted((x.channel, [e.event_id for e in x.events]) for x in letters if x.kind == "digest")
    assert digests == [("slack-a", [second.event_id]), ("slack-b", [second.event_id])]


def test_a_hung_pagerduty_resolve_leaves_the_digests_their_share_of_the_budget(
    aws: Aws,  # noqa: F811
    app: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with ExitStack() as stack:
        hung = stack.enter_context(never_answering_server("/v2/enqueue"))
        receivers = stack.enter_context(local_receivers(kinds=("teams",), echo=None))
        notifications = {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {
                "ops-pagerduty": {"type": "pagerduty", "url": hung, "routing_key": "local-routing-key",
                                  "trigger_severity": "warning", "resolve_after_healthy_seconds": 180},
                "teams": {"type": "teams", "url": receivers.urls["teams"]},
            },
            "routes": [{"channels": ["ops-pagerduty", "teams"]}],
            "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
            "delivery": {"max_attempts": 10, "read_timeout_seconds": 1, "backoff_base_seconds": 0.01,
                         "deadline_seconds": 4},
        }  # fmt: skip
        monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(write_notifications(tmp_path / "dg.yaml", notifications)))
        degraded = status_event(aws, "degraded")
        warm(app)
        app.lambda_handler(sns_event(degraded.model_dump_json()), Countdown(seconds=2))  # the page: dead-lettered
        aws.clock.advance(30)  # within the rate limit's minute
        healthy = status_event(aws, "healthy")  # PagerDuty's resolve deferred; Teams holds it (rate limit)
        app.lambda_handler(sns_event(healthy.model_dump_json()), Countdown(seconds=2))
        assert receivers.counts()["teams"] == 1
        aws.clock.advance(181)  # the resolve is due, the digest window passed

        started = time.monotonic()
        totals = app.lambda_handler(SCHEDULE, Countdown(seconds=4.8))  # 3.6 s: the resolves get half
        took = time.monotonic() - started

        assert took < 4.8, f"the flush took {took:.1f}s of an invocation that had 4.8s"
        assert receivers.counts()["teams"] == 2  # the digest went out after the hung resolve was given up
        assert totals["delivered"] == 1 and totals["dead_lettered"] == 1
    healthy_records = {n.channel: n.status for n in aws.repository.notifications("dg-1")
                       if n.event_id == healthy.event_id and n.status is not DeliveryStatus.SUPPRESSED}  # fmt: skip
    assert healthy_records == {"ops-pagerduty": DeliveryStatus.DEAD_LETTERED, "teams": DeliveryStatus.DELIVERED}
