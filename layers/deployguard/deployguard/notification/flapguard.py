"""PagerDuty's flap guard: an assessment back to healthy resolves only once it stayed healthy.

PagerDuty opens a new incident (a new page) for a trigger that follows a resolve of the same
``dedup_key``. A canary flapping between healthy and degraded would so page every minute: each
healthy assessment resolved the deployment's incident, the next degraded one triggered a new one.
Like Alertmanager's ``resolve_timeout`` or Nagios's flap detection, the resolve of an assessment
back to healthy is deferred: it goes out once the deployment stayed healthy for the channel's
``resolve_after_healthy_seconds``, sent by the router's flush (every invocation and its
one-minute schedule). An unhealthy assessment meanwhile cancels it, so a flap keeps one PagerDuty
incident open, updated by its repeated triggers; so does any other trigger PagerDuty is sent for the
deployment (:meth:`FlapGuard.triggered`: a failure, an alert, an incident, an escalation page), so that
a page raised after the canary recovered is not closed by the deferred resolve. Triggers are never
held; a terminal recovery (deployment, promotion, canary or rollback completed) resolves at once and
drops the deferred one.

State (one item per channel and deployment, in the DeploymentsTable, so it holds across Lambda
containers): ``pk = PD-FLAP#<channel>#<deployment>``, ``sk = PD-FLAP``, with ``unhealthy_at``
(the latest unhealthy assessment's time), and while a resolve waits ``healthy_since``,
``resolve_due`` (epoch seconds), the healthy event (``event_json``) and the index entry
``gsi1pk = PENDING#PD-FLAP``, ``gsi1sk = <due>#<channel>#<deployment>`` by which the flush finds
the due ones without a scan. Times are compared as sortable keys, so copies arriving out of
order (SNS keeps no order) never let an older healthy assessment outlive a newer unhealthy one.
A due resolve is leased to one flush while it is sent (``lease_token``), and kept when it could be
neither delivered nor dead-lettered (the next flush sends it). A cancel removes the lease with the
resolve: the flush reads the item again right before sending (:meth:`FlapGuard.still_mine`) and does
not send a revoked one, and :meth:`FlapGuard.sent` / :meth:`FlapGuard.give_back` change the item only
while it holds the flush's token and due time, so a flush finishing late never deletes a newer
deferred resolve.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.models import DeploymentEvent
from deployguard.storage import keys
from deployguard.storage.repository import query_pages

if TYPE_CHECKING:
    from deployguard.storage.repository import DeploymentRepository

KIND = "PD-FLAP"
PENDING = f"PENDING#{KIND}"
TTL = timedelta(days=7)  # the state outlives any flap; a resolve waits at most a day (the setting's bound)
LEASE = timedelta(minutes=5)  # one flush sends a due resolve; one that died is taken over after it
# what a waiting resolve is made of, and the lease of a flush sending it: removed when it is cancelled
_WAITING = "healthy_since, resolve_due, event_json, gsi1pk, gsi1sk, lease_until, lease_token"


@dataclass(frozen=True)
class DueResolve:
    channel: str
    deployment_id: str
    resolve_due: int
    event: DeploymentEvent
    token: str = ""


def _failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class FlapGuard:
    def __init__(self, repository: DeploymentRepository) -> None:
        self.repository = repository

    def _key(self, channel: str, deployment_id: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(KIND, f"{channel}#{deployment_id}")
        return {keys.PK: pk, keys.SK: sk}

    def _expires(self) -> int:
        return int((clock.now() + TTL).timestamp())

    def healthy(self, channel: str, event: DeploymentEvent, delay_seconds: int) -> bool:
        """Defer the resolve of ``event`` (an assessment back to healthy) until ``delay_seconds`` after it;
        False when nothing is deferred anew (a resolve already waits since an earlier healthy assessment,
        or a later unhealthy one came first)."""
        at = keys.time_key(event.at)
        due = event.at + timedelta(seconds=delay_seconds)
        try:
            self.repository.table.update_item(
                Key=self._key(channel, event.deployment_id),
                UpdateExpression="SET healthy_since = :at, resolve_due = :due, event_json = :event, "
                "channel = :channel, deployment_id = :deployment, gsi1pk = :pending, gsi1sk = :sk, "
                "expires_at = :expires",
                ConditionExpression="attribute_not_exists(healthy_since) AND "
                "(attribute_not_exists(unhealthy_at) OR unhealthy_at < :at)",
                ExpressionAttributeValues={
                    ":at": at, ":due": int(due.timestamp()), ":event": event.model_dump_json(), ":channel": channel,
                    ":deployment": event.deployment_id, ":pending": PENDING,
                    ":sk": f"{keys.time_key(due)}#{channel}#{event.deployment_id}", ":expires": self._expires(),
                },
            )  # fmt: skip
        except ClientError as exc:
            if _failed(exc):
                return False
            raise
        return True

    def unhealthy(self, channel: str, event: DeploymentEvent) -> None:
        """An unhealthy assessment: the resolve waiting since an earlier healthy one is cancelled (the
        flap keeps its PagerDuty incident), also one a flush has leased meanwhile (its lease is revoked:
        the flush does not send it, or does not take it for its own once sent); a copy older than what
        is known changes nothing."""
        at = keys.time_key(event.at)
        try:
            self.repository.table.update_item(
                Key=self._key(channel, event.deployment_id),
                UpdateExpression=f"SET unhealthy_at = :at, channel = :channel, deployment_id = :deployment, "
                f"expires_at = :expires REMOVE {_WAITING}",
                ConditionExpression="(attribute_not_exists(unhealthy_at) OR unhealthy_at < :at) AND "
                "(attribute_not_exists(healthy_since) OR healthy_since <= :at)",
                ExpressionAttributeValues={
                    ":at": at, ":channel": channel, ":deployment": event.deployment_id, ":expires": self._expires(),
                },
            )  # fmt: skip
        except ClientError as exc:
            if not _failed(exc):
                raise

    def triggered(self, channel: str, event: DeploymentEvent) -> None:
        """PagerDuty is sent a trigger for the deployment (a failure, an alert, an incident, an escalation
        page): the resolve waiting since a healthy assessment is cancelled whatever the times, as one a
        flush has leased (the page must not be closed by it); a healthy copy older than the trigger
        defers nothing afterwards."""
        at = keys.time_key(event.at)
        key = self._key(channel, event.deployment_id)
        try:
            self.repository.table.update_item(
                Key=key,
                UpdateExpression=f"SET unhealthy_at = :at, channel = :channel, deployment_id = :deployment, "
                f"expires_at = :expires REMOVE {_WAITING}",
                ConditionExpression="attribute_not_exists(unhealthy_at) OR unhealthy_at < :at",
                ExpressionAttributeValues={
                    ":at": at, ":channel": channel, ":deployment": event.deployment_id, ":expires": self._expires(),
                },
            )  # fmt: skip
        except ClientError as exc:
            if not _failed(exc):
                raise
        else:
            return
        try:  # a later unhealthy time is known: only cancel what waits
            self.repository.table.update_item(
                Key=key,
                UpdateExpression=f"REMOVE {_WAITING}",
                ConditionExpression="attribute_exists(healthy_since) OR attribute_exists(lease_token)",
            )
        except ClientError as exc:
            if not _failed(exc):
                raise

    def forget(self, channel: str, deployment_id: str) -> None:
        """A terminal recovery resolved everything at once: no deferred resolve is left to send."""
        self.repository.table.delete_item(Key=self._key(channel, deployment_id))

    def due(self, now: datetime, limit: int = 50) -> list[DueResolve]:
        """Deferred resolves due at ``now`` (index ``gsi1``, eventually consistent: :meth:`take` checks)."""
        found = []
        for item in query_pages(
            self.repository.table,
            limit,
            IndexName=keys.GSI1,
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk <= :now",
            ExpressionAttributeValues={":pk": PENDING, ":now": f"{keys.time_key(now)}#~"},
        ):
            found.append(
                DueResolve(
                    channel=str(item["channel"]),
                    deployment_id=str(item["deployment_id"]),
                    resolve_due=int(item["resolve_due"]),
                    event=DeploymentEvent.model_validate_json(str(item["event_json"])),
                )
            )
        return found

    def take(self, due: DueResolve) -> DueResolve | None:
        """Lease a due resolve to this flush (None: cancelled meanwhile, or another flush sends it)."""
        token = uuid.uuid4().hex
        now = clock.now()
        try:
            self.repository.table.update_item(
                Key=self._key(due.channel, due.deployment_id),
                UpdateExpression="SET lease_until = :until, lease_token = :token",
                ConditionExpression="resolve_due = :due AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeValues={
                    ":until": Decimal(int((now + LEASE).timestamp())), ":token": token, ":due": due.resolve_due,
                    ":now": Decimal(int(now.timestamp())),
                },
            )  # fmt: skip
        except ClientError as exc:
            if _failed(exc):
                return None
            raise
        return DueResolve(due.channel, due.deployment_id, due.resolve_due, due.event, token)

    def still_mine(self, due: DueResolve) -> bool:
        """Whether the leased resolve is still to be sent (read consistently right before sending): an
        unhealthy assessment or a trigger meanwhile revoked the lease."""
        item = self.repository.table.get_item(Key=self._key(due.channel, due.deployment_id), ConsistentRead=True).get(
            "Item"
        )
        return (
            item is not None
            and item.get("lease_token") == due.token
            and item.get("resolve_due") is not None
            and int(item["resolve_due"]) == due.resolve_due
        )

    def sent(self, due: DueResolve) -> bool:
        """The resolve went out (or the dead-letter queue holds it): nothing waits any more. False when the
        lease was revoked meanwhile (a trigger cancelled the resolve while it was sent; a newer deferred
        resolve is kept)."""
        try:
            self.repository.table.update_item(
                Key=self._key(due.channel, due.deployment_id),
                UpdateExpression="REMOVE healthy_since, resolve_due, event_json, gsi1pk, gsi1sk, lease_until, "
                "lease_token",
                ConditionExpression="lease_token = :token AND resolve_due = :due",
                ExpressionAttributeValues={":token": due.token, ":due": due.resolve_due},
            )
        except ClientError as exc:
            if not _failed(exc):
                raise
            return False
        return True

    def give_back(self, due: DueResolve) -> None:
        """Neither delivered nor dead-lettered: the next flush sends it (unless cancelled meanwhile)."""
        try:
            self.repository.table.update_item(
                Key=self._key(due.channel, due.deployment_id),
                UpdateExpression="REMOVE lease_until, lease_token",
                ConditionExpression="lease_token = :token AND resolve_due = :due",
                ExpressionAttributeValues={":token": due.token, ":due": due.resolve_due},
            )
        except ClientError as exc:
            if not _failed(exc):
                raise

    def drop(self, due: DueResolve) -> None:
        """A due resolve no flush is to send (its channel was removed, or is no longer a PagerDuty channel
        with a delay): deleted, so that it does not stay first among the due ones."""
        try:
            self.repository.table.update_item(
                Key=self._key(due.channel, due.deployment_id),
                UpdateExpression=f"REMOVE {_WAITING}",
                ConditionExpression="resolve_due = :due",
                ExpressionAttributeValues={":due": due.resolve_due},
            )
        except ClientError as exc:
            if not _failed(exc):
                raise
