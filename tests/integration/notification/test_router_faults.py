"""Issue 11, part 3: no notification lost, and no channel held up by another.

Real HTTP receivers on 127.0.0.1: one that throttles with ``Retry-After: 60``, and a server
that accepts connections and never answers. The router's waits go through an injected sleep
that blocks until the test lets it go, so the test sees what happens *while* a channel waits,
without racing any timer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from notif_support import Aws, make_event

from deployguard.models import DeliveryStatus
from deployguard.notification.delivery import Deliverer
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.settings import NotificationSettings
from deployguard_local.chaos.faults import never_answering_server
from deployguard_local.receivers import Behaviour, local_receivers


@pytest.fixture
def silent_server() -> Iterator[str]:
    with never_answering_server("/services/T0/B0/never-answers") as url:
        yield url


def _settings(channels: dict[str, dict[str, Any]], **delivery: Any) -> NotificationSettings:
    return NotificationSettings.model_validate(
        {
            "channels": channels,
            "allowed_hosts": ["127.0.0.1"],  # the local receivers: loopback by explicit opt-in
            "roles": {"ops": {"channels": list(channels)}},
            "routes": [{"name": "ops", "roles": ["ops"]}],
            "delivery": {"max_attempts": 3, "backoff_base_seconds": 0.01, **delivery},
        }
    )


class HeldSleep:
    """A sleep that blocks until released, recording what was asked: no real time passes in the test."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.release = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        assert self.release.wait(timeout=30), "never released"


def _wait_until(condition: Any, what: str) -> None:
    done = threading.Event()
    for _ in range(200):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"{what} did not happen")


def test_a_channel_throttled_with_retry_after_60_delays_no_other(aws: Aws) -> None:
    behaviours = {"teams": Behaviour(mode="flaky", status=429, failures=1, retry_after="60")}
    with local_receivers(behaviours, kinds=("teams", "slack", "webhook"), signing_key="k", echo=None) as receivers:
        urls = receivers.urls
        settings = _settings(
            {  # the throttled channel first: delivered one after the other, it held the others a minute
                "ops-teams": {"type": "teams", "url": urls["teams"]},
                "ops-slack": {"type": "slack", "url": urls["slack"]},
                "audit-webhook": {"type": "webhook", "url": urls["webhook"], "signing_key": "k"},
            }
        )
        sleep = HeldSleep()
        router = aws.router(settings, deliverer=Deliverer(settings.delivery, settings.allowed_hosts, True, sleep=sleep))
        event = make_event()
        routed: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: routed.update(result=router.route(event, lambda: 120_000)))
        worker.start()
        try:
            # while teams waits out its Retry-After, slack and the webhook already have the event
            _wait_until(lambda: receivers.counts()["slack"] == 1 and receivers.counts()["webhook"] == 1 and sleep.asked,
                        "slack and webhook delivered while teams waits")  # fmt: skip
            assert sleep.asked == [60.0] and receivers.counts()["teams"] == 0
        finally:
            sleep.release.set()
            worker.join(timeout=30)
        assert {n.channel: n.status for n in routed["result"]} == {
            "ops-teams": DeliveryStatus.DELIVERED,
            "ops-slack": DeliveryStatus.DELIVERED,
            "audit-webhook": DeliveryStatus.DELIVERED,
        }
        assert receivers.counts() == {"teams": 1, "slack": 1, "webhook": 1}


def test_a_retry_after_beyond_the_invocation_s_budget_goes_to_the_dead_letter_queue_at_once(aws: Aws) -> None:
    behaviours = {"teams": Behaviour(mode="throttle", retry_after="60")}
    with local_receivers(behaviours, kinds=("teams", "slack"), echo=None) as receivers:
        settings = _settings({"ops-teams": {"type": "teams", "url": receivers.urls["teams"]},
                              "ops-slack": {"type": "slack", "url": receivers.urls["slack"]}})  # fmt: skip
        sleep = HeldSleep()
        # time from the simulated clock: the budget the error names does not shrink with the test's own pace
        deliverer = Deliverer(
            settings.delivery, settings.allowed_hosts, True, sleep=sleep, monotonic=lambda: aws.clock().timestamp()
        )
        router = aws.router(settings, deliverer=deliverer)
        # 40 s left in the invocation: the deliveries get 30 s, so waiting 60 s is not even started
        recorded = {n.channel: n for n in router.route(make_event(), lambda: 40_000)}
    assert sleep.asked == []
    assert recorded["ops-slack"].status is DeliveryStatus.DELIVERED
    teams = recorded["ops-teams"]
    assert teams.status is DeliveryStatus.DEAD_LETTERED and "deadline of 30s reached" in (teams.error or "")
    [letter] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert letter.channel == "ops-teams"


def test_a_channel_that_never_answers_is_dead_lettered_within_the_budget_and_the_others_delivered(
    aws: Aws, silent_server: str
) -> None:
    with local_receivers(kinds=("webhook",), signing_key="k", echo=None) as receivers:
        settings = _settings(
            {
                "ops-slack": {"type": "slack", "url": silent_server},
                "audit-webhook": {"type": "webhook", "url": receivers.urls["webhook"], "signing_key": "k"},
            },
            read_timeout_seconds=60,
        )
        router = aws.router(settings)
        event = make_event()
        # 4 s left in the invocation: a read timeout of 60 s must not keep the router past it (the
        # budget is wide enough for the good delivery, one local answer, on a loaded machine; the silent
        # one never answers)
        recorded = {n.channel: n for n in router.route(event, lambda: 4_000)}
        assert receivers.counts()["webhook"] == 1
    assert recorded["audit-webhook"].status is DeliveryStatus.DELIVERED
    slack = recorded["ops-slack"]
    assert slack.status is DeliveryStatus.DEAD_LETTERED
    # 4 s left less the reserve: the deliveries had 3 s (either the read or the wait for it ended it)
    assert re.search(r"(delivery deadline|invocation's time budget) of 3s", slack.error or ""), slack.error
    [letter] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert letter.channel == "ops-slack" and [e.event_id for e in letter.events] == [event.event_id]
    # SNS delivering the same event again finds it handled: in the queue, not sent twice, not lost
    again = {n.channel: n for n in router.route(event, lambda: 4_000)}
    assert {n.status for n in again.values()} == {DeliveryStatus.SUPPRESSED}
    assert len(aws.dlq_messages()) == 1
