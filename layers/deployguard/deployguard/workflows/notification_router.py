"""What the notification router function does, so that its handler stays thin.

- an SNS event: each record's Message is a DeploymentEvent (the events topic) or the notification
  CloudWatch publishes when one of DeployGuard's own alarms changes state (the operator topic:
  ``AlarmName``, ``NewStateValue``, ...), routed as an alert (:mod:`deployguard.notification.guard_alarms`);
  a malformed one is logged once with the field that is wrong and kept whole in the dead-letter queue,
  and the rest of the batch goes on; then due digests are flushed;
- an EventBridge scheduled event (``source: aws.events``, every minute): due digests and
  PagerDuty's due deferred resolves (its flap guard) are flushed; only there, so that an
  SNS invocation does not query the resolves' index.

When something could be neither delivered nor dead-lettered, :class:`DeliveryError`
is raised at the end so that Lambda's retries (and its on-failure destination, the
same queue) take over: nothing is lost.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser.models import SnsModel
from pydantic import BaseModel, ConfigDict, Field

from deployguard.exceptions import DeliveryError, InvalidEventError
from deployguard.inbound import parse_event, parse_json_event
from deployguard.models import DeliveryStatus, DeploymentEvent, EventType, Notification
from deployguard.workflows import runtime

if TYPE_CHECKING:  # the configuration, the router (channels, HTTP) and the DLQ: imported when first built (cold start)
    from deployguard.config import DeployGuardConfig
    from deployguard.notification.router import NotificationRouter
    from deployguard.notification.settings import NotificationSettings

logger = logging.getLogger(__name__)


class RouterEnvironment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    deployments_table: str = Field(alias="DEPLOYMENTS_TABLE", min_length=1)
    notification_dlq_url: str | None = Field(default=None, alias="NOTIFICATION_DLQ_URL")
    config_file: str | None = Field(default=None, alias="DEPLOYGUARD_CONFIG_FILE")
    local_mode: bool = Field(default=False, alias="DEPLOYGUARD_LOCAL")


@functools.cache
def environment() -> RouterEnvironment:
    return runtime.read_environment(RouterEnvironment)


@functools.cache
def config() -> DeployGuardConfig:
    from deployguard.config import load_config

    return load_config(environment().config_file)


def settings() -> NotificationSettings:
    return config().notifications


@functools.cache
def router() -> NotificationRouter:
    from deployguard.notification.router import NotificationRouter
    from deployguard.storage.repository import DeploymentRepository

    env = environment()
    return NotificationRouter(
        settings(),
        DeploymentRepository(env.deployments_table),
        env.notification_dlq_url or None,
        local_mode=env.local_mode,
    )


def reset() -> None:
    """Forget cached configuration and router (a new container; tests)."""
    for cached in (environment, config, router):
        cached.cache_clear()


runtime.on_reset(reset)


def parse_sns(event: Any) -> SnsModel:
    """The SNS envelope, bounded; :class:`InvalidEventError` names the field."""
    return parse_event(SnsModel, event, "SNS envelope")


def parse_deployment_event(message: str) -> DeploymentEvent:
    """One SNS message as a DeploymentEvent (at most SNS's 256 KiB); :class:`InvalidEventError` names the field."""
    return parse_json_event(DeploymentEvent, message, "deployment event")


def parse_message(message: str) -> DeploymentEvent | None:
    """One SNS message as the DeploymentEvent to route: a deployment event, or the alert of a guard alarm
    (CloudWatch's notification of one of DeployGuard's own alarms); None for a guard alarm when
    ``notifications.guard_alarms.enabled`` is off. :class:`InvalidEventError` names the field."""
    document = _alarm_document(message)
    if document is None:
        return parse_deployment_event(message)
    from deployguard.notification.guard_alarms import alarm_event, parse_cloudwatch_alarm

    alarm = parse_cloudwatch_alarm(document)
    if not settings().guard_alarms.enabled:
        logger.info("guard alarm not routed: notifications.guard_alarms.enabled is false",
                    extra={"alarm": alarm.AlarmName, "state": alarm.NewStateValue})  # fmt: skip
        return None
    return alarm_event(alarm, settings(), config().environment)


def _alarm_document(message: str) -> dict[str, Any] | None:
    """The JSON object of a CloudWatch alarm notification (``AlarmName`` and no ``event_type``); None for
    anything else (parsed as a deployment event). A message that names ``AlarmName`` but is no JSON within
    the bounds is a malformed alarm."""
    if '"AlarmName"' not in message:
        return None
    from deployguard.inbound import MAX_EVENT_BYTES
    from deployguard.notification.guard_alarms import looks_like_alarm

    size = len(message.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEventError(f"cloudwatch alarm: {size} bytes, at most {MAX_EVENT_BYTES} are accepted",
                                field="(message)")  # fmt: skip
    try:
        document = json.loads(message)
    except (ValueError, RecursionError):
        raise InvalidEventError("cloudwatch alarm: not a JSON document", field="(message)") from None
    return document if looks_like_alarm(document) else None


def _kept(event: Any) -> str:
    """The malformed event as text for the dead-letter queue (SQS keeps at most 256 KiB: cut at 200,000)."""
    try:
        text = json.dumps(event, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(event).__name__} that is not JSON>"
    return text[:200_000]


def _dead_letter_malformed(raw: str, error: str) -> None:
    """Keep a malformed message whole in the DLQ; without a DLQ fail, so it is retried."""
    url = environment().notification_dlq_url
    if not url:
        raise DeliveryError(f"malformed message and no NOTIFICATION_DLQ_URL to keep it: {error}")
    from deployguard.notification.dlq import DeadLetter, DeadLetterQueue

    DeadLetterQueue(url).send(DeadLetter(kind="malformed", raw=raw, error=error))


def _warn_unrouted_alarm(event: DeploymentEvent) -> None:
    if event.details.get("kind") == "guard_alarm" and settings().enabled:
        logger.warning(
            "guard alarm reached no channel: set notifications.guard_alarms.routes or a route for alerts",
            extra={"alarm": event.details.get("alert"), "state": event.details.get("alarm_state")},
        )


def _count(notifications: list[Notification], totals: dict[str, int]) -> None:
    for n in notifications:
        totals[n.status.value] = totals.get(n.status.value, 0) + 1


def handle(event: Any, remaining_ms: Callable[[], int] | None = None) -> dict[str, int]:
    """Process one invocation; returns counts per delivery status and of malformed records.

    ``remaining_ms`` (the context's ``get_remaining_time_in_millis``) bounds each event's deliveries, and
    the digests' and deferred resolves' of the flush.
    """
    totals: dict[str, int] = {s.value: 0 for s in DeliveryStatus}
    totals["malformed"] = 0
    if isinstance(event, dict) and event.get("source") == "aws.events":
        _count(router().flush_digests(remaining_ms=remaining_ms), totals)
        return totals
    try:
        envelope = parse_sns(event)
    except InvalidEventError as exc:
        logger.error("malformed SNS event", extra={"field": exc.field, "error": str(exc)})
        _dead_letter_malformed(_kept(event), str(exc))
        totals["malformed"] += 1
        return totals

    undelivered: list[str] = []
    routed: list[str] = []  # the events' deployments, for the summary line
    for record in envelope.Records:
        raw = str(record.Sns.Message)
        try:
            deployment_event = parse_message(raw)
        except InvalidEventError as exc:
            extra = {"field": exc.field, "error": str(exc), "sns_message_id": record.Sns.MessageId}
            what = "cloudwatch alarm" if str(exc).startswith("cloudwatch alarm") else "deployment event"
            logger.error(f"malformed {what}", extra=extra)
            _dead_letter_malformed(raw, str(exc))
            totals["malformed"] += 1
            continue
        if deployment_event is None:
            continue
        routed.append(deployment_event.deployment_id)
        try:
            notifications = router().route(deployment_event, remaining_ms)
            _count(notifications, totals)
            if not notifications and deployment_event.event_type is EventType.ALERT:
                _warn_unrouted_alarm(deployment_event)
        except DeliveryError as exc:
            logger.error("event not delivered", extra={"event_id": deployment_event.event_id, "error": str(exc)})
            undelivered.append(deployment_event.event_id)
    # PagerDuty's deferred resolves: on the schedule; the digests within what the invocation has left
    _count(router().flush_digests(resolves=False, remaining_ms=remaining_ms), totals)
    logger.info("notifications routed", extra={"totals": totals, **runtime.deployment_keys(routed)})
    if undelivered:
        raise DeliveryError(f"events neither delivered nor dead-lettered (to be retried): {', '.join(undelivered)}")
    return totals
