"""The notification dead-letter queue (SQS): what could not be delivered, kept whole.

The router writes :class:`DeadLetter` bodies (JSON): the channel, the event(s) and why
delivery failed, or the raw text of a malformed SNS message. The same queue is the
SNS subscription's redrive target and the function's on-failure destination, whose
bodies :func:`events_in` reads. ``deployguard notifications retry`` redelivers all.

A body must fit SQS's message size: 256 KiB (a queue's ``MaximumMessageSize`` may be raised to 1 MiB
since 2025, not lowered below what we send): a digest of many events is dead-lettered in several
letters, each of at most :data:`LETTER_EVENTS_BYTES` of events (:func:`split_events`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployguard.aws.sqs import Queue
from deployguard.models import DeploymentEvent, utcnow

if TYPE_CHECKING:
    from deployguard.notification.settings import NotificationSettings

SQS_MESSAGE_BYTES = 256 * 1024  # SQS's message size (the default queue limit before 2025; 1 MiB now at most)
LETTER_EVENTS_BYTES = 200_000  # the events of one letter: the rest of the body (error, attributes) fits in 56 KiB


def split_events(events: list[DeploymentEvent], limit: int = LETTER_EVENTS_BYTES) -> list[list[DeploymentEvent]]:
    """``events`` in order, in parts whose JSON takes at most ``limit`` bytes (an event larger alone
    is a part by itself: an event came on SNS, whose messages are at most 256 KiB)."""
    parts: list[list[DeploymentEvent]] = []
    current: list[DeploymentEvent] = []
    size = 0
    for event in events:
        length = len(event.model_dump_json().encode()) + 1  # and its comma
        if current and size + length > limit:
            parts.append(current)
            current, size = [], 0
        current.append(event)
        size += length
    if current:
        parts.append(current)
    return parts


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    kind: Literal["event", "digest", "malformed"]
    channel: str | None = None
    events: list[DeploymentEvent] = Field(default_factory=list)
    raw: str | None = Field(default=None, description="a malformed message as it arrived")
    error: str
    attempts: int = 0
    redeliveries: int = 0
    failed_at: datetime = Field(default_factory=utcnow)


class DeadLetterQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self._queue = Queue(queue_url)

    def send(self, letter: DeadLetter) -> str:
        attributes = {"kind": letter.kind} | ({"channel": letter.channel} if letter.channel else {})
        return self._queue.send(letter.model_dump_json(), attributes)

    def receive(self, max_messages: int, visibility_timeout: int = 300) -> list[dict[str, Any]]:
        return self._queue.receive(max_messages, visibility_timeout)

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again at once (it stays in the queue)."""
        self._queue.release(receipt_handle)

    def delete(self, receipt_handle: str) -> None:
        self._queue.delete(receipt_handle)


def events_in(
    body: str, settings: NotificationSettings | None = None, environment: str = "production"
) -> list[DeploymentEvent]:
    """The deployment events in a queue message that is not a :class:`DeadLetter`.

    The notification DLQ also receives what SNS could not hand to the function (the
    published message: a DeploymentEvent, or the SNS envelope JSON) and Lambda's
    on-failure records (``requestPayload`` is the SNS event), from the events topic and the
    operator topic alike: a guard alarm's CloudWatch notification is read as its alert
    (:func:`deployguard.notification.guard_alarms.alarm_event`, with ``settings``' severity and
    service, in ``environment``; the same event id as when it first came; none when ``settings`` turn
    guard alarms off, as the router drops them). Raises ``ValueError``.
    """
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if isinstance(document.get("requestPayload"), dict):  # Lambda on-failure destination record
        records = document["requestPayload"].get("Records") or []
        found = [_event(r["Sns"]["Message"], settings, environment) for r in records]
    elif document.get("Type") == "Notification" and isinstance(document.get("Message"), str):  # SNS envelope
        found = [_event(document["Message"], settings, environment)]
    else:
        found = [_event(document, settings, environment)]
    return [event for event in found if event is not None]


def _event(
    message: str | dict[str, Any], settings: NotificationSettings | None, environment: str
) -> DeploymentEvent | None:
    if isinstance(message, str):
        if '"AlarmName"' not in message:
            return DeploymentEvent.model_validate_json(message)
        message = json.loads(message)
    if not (isinstance(message, dict) and "AlarmName" in message and "event_type" not in message):
        return DeploymentEvent.model_validate(message)
    from deployguard.notification import guard_alarms
    from deployguard.notification.settings import NotificationSettings

    alarm = guard_alarms.CloudWatchAlarm.model_validate(message)
    if settings is not None and not settings.guard_alarms.enabled:
        return None  # the router drops them too (notifications.guard_alarms.enabled: false)
    return guard_alarms.alarm_event(alarm, settings or NotificationSettings(), environment)
