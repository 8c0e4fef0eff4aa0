"""The notification router: from one DeploymentEvent to deliveries on every channel.

For each channel the configured routes select (each channel once per event):

1. dedup: the delivery of the event to the channel is claimed until the invocation's end
   (a lease); an event the channel already got is suppressed (SNS redelivery); one another
   invocation is delivering now is recorded "in progress" and not final: :class:`DeliveryError`
   is raised so that the event comes again; a claim left by an invocation that died is taken
   over and delivered again (a channel is marked delivered only once it was);
2. cooldown: the same deployment/event type/status/severity within the cooldown is
   suppressed (not on PagerDuty, which groups repeats by ``dedup_key`` itself);
3. the channel renders the event (PagerDuty renders nothing for events it does not act
   on: recorded as suppressed; PagerDuty's resolve of an assessment back to healthy is
   deferred by its flap guard, :mod:`deployguard.notification.flapguard`, and sent by
   :meth:`flush_digests` on the schedule once the deployment stayed healthy);
4. rate limit: below ``noise.bypass_severity`` an event over the channel's limit is
   held for the digest (recorded as suppressed, sent by :meth:`flush_digests`); PagerDuty
   is never rate limited: a page, acknowledge or resolve held back would be lost;
5. delivery with retries, every channel at once (one thread each), within a time budget
   taken from the invocation's remaining time (``remaining_ms``) less a reserve for
   dead-lettering and recording: a channel throttled with ``Retry-After 60`` delays no
   other; what is not delivered in the budget, or fails, goes to the dead-letter queue.

:meth:`NotificationRouter.flush_digests` keeps to the invocation's time the same way: the deferred
PagerDuty resolves in half the budget, then every channel's digest at once; a digest cut by a budget
shorter than ``delivery.deadline_seconds`` stays held for the next flush, and a failed digest is
dead-lettered in letters that fit an SQS message. A PagerDuty trigger for an event from before the
terminal resolve of its key (a late copy: SNS keeps no order) is suppressed and audited.

Every outcome is recorded with ``repository.add_notification`` (channel, status,
attempts, latency, error), so "did ops get paged?" has an answer; the record is also
kept on the channel's dedup marker, so that a copy of the event arriving after an
invocation that failed to write it writes it. If a failed delivery cannot be
dead-lettered either, or an AWS call fails on a channel (a throttled DynamoDB), the
claims of the channels whose event is not safe yet (delivered, dead-lettered or held)
are released and :class:`DeliveryError` is raised after the other channels, so that
the caller fails and the event comes again: nothing is lost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from deployguard import clock
from deployguard.exceptions import ConfigError, ConflictError, DeliveryError
from deployguard.models import DeliveryStatus, DeploymentEvent, EventType, Notification
from deployguard.notification import settings as cfg
from deployguard.notification.delivery import Deliverer, DeliveryResult
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue, split_events
from deployguard.notification.flapguard import DueResolve, FlapGuard
from deployguard.notification.formatting import alert_resolved, health_status
from deployguard.notification.noise import HeldEvent, NoiseControl
from deployguard.notification.pagerduty import (
    RECOVERY_EVENTS,
    PagerDutyChannel,
    alert_event_key,
    deployment_dedup_key,
)
from deployguard.notification.secrets import SecretResolver
from deployguard.notification.slack import SlackChannel
from deployguard.notification.sns_channels import EmailChannel, SmsChannel
from deployguard.notification.teams import TeamsChannel
from deployguard.notification.urlsafety import validate_outbound_url
from deployguard.notification.webhook import WebhookChannel

if TYPE_CHECKING:
    from pydantic import SecretStr

    from deployguard.notification.base import Channel, OutboundMessage
    from deployguard.storage.leases import Claim, Marker
    from deployguard.storage.repository import DeploymentRepository

logger = logging.getLogger(__name__)
RESERVE_SECONDS = 10.0  # kept from the invocation's remaining time to dead-letter and record
LEASE_MARGIN_SECONDS = 30.0  # a claim outlives the budget by this much (the reserve, and clock skew)
IN_PROGRESS = "in progress: another invocation is delivering it"
REPLAYED = "sent again after a deferred resolve that was on the wire (flap guard)"


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


@dataclass
class _Ready:
    """A channel past dedup, cooldown, rendering and rate limit: its messages wait for delivery."""

    channel: str
    messages: list[OutboundMessage]
    claim: Claim


@dataclass
class _Digest:
    """A channel's due digest, locked by this flush: its held events and the messages that send them."""

    name: str
    held: list[HeldEvent]
    messages: list[OutboundMessage]


@dataclass
class _Pending:
    """A channel claimed by this invocation whose event is not safe yet (delivered, dead-lettered or
    held): if the invocation fails before it is, the claim is given back so that the retry delivers."""

    claim: Claim
    cooldown: bool = False  # this invocation took the cooldown marker: given back with the claim


def delivery_budget(remaining_ms: Callable[[], int] | None, default_seconds: float) -> float:
    """Seconds the deliveries of one event may take: the invocation's remaining time less a reserve."""
    if remaining_ms is None:
        return default_seconds
    remaining = max(0.0, remaining_ms() / 1000.0)
    return min(default_seconds, remaining - min(RESERVE_SECONDS, remaining / 4))


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
        self.flaps = FlapGuard(repository)
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

    def route(self, event: DeploymentEvent, remaining_ms: Callable[[], int] | None = None) -> list[Notification]:
        """Deliver ``event`` to every channel its routes select, in parallel; one record per channel.

        ``remaining_ms`` is the invocation's ``context.get_remaining_time_in_millis``: the
        deliveries end within it, less a reserve (without it: ``delivery.deadline_seconds``).
        """
        if not self.settings.enabled:
            return []
        unknown = self.settings.unknown_targets(event)
        if unknown:
            logger.warning(
                "event names unknown notification targets",
                extra={"event_id": event.event_id, "unknown": unknown},
            )
        budget = delivery_budget(remaining_ms, self.settings.delivery.deadline_seconds)
        deadline_at = self.deliverer.monotonic() + budget
        lease_until = clock.now().timestamp() + budget + LEASE_MARGIN_SECONDS
        names = self.settings.route_channels(event)
        recorded: dict[str, Notification] = {}
        errors: dict[str, str] = {}  # channels an AWS call failed on: the event must come again
        pending: dict[str, _Pending] = {}
        ready: list[_Ready] = []
        try:
            for name in names:
                try:
                    prepared = self._prepare(event, name, lease_until, pending)
                except (ClientError, BotoCoreError) as exc:
                    errors[name] = _short(exc)
                    self._give_back(event, name, pending)
                    continue
                if isinstance(prepared, _Ready):
                    ready.append(prepared)
                else:
                    recorded[name] = prepared
            results = self._deliver_parallel(ready, deadline_at, budget)
            for item in ready:
                try:
                    recorded[item.channel] = self._settle_delivery(event, item, results[item.channel], pending)
                except (ClientError, BotoCoreError) as exc:
                    errors[item.channel] = _short(exc)
                    self._give_back(event, item.channel, pending)
        finally:
            for name in list(pending):  # an unexpected error: no claim stays leased with its event unsafe
                self._give_back(event, name, pending)
        self._raise_unless_final(event, names, recorded, errors)
        return [recorded[n] for n in names]

    def _raise_unless_final(
        self, event: DeploymentEvent, names: list[str], recorded: dict[str, Notification], errors: dict[str, str]
    ) -> None:
        """:class:`DeliveryError` unless every channel's outcome is final, so that the event comes again."""
        lost = [_Failure(event, n) for n in names if n in recorded and recorded[n].status is DeliveryStatus.FAILED]
        busy = [n for n in names if n in recorded and _in_progress(recorded[n])]
        problems: list[str] = []
        if lost:
            problems.append(f"could not be delivered to {', '.join(f.channel for f in lost)} nor dead-lettered")
        if errors:
            problems.append("failed on " + ", ".join(f"{n} ({error})" for n, error in errors.items()))
        if busy:
            problems.append(f"is still being delivered to {', '.join(busy)} by another invocation")
        if problems:
            raise DeliveryError(f"event {event.event_id} {'; '.join(problems)}; it will be processed again")

    def _give_back(self, event: DeploymentEvent, name: str, pending: dict[str, _Pending]) -> None:
        """Release a claim whose event is not safe yet (and the cooldown taken with it): the retry delivers."""
        held = pending.pop(name, None)
        if held is None:
            return
        try:
            self.noise.forget_delivery(event, name, held.claim)
            if held.cooldown:
                self.noise.forget_cooldown(event, name)
        except (ClientError, BotoCoreError) as exc:  # the lease runs out: a retry after it takes the claim over
            logger.error("cannot give the delivery claim back", extra={"channel": name, "error": _short(exc)})

    def _settle_delivery(
        self, event: DeploymentEvent, item: _Ready, result: DeliveryResult, pending: dict[str, _Pending]
    ) -> Notification:
        pending.pop(item.channel, None)  # delivered, or dead-lettered now (or released if it cannot be)
        if result.ok:
            return self._settle(event, item.channel, DeliveryStatus.DELIVERED, "delivered", result)
        return self._fail(event, item.channel, [event], "event", result, claim=item.claim)

    def _settle(
        self,
        event: DeploymentEvent,
        name: str,
        status: DeliveryStatus,
        outcome: str,
        result: DeliveryResult | None = None,
        error: str | None = None,
    ) -> Notification:
        """Mark the channel's delivery done (keeping its record on the marker), then record it."""
        notification = self._notification(event, name, status, result, error)
        self._confirm(event, name, outcome, notification)
        return self._write(event, notification)

    def _confirm(self, event: DeploymentEvent, name: str, outcome: str, notification: Notification) -> None:
        try:
            self.noise.delivered(event, name, outcome, notification)
        except (ClientError, BotoCoreError) as exc:  # delivered all the same; a redelivery may repeat it
            logger.error("cannot mark the delivery done", extra={"channel": name, "error": _short(exc)})

    def _restore_record(self, marker: Marker | None) -> None:
        """Write the record kept on a done marker, in case the invocation that settled the delivery
        failed before writing it (the same item: written once)."""
        notification = self.noise.settled_record(marker)
        if notification is None:
            return
        try:
            self.repository.add_notification(notification)
        except ConflictError:
            return  # recorded already: the usual case
        logger.warning(
            "notification record restored",
            extra={"channel": notification.channel, "event_id": notification.event_id, "status": notification.status},
        )

    def _record(
        self,
        event: DeploymentEvent,
        channel: str,
        status: DeliveryStatus,
        result: DeliveryResult | None = None,
        error: str | None = None,
    ) -> Notification:
        return self._write(event, self._notification(event, channel, status, result, error))

    @staticmethod
    def _notification(
        event: DeploymentEvent,
        channel: str,
        status: DeliveryStatus,
        result: DeliveryResult | None = None,
        error: str | None = None,
    ) -> Notification:
        return Notification(
            event_id=event.event_id,
            deployment_id=event.deployment_id,
            channel=channel,
            status=status,
            attempts=result.attempts if result else 0,
            latency_ms=result.latency_ms if result else None,
            error=error if error is not None else (result.error if result else None),
        )

    def _write(self, event: DeploymentEvent, notification: Notification) -> Notification:
        self.repository.add_notification(notification)
        status = notification.status
        log = logger.warning if status in (DeliveryStatus.FAILED, DeliveryStatus.DEAD_LETTERED) else logger.info
        log(
            "notification %s",
            status.value,
            extra={
                "channel": notification.channel,
                "event_id": event.event_id,
                "event_type": event.event_type.value,
                "deployment_id": event.deployment_id,
                "attempts": notification.attempts,
                "latency_ms": notification.latency_ms,
                "error": notification.error,
            },
        )
        return notification

    def _prepare(
        self, event: DeploymentEvent, name: str, lease_until: float, pending: dict[str, _Pending]
    ) -> Notification | _Ready:
        """Dedup, cooldown, rendering and rate limit of one channel: a record, or messages to deliver.

        A claim taken is in ``pending`` until the event is safe (held, suppressed, or ready: then
        :meth:`_settle_delivery` takes it out), so that a failure gives it back.
        """
        claim = self.noise.claim_delivery(event, name, lease_until)
        if not claim.mine:
            if claim.existing is not None and claim.existing.state != "done":
                return self._record(event, name, DeliveryStatus.SUPPRESSED, error=IN_PROGRESS)
            self._restore_record(claim.existing)
            return self._record(event, name, DeliveryStatus.SUPPRESSED, error="duplicate: event already handled")
        pending[name] = _Pending(claim)
        # a claim taken over from an invocation that died: that one passed cooldown and rate limit already
        resumed = claim.taken_over is not None
        if not resumed and self.settings.noise_controlled(name):
            if not self.noise.cooled_down(event, name):
                del pending[name]
                cooldown = self.settings.cooldown_seconds(event.event_type)
                error = f"cooldown: sent in the last {cooldown}s"
                return self._settle(event, name, DeliveryStatus.SUPPRESSED, "suppressed", error=error)
            pending[name].cooldown = True
        channel = self.channels[name]
        deferral = self._flap_guard(event, name)
        if deferral is not None:
            del pending[name]  # kept by the flap guard: the flush sends it
            return self._settle(event, name, DeliveryStatus.SUPPRESSED, "suppressed", error=deferral)
        try:
            messages = channel.render(event)
        except (ConfigError, ClientError, BotoCoreError) as exc:
            del pending[name]  # dead-lettered now (or released if it cannot be)
            result = DeliveryResult(False, 0, 0.0, error=_short(exc))
            return self._fail(event, name, [event], "event", result, claim=claim)
        if not messages:
            del pending[name]
            error = f"{channel.kind.value} does not act on this event"
            return self._settle(event, name, DeliveryStatus.SUPPRESSED, "suppressed", error=error)
        limit = self.settings.rate_limit(name)  # None: never rate limited (PagerDuty)
        bypass = resumed or event.severity.rank >= self.settings.noise.bypass_severity.rank
        if not bypass and limit is not None and not self.noise.rate_allows(name, limit):
            self.noise.hold(name, event)
            del pending[name]  # safe in the digest buffer
            error = "rate limited: held for the digest"
            return self._settle(event, name, DeliveryStatus.SUPPRESSED, "held", error=error)
        return _Ready(name, list(messages), claim)

    def _flap_guard(self, event: DeploymentEvent, name: str) -> str | None:
        """PagerDuty's flap guard (:mod:`deployguard.notification.flapguard`): the resolve of an assessment
        back to healthy is deferred (returns why; the event is then not sent now), an unhealthy assessment
        or any event PagerDuty is sent a trigger for (a failure, an alert, an incident, an escalation page)
        cancels a deferred resolve before the trigger goes out, a terminal recovery drops it (and resolves
        at once). None: send as usual. A channel that resolves at once (``resolve_after_healthy_seconds``
        0) still cancels or drops what an earlier configuration deferred (the flush sends the rest)."""
        channel = self.channels.get(name)
        if not isinstance(channel, PagerDutyChannel):
            return None
        delay = self._resolve_delay(name)
        status = health_status(event) if event.event_type is EventType.ASSESSMENT_STATUS_CHANGED else None
        alert_key = alert_event_key(event)
        if event.event_type in RECOVERY_EVENTS:  # terminal: triggers from before it are stale from now on
            self.flaps.ended(name, deployment_dedup_key(event.deployment_id), event)
        elif alert_key is not None and alert_resolved(event):
            self.flaps.ended(name, alert_key, event)
        elif channel.triggers(event):
            stale = self._stale_trigger(event, name, alert_key)
            if stale is not None:
                return stale
        if event.event_type in RECOVERY_EVENTS or (status == "healthy" and delay <= 0):
            self.flaps.forget(name, event.deployment_id)
            return None
        if status == "healthy":
            self.flaps.healthy(name, event, delay)
            return f"resolve deferred: sent once healthy for {delay}s (flap guard)"
        if status is not None:
            self.flaps.unhealthy(name, event, trigger=channel.triggers(event))
            return None
        self._cancel_deferred_resolve(event, name)
        return None

    def _stale_trigger(self, event: DeploymentEvent, name: str, alert_key: str | None) -> str | None:
        """Why a trigger for ``event`` is not sent (audited): its key was resolved for good by an event that
        happened after it (a late copy: SNS keeps no order, Lambda retries); None: send it."""
        keys = [deployment_dedup_key(event.deployment_id)] + ([alert_key] if alert_key else [])
        ended = self.flaps.ended_after(name, keys, event)
        if ended is None:
            return None
        reason = f"stale trigger: resolved for good by {ended}, after this event"
        extra = {"channel": name, "event_id": event.event_id, "deployment_id": event.deployment_id, "ended": ended}
        logger.warning("stale PagerDuty trigger suppressed", extra=extra)
        self.repository.audit(
            event.deployment_id, "notification.stale_trigger_suppressed", "notification-router", reason,
            channel=name, event_id=event.event_id, event_type=event.event_type.value,
            event_at=event.at.isoformat(),
        )  # fmt: skip
        return reason

    def _cancel_deferred_resolve(self, event: DeploymentEvent, name: str) -> None:
        """A trigger goes out to PagerDuty for the deployment (a page): the resolve the flap guard defers
        since a healthy assessment must not close it, so it is cancelled first (one a flush is sending
        meanwhile is followed by this trigger again: :meth:`FlapGuard.triggered`)."""
        channel = self.channels.get(name)
        if isinstance(channel, PagerDutyChannel) and channel.triggers(event):
            self.flaps.triggered(name, event)

    def _resolve_delay(self, name: str) -> int:
        channel = self.settings.channels.get(name)
        return channel.resolve_after_healthy_seconds if isinstance(channel, cfg.PagerDutyChannel) else 0

    def flush_resolves(self, deadline_at: float | None = None) -> list[Notification]:
        """Send PagerDuty's deferred resolves that are due (the deployment stayed healthy for the channel's
        ``resolve_after_healthy_seconds``): delivered, or dead-lettered; one that could be neither is kept
        for the next flush. One whose channel was removed (or is no PagerDuty channel any more) is dropped;
        one whose channel resolves at once now is sent now, due or not. Called by :meth:`flush_digests`
        (on the router's schedule), which logs what fails here (DynamoDB) and goes on with the digests: the
        next flush takes the rest. ``deadline_at`` (on the deliverer's ``monotonic``) bounds every delivery;
        the resolves not taken by then wait for the next flush."""
        pagerduty = [n for n, c in self.settings.channels.items() if isinstance(c, cfg.PagerDutyChannel)]
        if not pagerduty:
            return []  # none to send to; what an earlier configuration deferred waits for its TTL
        recorded: list[Notification] = []
        for found in self.flaps.due(clock.now(), at_once=[n for n in pagerduty if self._resolve_delay(n) <= 0]):
            if found.channel not in pagerduty:
                self.flaps.drop(found)  # the channel was removed: nobody to resolve at
                continue
            if deadline_at is not None and self.deliverer.monotonic() >= deadline_at:
                break  # out of time: the next flush finds the rest due
            due = self.flaps.take(found)
            if due is None:
                continue
            try:
                recorded += self._send_resolve(due, deadline_at)
            except (ClientError, BotoCoreError) as exc:  # the lease runs out: a later flush takes it over
                logger.error(
                    "cannot send a deferred resolve",
                    extra={"channel": due.channel, "deployment_id": due.deployment_id, "error": _short(exc)},
                )
        return recorded

    def _send_resolve(self, due: DueResolve, deadline_at: float | None = None) -> list[Notification]:
        """Deliver a leased resolve, and after it the triggers PagerDuty was sent while it was on the wire
        (so that the incident ends open whichever reached PagerDuty first). Nothing when it was cancelled
        (a trigger, an unhealthy assessment) since it was taken: checked right before sending; but taken
        over from a flush that died, maybe after sending it, the triggers since are sent again."""
        name, event = due.channel, due.event
        try:
            messages = self.channels[name].render(event)
        except (ConfigError, ClientError, BotoCoreError) as exc:
            messages, result = [], DeliveryResult(False, 0, 0.0, error=_short(exc))
        else:
            result = DeliveryResult(True, 0, 0.0)
        if not self.flaps.still_mine(due):  # cancelled meanwhile: a page went out, or will; it must stay open
            return self._replay(due, deadline_at) if due.taken_over else self._release(due)
        if result.ok and messages:
            result = self._deliver_all(messages, name, deadline_at)
        if result.ok:
            outcome = self._record(event, name, DeliveryStatus.DELIVERED, result)
        else:
            outcome = self._fail(event, name, [event], "event", result)
        if self.flaps.finish(due, done=outcome.status is not DeliveryStatus.FAILED):
            return [outcome]
        return [
            outcome,
            *self._replay(due, deadline_at),
        ]  # revoked while it was sent: its triggers go out again, after it

    def _replay(self, due: DueResolve, deadline_at: float | None = None) -> list[Notification]:
        """Send again, after the resolve, the triggers PagerDuty was sent while the resolve was on the wire;
        then end the lease. One that can be neither delivered nor dead-lettered keeps the lease: once it
        runs out, a later flush takes the resolve over and sends them again."""
        name = due.channel
        recorded: list[Notification] = []
        for trigger in self.flaps.replays(due):
            try:
                result = self._deliver_all(self.channels[name].render(trigger), name, deadline_at)
            except (ConfigError, ClientError, BotoCoreError) as exc:
                result = DeliveryResult(False, 0, 0.0, error=_short(exc))
            if result.ok:
                recorded.append(self._record(trigger, name, DeliveryStatus.DELIVERED, result, error=REPLAYED))
            else:
                recorded.append(self._fail(trigger, name, [trigger], "event", result))
            if recorded[-1].status is DeliveryStatus.FAILED:
                return recorded
        logger.warning(
            "deferred resolve cancelled while it was sent: the triggers since are sent again after it",
            extra={"channel": name, "deployment_id": due.deployment_id, "replayed": len(recorded)},
        )
        return recorded + self._release(due)

    def _release(self, due: DueResolve) -> list[Notification]:
        self.flaps.release(due)
        return []

    def _deliver_parallel(self, ready: list[_Ready], deadline_at: float, budget: float) -> dict[str, DeliveryResult]:
        """Every channel's messages at once; a channel not finished within the budget counts as failed."""
        if not ready:
            return {}
        if len(ready) == 1:
            only = ready[0]
            return {only.channel: self._deliver_all(only.messages, only.channel, deadline_at)}
        pool = ThreadPoolExecutor(max_workers=len(ready), thread_name_prefix="deliver")
        futures: dict[str, Future[DeliveryResult]] = {
            item.channel: pool.submit(self._deliver_all, item.messages, item.channel, deadline_at) for item in ready
        }
        wait_for(list(futures.values()), timeout=max(0.0, deadline_at - self.deliverer.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)  # a straggler is dead-lettered, not waited for
        results: dict[str, DeliveryResult] = {}
        for name, future in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                results[name] = future.result()
            elif future.done() and not future.cancelled():
                error = f"delivery raised {type(future.exception()).__name__}"
                results[name] = DeliveryResult(False, 0, 0.0, error=error)
            else:
                error = f"not delivered within the invocation's time budget of {budget:.0f}s"
                results[name] = DeliveryResult(False, 0, round(budget * 1000, 3), error=error)
        return results

    def _deliver_all(
        self, messages: Sequence[OutboundMessage], name: str, deadline_at: float | None = None
    ) -> DeliveryResult:
        attempts, latency = 0, 0.0
        for message in messages:
            result = self.deliverer.deliver(message, field=f"notifications.channels.{name}", deadline_at=deadline_at)
            attempts += result.attempts
            latency += result.latency_ms
            if not result.ok:
                return DeliveryResult(
                    False, attempts, round(latency, 3), result.status_code, result.error, result.deadline_reached
                )
        return DeliveryResult(True, attempts, round(latency, 3), 200)

    def _fail(
        self,
        event: DeploymentEvent,
        name: str,
        events: list[DeploymentEvent],
        kind: str,
        result: DeliveryResult,
        redeliveries: int = 0,
        claim: Claim | None = None,
    ) -> Notification:
        """Dead-letter a failed delivery; record DEAD_LETTERED, or FAILED if even that failed.

        With the event's dedup ``claim``: done once dead-lettered (the queue holds it),
        released if not (SNS delivers the event again and it must not look like a duplicate).
        """
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
                if claim is not None:
                    return self._settle(event, name, DeliveryStatus.DEAD_LETTERED, "dead_lettered", result, error)
                return self._record(event, name, DeliveryStatus.DEAD_LETTERED, result, error=error)
        if claim is not None:
            # SNS will deliver the event again: it must not look like a duplicate then
            self.noise.forget_delivery(event, name, claim)
            self.noise.forget_cooldown(event, name)
        return self._record(event, name, DeliveryStatus.FAILED, result, error=f"{error}; not dead-lettered")

    # ------------------------------------------------------------------ digests

    def flush_digests(
        self,
        force: bool = False,
        channels: Sequence[str] | None = None,
        resolves: bool = True,
        remaining_ms: Callable[[], int] | None = None,
    ) -> list[Notification]:
        """Send held events as one digest per channel once the oldest waited ``digest.window_seconds``.

        Call it regularly (the Lambda handler does on every invocation, and on a
        schedule); ``force`` sends whatever is held now (end of a demo). Held events are
        released once delivered or dead-lettered; what could be neither stays held for the
        next flush and :class:`DeliveryError` is raised. PagerDuty's deferred resolves
        (:meth:`flush_resolves`) are sent too, unless ``channels`` are named or ``resolves``
        is False (the handler's SNS invocations: the schedule sends them).

        ``remaining_ms`` is the invocation's ``context.get_remaining_time_in_millis``: as in
        :meth:`route`, the deliveries get its time less a reserve (without it:
        ``delivery.deadline_seconds``): the resolves first, within half of it (those not sent by then wait
        for the next flush), then every channel's digest at once (one thread each), each within what is
        left of the budget, so that a channel that hangs holds up no other. A digest
        not sent when the budget (shorter than ``delivery.deadline_seconds``) runs out stays held for the
        next flush, which has its own; one that fails within it is dead-lettered.
        """
        budget = delivery_budget(remaining_ms, self.settings.delivery.deadline_seconds)
        deadline_at = self.deliverer.monotonic() + budget
        names = [n for n in channels if n in self.channels] if channels else list(self.settings.channels)
        recorded: list[Notification] = []
        if channels is None and resolves:  # first, in at most half the budget: a hung PagerDuty starves no digest
            recorded += self._flush_resolves_logged(self.deliverer.monotonic() + budget / 2)
        pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="flush")
        locked: list[str] = []
        try:
            digests: list[_Digest] = []
            one_by_one: list[_Digest] = []
            now = clock.now()
            for name in names:
                held = self.noise.held(name)
                if not held:
                    continue
                oldest = min(h.held_at for h in held)
                if not force and (now - oldest).total_seconds() < self.settings.digest.window_seconds:
                    continue
                if not self.noise.lock_digest(name):
                    continue
                locked.append(name)
                events = [h.event for h in held]
                try:
                    messages = self.channels[name].render_digest(events)
                except (ConfigError, ClientError, BotoCoreError) as exc:
                    failed = DeliveryResult(False, 0, 0.0, error=_short(exc))
                    recorded += self._settle_digest(name, held, self._fail_digest(name, events, failed))
                    continue
                # a channel without digests (PagerDuty, held by an earlier version): one by one, in order
                (digests if messages else one_by_one).append(_Digest(name, held, list(messages)))
            futures = {d.name: pool.submit(self._deliver_all, d.messages, d.name, deadline_at) for d in digests}
            for digest in one_by_one:  # in this thread meanwhile
                sent = self._send_held_one_by_one(digest.name, [h.event for h in digest.held], deadline_at)
                recorded += self._settle_digest(digest.name, digest.held, sent)
            wait_for(list(futures.values()), timeout=max(0.0, deadline_at - self.deliverer.monotonic()))
            for digest in digests:
                result = _finished(futures[digest.name])
                cut = result is None or result.deadline_reached
                if cut and budget < self.settings.delivery.deadline_seconds:
                    logger.warning(
                        "digest not sent within the invocation's time budget: kept held for the next flush",
                        extra={"channel": digest.name, "events": len(digest.held), "budget_seconds": round(budget, 3)},
                    )
                    continue
                if result is None:  # it had the whole delivery deadline: dead-lettered, as in route()
                    error = f"not delivered within the delivery deadline of {budget:.0f}s"
                    result = DeliveryResult(False, 0, round(budget * 1000, 3), error=error, deadline_reached=True)
                events = [h.event for h in digest.held]
                if result.ok:
                    outcomes = [self._record(e, digest.name, DeliveryStatus.DELIVERED, result) for e in events]
                else:
                    outcomes = self._fail_digest(digest.name, events, result)
                recorded += self._settle_digest(digest.name, digest.held, outcomes)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a straggler is kept held, not waited for
            for name in locked:
                self.noise.unlock_digest(name)
        failed_records = [n for n in recorded if n.status is DeliveryStatus.FAILED]
        if failed_records:
            raise DeliveryError(
                f"{len(failed_records)} held events could be neither delivered nor dead-lettered; "
                "kept held for the next flush"
            )
        return recorded

    def _flush_resolves_logged(self, deadline_at: float) -> list[Notification]:
        try:
            return self.flush_resolves(deadline_at)
        except (ClientError, BotoCoreError) as exc:  # the digests still go out; the next flush retries
            logger.error("cannot flush the deferred PagerDuty resolves", extra={"error": _short(exc)})
            return []

    def _settle_digest(self, name: str, held: list[HeldEvent], outcomes: list[Notification]) -> list[Notification]:
        """Release the held events that are safe: ``outcomes[i]`` tells ``held[i]``; events after a failure
        sent one by one are not attempted (kept), as are those that could be neither delivered nor
        dead-lettered."""
        done = [h for h, n in zip(held, outcomes, strict=False) if n.status is not DeliveryStatus.FAILED]
        if done:
            self.noise.release_held(name, done)
        return outcomes

    def _fail_digest(self, name: str, events: list[DeploymentEvent], result: DeliveryResult) -> list[Notification]:
        """The digest dead-lettered in letters that fit SQS's message size (:func:`split_events`), in order;
        every event recorded with its letter's status (FAILED if that one was not dead-lettered: it stays
        held, the others are safe in the queue)."""
        outcomes: list[Notification] = []
        for part in split_events(events):
            first = self._fail(part[0], name, part, "digest", result)
            outcomes += [first] + [self._record(e, name, first.status, result, error=first.error) for e in part[1:]]
        return outcomes

    def _send_held_one_by_one(
        self, name: str, events: list[DeploymentEvent], deadline_at: float | None = None
    ) -> list[Notification]:
        """Held events of a channel that sends no digest, each delivered (or dead-lettered) alone, in the
        order they came; after one that could be neither, the rest wait (a resolve must not overtake
        its trigger), as do those left when ``deadline_at`` is reached."""
        channel = self.channels[name]
        recorded: list[Notification] = []
        for event in events:
            if deadline_at is not None and self.deliverer.monotonic() >= deadline_at:
                break
            try:
                self._cancel_deferred_resolve(event, name)
                messages = channel.render(event)
            except (ConfigError, ClientError, BotoCoreError) as exc:
                result = DeliveryResult(False, 0, 0.0, error=_short(exc))
            else:
                if not messages:
                    error = f"{channel.kind.value} does not act on this event"
                    recorded.append(self._record(event, name, DeliveryStatus.SUPPRESSED, error=error))
                    continue
                result = self._deliver_all(messages, name, deadline_at)
            if result.ok:
                recorded.append(self._record(event, name, DeliveryStatus.DELIVERED, result))
                continue
            recorded.append(self._fail(event, name, [event], "event", result))
            if recorded[-1].status is DeliveryStatus.FAILED:
                break
        return recorded

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
        events, stale = self._not_stale(letter, name)
        if not events:  # every trigger of it was resolved for good after it: sending it would re-open the incident
            return RedeliveryOutcome(True, stale)
        try:
            if letter.kind == "digest":
                messages = channel.render_digest(events)
            else:
                for event in events:
                    self._cancel_deferred_resolve(event, name)
                messages = [m for e in events for m in channel.render(e)]
        except (ConfigError, ClientError, BotoCoreError) as exc:
            result = DeliveryResult(False, 0, 0.0, error=_short(exc))
        else:
            result = self._deliver_all(messages, name) if messages else DeliveryResult(True, 0, 0.0)
        status = DeliveryStatus.DELIVERED if result.ok else DeliveryStatus.DEAD_LETTERED
        error = None if result.ok else f"redelivery {letter.redeliveries + 1}: {result.error}"
        notifications = [self._record(e, name, status, result, error=error) for e in events]
        return RedeliveryOutcome(result.ok, stale + notifications, None if result.ok else result.error)

    def _not_stale(self, letter: DeadLetter, name: str) -> tuple[list[DeploymentEvent], list[Notification]]:
        """A dead letter's events less the PagerDuty triggers whose key was resolved for good after them
        (recorded suppressed and audited, as :meth:`route` does for a late copy), and those records."""
        channel = self.channels[name]
        if letter.kind == "digest" or not isinstance(channel, PagerDutyChannel):
            return list(letter.events), []
        events, stale = [], []
        for event in letter.events:
            reason = self._stale_trigger(event, name, alert_event_key(event)) if channel.triggers(event) else None
            if reason is None:
                events.append(event)
            else:
                stale.append(self._record(event, name, DeliveryStatus.SUPPRESSED, error=reason))
        return events, stale


def _finished(future: Future[DeliveryResult]) -> DeliveryResult | None:
    """The result of a delivery that ended (one that raised: failed); None while it is still running."""
    if not future.done() or future.cancelled():
        return None
    exc = future.exception()
    if exc is not None:
        return DeliveryResult(False, 0, 0.0, error=f"delivery raised {type(exc).__name__}")
    return future.result()


def _in_progress(notification: Notification) -> bool:
    return notification.status is DeliveryStatus.SUPPRESSED and notification.error == IN_PROGRESS


def _short(exc: BaseException) -> str:
    """An error message safe to record: ConfigError texts are built without secrets."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, ClientError):
        return f"AWS {exc.response.get('Error', {}).get('Code', 'error')}"
    return type(exc).__name__
