"""The notification router: from one DeploymentEvent to deliveries on every channel.

For each channel the configured routes select (each channel once per event):

1. dedup: an event id already handled for the channel is suppressed (SNS redelivery);
2. cooldown: the same deployment/event type/status/severity within the cooldown is
   suppressed;
3. the channel renders the event (PagerDuty renders nothing for events it does not act
   on: recorded as suppressed);
4. rate limit: below ``noise.bypass_severity`` an event over the channel's limit is
   held for the digest (recorded as suppressed, sent by :meth:`flush_digests`);
5. delivery with retries; what still fails goes to the dead-letter queue.

Every outcome is recorded with ``repository.add_notification`` (channel, status,
attempts, latency, error), so "did ops get paged?" has an answer. If a failed
delivery cannot be dead-lettered either, its dedup marker is released and
:class:`DeliveryError` is raised after the other channels, so that the caller fails
and SNS delivers the event again: nothing is lost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from deployguard import clock
from deployguard.exceptions import ConfigError, DeliveryError
from deployguard.models import DeliveryStatus, DeploymentEvent, Notification
from deployguard.notification import settings as cfg
from deployguard.notification.base import Channel, OutboundMessage
from deployguard.notification.delivery import Deliverer, DeliveryResult
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue
from deployguard.notification.noise import NoiseControl
from deployguard.notification.pagerduty import PagerDutyChannel, alert_event_key
from deployguard.notification.secrets import SecretResolver
from deployguard.notification.slack import SlackChannel
from deployguard.notification.sns_channels import EmailChannel, SmsChannel
from deployguard.notification.teams import TeamsChannel
from deployguard.notification.urlsafety import validate_outbound_url
from deployguard.notification.webhook import WebhookChannel
from deployguard.storage.repository import DeploymentRepository

logger = logging.getLogger(__name__)


def local_mode_from_env() -> bool:
    return os.environ.get("DEPLOYGUARD_LOCAL", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class RedeliveryOutcome:
    ok: bool
    notifications: list[Notification] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Failure:
    event: DeploymentEvent
    channel: str


class NotificationRouter:
    def __init__(
        self,
        settings: cfg.NotificationSettings,
        repository: DeploymentRepository,
        dlq_url: str | None,
        *,
        local_mode: bool | None = None,
        secrets: SecretResolver | None = None,
        deliverer: Deliverer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.local_mode = local_mode_from_env() if local_mode is None else local_mode
        self.dlq = DeadLetterQueue(dlq_url) if dlq_url else None
        self.secrets = secrets or SecretResolver(local_mode=self.local_mode)
        self.deliverer = deliverer or Deliverer(settings.delivery, settings.allowed_hosts, self.local_mode, sleep=sleep)
        self.noise = NoiseControl(settings, repository)
        self.check()
        self.channels: dict[str, Channel] = {
            name: self._build(name, channel) for name, channel in settings.channels.items()
        }

    # ------------------------------------------------------------------ setup

    def check(self) -> None:
        """Refuse literal secrets outside local mode and unsafe literal URLs, before any event."""
        for name, channel in self.settings.channels.items():
            where = f"notifications.channels.{name}"
            for source in channel.secret_sources():
                self.secrets.check_allowed(source, where)
                if source.field == "url" and source.value is not None:
                    validate_outbound_url(
                        source.value, self.settings.allowed_hosts, self.local_mode, field=f"{where}.url"
                    )
            if isinstance(channel, cfg.PagerDutyChannel):
                validate_outbound_url(channel.url, self.settings.allowed_hosts, self.local_mode, field=f"{where}.url")

    def _secret(self, source: cfg.SecretSource, where: str) -> Callable[[], SecretStr]:
        return lambda: self.secrets.resolve(source, where)

    def _build(self, name: str, channel: cfg.ChannelSettings) -> Channel:
        where = f"notifications.channels.{name}"
        max_events = self.settings.digest.max_events
        if isinstance(channel, cfg.SlackChannel):
            return SlackChannel(name, self._secret(channel.url_source(), where), max_events)
        if isinstance(channel, cfg.TeamsChannel):
            return TeamsChannel(name, self._secret(channel.url_source(), where), max_events)
        if isinstance(channel, cfg.WebhookChannel):
            return WebhookChannel(
                name,
                self._secret(channel.url_source(), where),
                self._secret(channel.signing_key_source(), where),
                channel.signature_header,
            )
        if isinstance(channel, cfg.PagerDutyChannel):
            return PagerDutyChannel(
                name,
                channel.url,
                self._secret(channel.routing_key_source(), where),
                channel.trigger_severity,
                alert_keys=self._alert_keys,
            )
        if isinstance(channel, cfg.EmailChannel):
            return EmailChannel(name, channel.topic_arn, max_events)
        return SmsChannel(name, channel.topic_arn, channel.sender_id)

    def _alert_keys(self, deployment_id: str) -> list[str]:
        """PagerDuty keys of the alerts and incidents recorded for a deployment (to resolve them)."""
        keys = {alert_event_key(e) for e in self.repository.events(deployment_id)}
        return sorted(k for k in keys if k)

    # ------------------------------------------------------------------ routing

    def route(self, event: DeploymentEvent) -> list[Notification]:
        """Deliver ``event`` to every channel its routes select; one record per channel."""
        if not self.settings.enabled:
            return []
        unknown = self.settings.unknown_targets(event)
        if unknown:
            logger.warning(
                "event names unknown notification targets",
                extra={"event_id": event.event_id, "unknown": unknown},
            )
        recorded: list[Notification] = []
        lost: list[_Failure] = []
        for name in self.settings.route_channels(event):
            notification = self._route_to(event, name)
            recorded.append(notification)
            if notification.status is DeliveryStatus.FAILED:
                lost.append(_Failure(event, name))
        if lost:
            raise DeliveryError(
                f"event {event.event_id} could not be delivered to {', '.join(f.channel for f in lost)} "
                "nor dead-lettered; it will be processed again"
            )
        return recorded

    def _record(
        self,
        event: DeploymentEvent,
        channel: str,
        status: DeliveryStatus,
        result: DeliveryResult | None = None,
        error: str | None = None,
    ) -> Notification:
        notification = Notification(
            event_id=event.event_id,
            deployment_id=event.deployment_id,
            channel=channel,
            status=status,
            attempts=result.attempts if result else 0,
            latency_ms=result.latency_ms if result else None,
            error=error if error is not None else (result.error if result else None),
        )
        self.repository.add_notification(notification)
        log = logger.warning if status in (DeliveryStatus.FAILED, DeliveryStatus.DEAD_LETTERED) else logger.info
        log(
            "notification %s",
            status.value,
            extra={
                "channel": channel,
                "event_id": event.event_id,
                "event_type": event.event_type.value,
                "deployment_id": event.deployment_id,
                "attempts": notification.attempts,
                "latency_ms": notification.latency_ms,
                "error": notification.error,
            },
        )
        return notification

    def _route_to(self, event: DeploymentEvent, name: str) -> Notification:
        if not self.noise.first_delivery(event, name):
            return self._record(event, name, DeliveryStatus.SUPPRESSED, error="duplicate: event already handled")
        if not self.noise.cooled_down(event, name):
            return self._record(
                event,
                name,
                DeliveryStatus.SUPPRESSED,
                error=f"cooldown: sent in the last {self.settings.cooldown_seconds(event.event_type)}s",
            )
        channel = self.channels[name]
        try:
            messages = channel.render(event)
        except (ConfigError, ClientError, BotoCoreError) as exc:
            return self._fail(event, name, [event], "event", DeliveryResult(False, 0, 0.0, error=_short(exc)))
        if not messages:
            return self._record(
                event, name, DeliveryStatus.SUPPRESSED, error=f"{channel.kind.value} does not act on this event"
            )
        bypass = event.severity.rank >= self.settings.noise.bypass_severity.rank
        if not bypass and not self.noise.rate_allows(name, self.settings.rate_limit(name)):
            self.noise.hold(name, event)
            return self._record(event, name, DeliveryStatus.SUPPRESSED, error="rate limited: held for the digest")
        result = self._deliver_all(messages, name)
        if result.ok:
            return self._record(event, name, DeliveryStatus.DELIVERED, result)
        return self._fail(event, name, [event], "event", result)

    def _deliver_all(self, messages: Sequence[OutboundMessage], name: str) -> DeliveryResult:
        attempts, latency = 0, 0.0
        for message in messages:
            result = self.deliverer.deliver(message, field=f"notifications.channels.{name}")
            attempts += result.attempts
            latency += result.latency_ms
            if not result.ok:
                return DeliveryResult(False, attempts, round(latency, 3), result.status_code, result.error)
        return DeliveryResult(True, attempts, round(latency, 3), 200)

    def _fail(
        self,
        event: DeploymentEvent,
        name: str,
        events: list[DeploymentEvent],
        kind: str,
        result: DeliveryResult,
        redeliveries: int = 0,
    ) -> Notification:
        """Dead-letter a failed delivery; record DEAD_LETTERED, or FAILED if even that failed."""
        error = result.error or "delivery failed"
        if self.dlq is not None:
            letter = DeadLetter(
                kind="digest" if kind == "digest" else "event",
                channel=name,
                events=events,
                error=error,
                attempts=result.attempts,
                redeliveries=redeliveries,
            )
            try:
                self.dlq.send(letter)
            except (ClientError, BotoCoreError) as exc:
                logger.error("dead-letter queue unavailable", extra={"channel": name, "error": _short(exc)})
            else:
                return self._record(event, name, DeliveryStatus.DEAD_LETTERED, result, error=error)
        if kind == "event" and redeliveries == 0:
            # SNS will deliver the event again: it must not look like a duplicate then
            self.noise.forget_delivery(event, name)
            self.noise.forget_cooldown(event, name)
        return self._record(event, name, DeliveryStatus.FAILED, result, error=f"{error}; not dead-lettered")

    # ------------------------------------------------------------------ digests

    def flush_digests(self, force: bool = False, channels: Sequence[str] | None = None) -> list[Notification]:
        """Send held events as one digest per channel once the oldest waited ``digest.window_seconds``.

        Call it regularly (the Lambda handler does on every invocation, and on a
        schedule); ``force`` sends whatever is held now (end of a demo).
        """
        recorded: list[Notification] = []
        now = clock.now()
        for name in channels or list(self.settings.channels):
            held = self.noise.held(name)
            if not held:
                continue
            oldest = min(h.held_at for h in held)
            if not force and (now - oldest).total_seconds() < self.settings.digest.window_seconds:
                continue
            if not self.noise.lock_digest(name):
                continue
            try:
                recorded += self._send_digest(name, [h.event for h in held])
                self.noise.release_held(name, held)
            finally:
                self.noise.unlock_digest(name)
        failed = [n for n in recorded if n.status is DeliveryStatus.FAILED]
        if failed:
            raise DeliveryError(f"{len(failed)} digest deliveries failed and could not be dead-lettered; kept held")
        return recorded

    def _send_digest(self, name: str, events: list[DeploymentEvent]) -> list[Notification]:
        channel = self.channels[name]
        try:
            messages = channel.render_digest(events)
        except (ConfigError, ClientError, BotoCoreError) as exc:
            result = DeliveryResult(False, 0, 0.0, error=_short(exc))
            return [self._fail(events[0], name, events, "digest", result)] + [
                self._record(e, name, DeliveryStatus.DEAD_LETTERED, result) for e in events[1:]
            ]
        if not messages:
            return [
                self._record(e, name, DeliveryStatus.SUPPRESSED, error=f"{channel.kind.value} sends no digests")
                for e in events
            ]
        result = self._deliver_all(messages, name)
        if result.ok:
            return [self._record(e, name, DeliveryStatus.DELIVERED, result, error=None) for e in events]
        first = self._fail(events[0], name, events, "digest", result)
        return [first] + [self._record(e, name, first.status, result, error=first.error) for e in events[1:]]

    # ------------------------------------------------------------------ redelivery

    def redeliver(self, letter: DeadLetter) -> RedeliveryOutcome:
        """Deliver a dead letter again, without noise control; records every attempt.

        On failure nothing is dead-lettered here: the caller keeps the letter.
        """
        if letter.kind == "malformed" or not letter.events or not letter.channel:
            return RedeliveryOutcome(False, error="a malformed message cannot be redelivered")
        if letter.channel not in self.channels:
            return RedeliveryOutcome(False, error=f"channel {letter.channel!r} is no longer configured")
        name = letter.channel
        channel = self.channels[name]
        try:
            if letter.kind == "digest":
                messages = channel.render_digest(letter.events)
            else:
                messages = [m for e in letter.events for m in channel.render(e)]
        except (ConfigError, ClientError, BotoCoreError) as exc:
            result = DeliveryResult(False, 0, 0.0, error=_short(exc))
        else:
            result = self._deliver_all(messages, name) if messages else DeliveryResult(True, 0, 0.0)
        status = DeliveryStatus.DELIVERED if result.ok else DeliveryStatus.DEAD_LETTERED
        error = None if result.ok else f"redelivery {letter.redeliveries + 1}: {result.error}"
        notifications = [self._record(e, name, status, result, error=error) for e in letter.events]
        return RedeliveryOutcome(result.ok, notifications, None if result.ok else result.error)


def _short(exc: BaseException) -> str:
    """An error message safe to record: ConfigError texts are built without secrets."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, ClientError):
        return f"AWS {exc.response.get('Error', {}).get('Code', 'error')}"
    return type(exc).__name__
