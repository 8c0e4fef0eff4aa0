"""Noise control: deduplication, cooldown, per-channel rate limits, digest buffer.

All state lives in the DeploymentsTable so that it holds across Lambda containers:

- dedup: a leased marker per (event id, channel) (:mod:`deployguard.storage.leases`),
  claimed before delivery until the invocation's end and done only once the channel got the
  event or the dead-letter queue holds it (with the delivery's record); SNS delivers at least
  once, and a claim whose lease ran out undone (the invocation died mid-delivery) is taken
  over by the next one;
- cooldown: a marker per (channel, deployment, event type, status/step/alert,
  severity) that lives ``cooldown_seconds``, so a repeated "still waiting" is sent
  once, while an escalation (a higher severity or another status) always passes;
- rate limit: a counter per channel and fixed window (atomic ``ADD``);
- digest buffer: events held by the rate limit, one item each under
  ``pk = NOTIFY-DIGEST#<channel>``, sent later as one message by the router.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.models import DeploymentEvent, EventType, Notification
from deployguard.notification import formatting as fmt
from deployguard.storage import keys
from deployguard.storage.leases import Claim, Leases, Marker

if TYPE_CHECKING:
    from deployguard.notification.settings import NotificationSettings, RateLimit
    from deployguard.storage.repository import DeploymentRepository

DEDUP = "NOTIFY-DEDUP"
COOLDOWN = "NOTIFY-COOLDOWN"
RATE = "NOTIFY-RATE"
DIGEST = "NOTIFY-DIGEST"
DIGEST_LOCK = "NOTIFY-DIGEST-LOCK"
RECORD_ATTRIBUTE = "notification_record"  # on a done dedup marker: the delivery's record (JSON)
_LOCK_TTL = timedelta(seconds=120)
_DIGEST_TTL = timedelta(days=2)


@dataclass(frozen=True)
class HeldEvent:
    sk: str
    held_at: datetime
    event: DeploymentEvent


def cooldown_key(event: DeploymentEvent, channel: str) -> str:
    discriminator = ""
    if event.event_type is EventType.ASSESSMENT_STATUS_CHANGED:
        discriminator = fmt.health_status(event) or ""
    elif event.event_type is EventType.CANARY_STEP_ADVANCED:
        discriminator = str(event.details.get("step_index", event.details.get("canary_weight", "")))
    elif event.event_type is EventType.ALERT:
        # alerts have the alert engine's own cooldown; pages and incident news must all pass
        d = event.details
        parts = (d.get("kind"), d.get("alert_id"), fmt.alert_name(event), d.get("incident_id"), d.get("page"))
        discriminator = ":".join(str(p or "") for p in parts) + f":{d.get('state', '')}"
    return f"{channel}#{event.deployment_id}#{event.event_type.value}#{discriminator}#{event.severity.value}"


class NoiseControl:
    def __init__(self, settings: NotificationSettings, repository: DeploymentRepository) -> None:
        self.settings = settings
        self.repository = repository
        ttl = timedelta(seconds=settings.noise.dedup_ttl_seconds)
        self.deliveries = Leases(lambda: repository.table, DEDUP, ttl)

    # ------------------------------------------------------------------ dedup and cooldown

    def claim_delivery(self, event: DeploymentEvent, channel: str, lease_until: float) -> Claim:
        """Claim the delivery of ``event`` to ``channel`` until ``lease_until`` (epoch seconds).

        Not ``mine``: delivered already (``existing.state == "done"``) or another invocation is
        at it (its lease runs). ``taken_over``: an earlier invocation claimed it and died.
        """
        return self.deliveries.claim(f"{event.event_id}#{channel}", lease_until, reclaim_expired=True)

    def delivered(self, event: DeploymentEvent, channel: str, outcome: str, record: Notification | None = None) -> None:
        """The channel got the event (or the dead-letter queue holds it, or the digest): later copies are
        duplicates. ``record``, the delivery's record, is kept on the marker: a copy that finds the marker
        done writes it if the invocation that settled the delivery failed before it could."""
        extra = {RECORD_ATTRIBUTE: record.model_dump_json()} if record is not None else {}
        self.deliveries.done(f"{event.event_id}#{channel}", outcome=outcome, **extra)

    @staticmethod
    def settled_record(marker: Marker | None) -> Notification | None:
        """The record kept on a done dedup marker by :meth:`delivered` (None: none kept)."""
        stored = marker.attributes.get(RECORD_ATTRIBUTE) if marker is not None else None
        return Notification.model_validate_json(str(stored)) if stored else None

    def forget_delivery(self, event: DeploymentEvent, channel: str, claim: Claim) -> None:
        """Give the claim up so a redelivered SNS message is processed again."""
        self.deliveries.release(f"{event.event_id}#{channel}", claim.token)

    def cooled_down(self, event: DeploymentEvent, channel: str) -> bool:
        seconds = self.settings.cooldown_seconds(event.event_type)
        if seconds <= 0:
            return True
        return self.repository.claim_once(COOLDOWN, cooldown_key(event, channel), timedelta(seconds=seconds))

    def forget_cooldown(self, event: DeploymentEvent, channel: str) -> None:
        self.repository.release(COOLDOWN, cooldown_key(event, channel))

    # ------------------------------------------------------------------ rate limit

    def rate_allows(self, channel: str, limit: RateLimit) -> bool:
        """Count one message in the channel's current window; False once over the limit."""
        now = clock.now()
        window = int(now.timestamp()) // limit.per_seconds * limit.per_seconds
        pk, sk = keys.singleton_key(RATE, f"{channel}#{window}")
        resp = self.repository.table.update_item(
            Key={keys.PK: pk, keys.SK: sk},
            UpdateExpression="ADD #count :one SET #ttl = :expires",
            ExpressionAttributeNames={"#count": "message_count", "#ttl": keys.TTL_ATTRIBUTE},
            ExpressionAttributeValues={":one": 1, ":expires": window + 2 * limit.per_seconds},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["message_count"]) <= limit.max_messages

    # ------------------------------------------------------------------ digest buffer

    @staticmethod
    def _digest_pk(channel: str) -> str:
        return f"{DIGEST}#{channel}"

    def hold(self, channel: str, event: DeploymentEvent) -> None:
        now = clock.now()
        self.repository.table.put_item(
            Item={
                keys.PK: self._digest_pk(channel),
                # simulated time first, then wall-clock nanoseconds: arrival order even within one instant
                keys.SK: f"{keys.time_key(now)}#{time.time_ns():020d}#{event.event_id}",
                "held_at": now.isoformat(),
                "event_json": event.model_dump_json(),
                keys.TTL_ATTRIBUTE: int((now + _DIGEST_TTL).timestamp()),
                "record_type": "notify_digest",
            }
        )

    def held(self, channel: str) -> list[HeldEvent]:
        table = self.repository.table
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": self._digest_pk(channel)},
            "ConsistentRead": True,
        }
        found: list[HeldEvent] = []
        while True:
            resp = table.query(**kwargs)
            for item in resp.get("Items", []):
                found.append(
                    HeldEvent(
                        sk=str(item[keys.SK]),
                        held_at=datetime.fromisoformat(str(item["held_at"])),
                        event=DeploymentEvent.model_validate(json.loads(str(item["event_json"]))),
                    )
                )
            if not resp.get("LastEvaluatedKey"):
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def release_held(self, channel: str, held: list[HeldEvent]) -> None:
        with self.repository.table.batch_writer() as batch:
            for item in held:
                batch.delete_item(Key={keys.PK: self._digest_pk(channel), keys.SK: item.sk})

    def lock_digest(self, channel: str) -> bool:
        return self.repository.claim_once(DIGEST_LOCK, channel, _LOCK_TTL)

    def unlock_digest(self, channel: str) -> None:
        self.repository.release(DIGEST_LOCK, channel)
