"""Issue 11, part 5: ``make chaos`` counts a notification lost only when it is.

The router runs on the embedded AWS (SNS -> Lambda, its dead-letter queue in SQS) and delivers
to the local HTTP receivers, made to fail for 300 simulated seconds. The 10 notifications the
benchmark counted lost were all in the dead-letter queue: it read only the first ten messages
of the queue (a receive with no visibility timeout returns the same ones again), so once
earlier runs had left ten there, a later run's dead letters were never seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from deployguard.aws import clients
from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue
from deployguard_local.chaos.bench import Case, World, notification_fate, run_case


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the module, as ``make chaos`` has one per worker for many runs."""
    with pytest.MonkeyPatch.context() as patch, ExitStack() as stack:
        for name in ("CHAOS_SLACK_URL", "CHAOS_WEBHOOK_URL"):  # the world sets them; restored afterwards
            patch.setenv(name, "")
        yield World(stack, tmp_path_factory.mktemp("chaos"))


def _queued(world: World) -> int:
    attributes = clients.client("sqs").get_queue_attributes(
        QueueUrl=world.aws.ref("NotificationDeadLetterQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _earlier_dead_letters(world: World, count: int) -> None:
    """What earlier runs left in the dead-letter queue (``make chaos`` never empties it)."""
    queue = DeadLetterQueue(world.aws.ref("NotificationDeadLetterQueue"))
    for index in range(count):
        event = DeploymentEvent(
            event_type=EventType.ROLLBACK_COMPLETED,
            deployment_id=f"earlier-{index}",
            service="notify-probe",
            version="2",
            environment="production",
            severity=Severity.CRITICAL,
            title="Rollback Completed",
            message="an earlier run",
        )
        queue.send(DeadLetter(kind="event", channel="probe-slack", events=[event], error="HTTP 503"))


def test_a_dead_lettered_notification_behind_ten_others_is_not_counted_lost(world: World) -> None:
    _earlier_dead_letters(world, 12)
    case = Case(index=7, seed=1, subject="router", state="route", service="http", kind="outage", seconds=300)

    outcome = run_case(world, case)

    assert "delivered=[]" in outcome.detail  # the receivers answered 503 throughout the delivery budget
    assert "dead_lettered=['slack', 'webhook']" in outcome.detail
    assert outcome.counts["notifications_lost"] == 0


def test_a_notification_neither_delivered_nor_dead_lettered_is_counted_lost(world: World) -> None:
    event = DeploymentEvent(
        event_type=EventType.ROLLBACK_COMPLETED,
        deployment_id="chaos-r0001",
        service="notify-probe",
        version="2",
        environment="production",
        severity=Severity.CRITICAL,
        title="Rollback Completed",
        message="never published",
    )
    _earlier_dead_letters(world, 3)
    queued = _queued(world)

    delivered, dead, lost = notification_fate(world, event)

    assert (delivered, dead, lost) == (set(), set(), {"slack", "webhook"})
    assert _queued(world) == queued  # every message read is visible again, left for ``notifications retry``
