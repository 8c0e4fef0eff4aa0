"""PagerDuty's flap guard: an assessment back to healthy resolves only once it stayed healthy.

PagerDuty opens a new incident (a new page) for a trigger that follows a resolve of the same
``dedup_key``. A canary flapping between healthy and degraded would so page every minute: each
healthy assessment resolved the deployment's incident, the next degraded one triggered a new one.
Like Alertmanager's ``resolve_timeout`` or Nagios's flap detection, the resolve of an assessment
back to healthy is deferred: it goes out once the deployment stayed healthy for the channel's
``resolve_after_healthy_seconds``, sent by the router's flush (its one-minute schedule, not the SNS
invocations). An unhealthy assessment meanwhile cancels it, so a flap keeps one PagerDuty incident open,
updated by its repeated triggers; so does any other trigger PagerDuty is sent for the deployment
(:meth:`FlapGuard.triggered`: a failure, an alert, an incident, an escalation page), so that a page
raised after the canary recovered is not closed by the deferred resolve. Triggers are never held; a
terminal recovery (deployment, promotion, canary or rollback completed) resolves at once and drops the
deferred one. A channel switched to resolve at once (0) still cancels what waits, and the next flush
sends the rest, due or not.

State (one item per channel and deployment, in the DeploymentsTable, so it holds across Lambda
containers): ``pk = PD-FLAP#<channel>#<deployment>``, ``sk = PD-FLAP``, with ``unhealthy_at``
(the latest unhealthy assessment's time), and while a resolve waits ``healthy_since``,
``resolve_due`` (epoch seconds), the healthy event (``event_json``) and the index entry
``gsi1pk = PENDING#PD-FLAP``, ``gsi1sk = <due>#<channel>#<deployment>`` by which the flush finds
the due ones without a scan. Times are compared as sortable keys, so copies arriving out of
order (SNS keeps no order) never let an older healthy assessment outlive a newer unhealthy one.

A due resolve is leased to one flush while it is sent (``lease_token``, ``lease_until``), and kept
when it could be neither delivered nor dead-lettered (the next flush sends it). A cancel of a leased
resolve cannot know whether it is on the wire already, so it keeps the lease and only removes
``healthy_since`` (the revoke), and keeps the trigger it is made for in ``retrigger``: the flush reads
the item again right before sending (:meth:`FlapGuard.still_mine`) and does not send a revoked one;
one revoked while it was sent fails :meth:`FlapGuard.finish`, and the flush sends the
:meth:`FlapGuard.replays` again after its resolve, then ends the lease (:meth:`FlapGuard.release`). Whichever
of the resolve and the trigger reached PagerDuty first, the last thing it gets is the trigger; a cancel
that finds no lease is after the flush, and its own trigger after the resolve. The lease, held until
then, keeps a newer deferred resolve from overtaking the triggers sent again; a flush that died holding
it is taken over once it ran out (the next flush sends the triggers again: the dead one may have sent
its resolve). Every write is conditional on the lease's token and due time, so a flush finishing late
never deletes a newer deferred resolve.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.models import DeploymentEvent
from deployguard.storage import keys
from deployguard.storage.repository import query_pages

if TYPE_CHECKING:
    from deployguard.storage.repository import DeploymentRepository

KIND = "PD-FLAP"
ENDED = "PD-END"  # a dedup key's terminal resolve and its event's time (late triggers before it are stale)
PENDING = f"PENDING#{KIND}"
TTL = timedelta(days=7)  # the state outlives any flap; a resolve waits at most a day (the setting's bound)
MAX_WAIT = timedelta(days=1)  # the bound of resolve_after_healthy_seconds
LEASE = timedelta(minutes=5)  # one flush sends a due resolve; one that died is taken over after it
# what a waiting resolve is made of, and the lease of a flush sending it: removed when it is cancelled
# while no flush holds it, or once the flush is done with it (a leased one is revoked: see _revoke)
_WAITING = "healthy_since, resolve_due, event_json, gsi1pk, gsi1sk, lease_until, lease_token"


@dataclass(frozen=True)
class DueResolve:
    channel: str
    deployment_id: str
    resolve_due: int
    event: DeploymentEvent
    token: str = ""
    taken_over: bool = False  # from a flush whose lease ran out: it may have sent the resolve


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
        return self._update(
            channel, event.deployment_id,
            "SET healthy_since = :at, resolve_due = :due, event_json = :event, channel = :channel, "
            "deployment_id = :deployment, gsi1pk = :pending, gsi1sk = :sk, expires_at = :expires",
            "attribute_not_exists(healthy_since) AND (attribute_not_exists(unhealthy_at) OR unhealthy_at < :at)",
            {
                ":at": at, ":due": int(due.timestamp()), ":event": event.model_dump_json(), ":channel": channel,
                ":deployment": event.deployment_id, ":pending": PENDING,
                ":sk": f"{keys.time_key(due)}#{channel}#{event.deployment_id}", ":expires": self._expires(),
            },
        )  # fmt: skip

    def _revoke(
        self, channel: str, event: DeploymentEvent, condition: str, trigger: bool, unhealthy_at: bool = True
    ) -> bool:
        """Cancel the resolve waiting for the deployment if ``condition`` holds (False if it does not).

        Not leased to a flush, the waiting resolve is removed. Leased, it may be on the wire already: the
        lease stays with the cancel (``healthy_since`` removed, so the flush does not send it if it has not
        yet, and cannot take it for its own once sent) and, for an event PagerDuty is sent a ``trigger``
        for, the event is kept in ``retrigger``: the flush sends it again after its resolve (so PagerDuty
        ends triggered whatever reached it first), and the lease holds back any newer deferred resolve
        until then. Whether the item is leased is part of each write's condition: a flush that takes or
        ends its lease between two writes is seen by the next one.
        """
        sets = "SET channel = :channel, deployment_id = :deployment, expires_at = :expires"
        values: dict[str, Any] = {
            ":channel": channel, ":deployment": event.deployment_id, ":expires": self._expires(),
        }  # fmt: skip
        if unhealthy_at:
            sets += ", unhealthy_at = :at"
            values[":at"] = keys.time_key(event.at)
        leased_sets, leased_values = sets, dict(values)
        if trigger:
            leased_sets += ", retrigger = list_append(if_not_exists(retrigger, :none), :trigger)"
            leased_values.update({":none": [], ":trigger": [event.model_dump_json()]})
        free = (f"{sets} REMOVE {_WAITING}, retrigger", f"({condition}) AND attribute_not_exists(lease_token)", values)
        leased = (
            f"{leased_sets} REMOVE healthy_since",
            f"({condition}) AND attribute_exists(lease_token)",
            leased_values,
        )
        for expression, check, names in (free, leased, free):  # the third: a lease that ended meanwhile
            if self._update(channel, event.deployment_id, expression, check, names):
                return True
        return False

    def _update(
        self, channel: str, deployment_id: str, expression: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """One conditional write of the item; False when its condition does not hold."""
        try:
            self.repository.table.update_item(
                Key=self._key(channel, deployment_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if _failed(exc):
                return False
            raise
        return True

    def unhealthy(self, channel: str, event: DeploymentEvent, trigger: bool = False) -> None:
        """An unhealthy assessment (``trigger``: PagerDuty is sent a trigger for it): the resolve waiting
        since an earlier healthy one is cancelled (the flap keeps its PagerDuty incident), also one a flush
        has leased meanwhile (see :meth:`_revoke`); a copy older than what is known changes nothing."""
        self._revoke(
            channel, event, "(attribute_not_exists(unhealthy_at) OR unhealthy_at < :at) AND "
            "(attribute_not_exists(healthy_since) OR healthy_since <= :at)", trigger,
        )  # fmt: skip

    def triggered(self, channel: str, event: DeploymentEvent) -> None:
        """PagerDuty is sent a trigger for the deployment (a failure, an alert, an incident, an escalation
        page): the resolve waiting since a healthy assessment is cancelled whatever the times, as one a
        flush has leased (the page must not be closed by it: :meth:`_revoke`); a healthy copy older than
        the trigger defers nothing afterwards."""
        if self._revoke(channel, event, "attribute_not_exists(unhealthy_at) OR unhealthy_at < :at", True):
            return
        # a later unhealthy time is known: only cancel what waits, or is leased
        self._revoke(
            channel, event, "attribute_exists(healthy_since) OR attribute_exists(lease_token)", True,
            unhealthy_at=False,
        )  # fmt: skip

    def _ended_key(self, channel: str, dedup_key: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(ENDED, f"{channel}#{dedup_key}")
        return {keys.PK: pk, keys.SK: sk}

    def ended(self, channel: str, dedup_key: str, event: DeploymentEvent) -> None:
        """``event`` resolves ``dedup_key`` for good (a terminal recovery: every key of its deployment; an
        alert or incident resolved: its key): its time is kept (the latest), so that a trigger from before
        it, delivered late (SNS keeps no order, Lambda retries), does not open the incident again."""
        at = keys.time_key(event.at.astimezone(UTC))
        try:
            self.repository.table.update_item(
                Key=self._ended_key(channel, dedup_key),
                UpdateExpression="SET ended_at = :at, ended_by = :by, expires_at = :expires",
                ConditionExpression="attribute_not_exists(ended_at) OR ended_at < :at",
                ExpressionAttributeValues={":at": at, ":by": event.event_type.value, ":expires": self._expires()},
            )
        except ClientError as exc:
            if not _failed(exc):
                raise

    def ended_after(self, channel: str, dedup_keys: Sequence[str], event: DeploymentEvent) -> str | None:
        """What ended one of ``dedup_keys`` after ``event`` happened (``"rollback.completed at ..."``), or
        None: a trigger for ``event`` is then stale."""
        at = keys.time_key(event.at.astimezone(UTC))
        for dedup_key in dedup_keys:
            item = self.repository.table.get_item(Key=self._ended_key(channel, dedup_key), ConsistentRead=True).get(
                "Item"
            )
            if item and str(item.get("ended_at", "")) > at:
                return f"{item.get('ended_by', 'a resolve')} at {item['ended_at']}"
        return None

    def forget(self, channel: str, deployment_id: str) -> None:
        """A terminal recovery resolved everything at once: no deferred resolve is left to send."""
        self.repository.table.delete_item(Key=self._key(channel, deployment_id))

    def due(self, now: datetime, at_once: Sequence[str] = (), limit: int = 50) -> list[DueResolve]:
        """Deferred resolves due at ``now``, and every one waiting for a channel of ``at_once`` (one that
        resolves at once now: sent at the next flush, whatever the delay it was deferred with); index
        ``gsi1``, eventually consistent: :meth:`take` checks."""
        query: dict[str, Any] = {
            "IndexName": keys.GSI1,
            "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk <= :until",
            "ExpressionAttributeValues": {":pk": PENDING, ":until": f"{keys.time_key(now)}#~"},
        }
        if at_once:  # every waiting one: a resolve waits at most a day (the setting's bound)
            names = {f":c{i}": name for i, name in enumerate(at_once)}
            query["ExpressionAttributeValues"].update({":until": f"{keys.time_key(now + MAX_WAIT)}#~", **names})
            query["ExpressionAttributeValues"][":now"] = int(now.timestamp())
            query["FilterExpression"] = f"resolve_due <= :now OR channel IN ({', '.join(names)})"
        found = []
        for item in query_pages(self.repository.table, limit, **query):
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
        """Lease a resolve to this flush (None: cancelled meanwhile, or another flush sends it). Taken over
        from a flush whose lease ran out (it died, maybe after sending): ``taken_over``."""
        token = uuid.uuid4().hex
        now = clock.now()
        try:
            old = self.repository.table.update_item(
                Key=self._key(due.channel, due.deployment_id),
                UpdateExpression="SET lease_until = :until, lease_token = :token",
                ConditionExpression="resolve_due = :due AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeValues={
                    ":until": Decimal(int((now + LEASE).timestamp())), ":token": token, ":due": due.resolve_due,
                    ":now": Decimal(int(now.timestamp())),
                },
                ReturnValues="UPDATED_OLD",
            )  # fmt: skip
        except ClientError as exc:
            if _failed(exc):
                return None
            raise
        taken_over = "lease_token" in old.get("Attributes", {})
        return DueResolve(due.channel, due.deployment_id, due.resolve_due, due.event, token, taken_over)

    def _read(self, due: DueResolve) -> dict[str, Any] | None:
        """The item, read consistently, while it holds the flush's lease (None: the lease is lost)."""
        item = self.repository.table.get_item(Key=self._key(due.channel, due.deployment_id), ConsistentRead=True).get(
            "Item"
        )
        return item if item is not None and item.get("lease_token") == due.token else None

    def still_mine(self, due: DueResolve) -> bool:
        """Whether the leased resolve is still to be sent (read consistently right before sending): an
        unhealthy assessment or a trigger meanwhile revoked it."""
        item = self._read(due)
        return (
            item is not None
            and "healthy_since" in item
            and item.get("resolve_due") is not None
            and int(item["resolve_due"]) == due.resolve_due
        )

    def finish(self, due: DueResolve, done: bool) -> bool:
        """The flush is done with its resolve: sent (or the dead-letter queue holds it: ``done``), nothing
        waits any more; not ``done`` (neither delivered nor dead-lettered), the lease is given back and the
        next flush sends it. False when it was revoked since it was taken (a trigger or an unhealthy
        assessment meanwhile): the lease is kept and the flush sends :meth:`replays` and then
        :meth:`release`; a newer deferred resolve is never deleted here."""
        removed = f"{_WAITING}, retrigger" if done else "lease_until, lease_token"
        return self._update(
            due.channel, due.deployment_id, f"REMOVE {removed}",
            "lease_token = :token AND resolve_due = :due AND attribute_exists(healthy_since)",
            {":token": due.token, ":due": due.resolve_due},
        )  # fmt: skip

    def replays(self, due: DueResolve) -> list[DeploymentEvent]:
        """The triggers PagerDuty was sent while the flush held the resolve (read consistently after the
        resolve went out): the flush sends them again, after its resolve. A trigger cancelling later
        finds the lease and is kept too, but goes out itself after the resolve: :meth:`release` drops it."""
        item = self._read(due)
        return [DeploymentEvent.model_validate_json(str(e)) for e in (item or {}).get("retrigger", [])]

    def release(self, due: DueResolve) -> None:
        """End the lease of a revoked resolve (its triggers sent again, or none to send): the revoked
        resolve is deleted unless a newer one waits, which a flush may take from now on."""
        values = {":token": due.token}
        if not self._update(
            due.channel, due.deployment_id, f"REMOVE {_WAITING}, retrigger",
            "lease_token = :token AND attribute_not_exists(healthy_since)", values,
        ):  # fmt: skip
            self._update(
                due.channel, due.deployment_id, "REMOVE lease_until, lease_token, retrigger", "lease_token = :token",
                values,
            )  # fmt: skip

    def drop(self, due: DueResolve) -> None:
        """A due resolve no flush is to send (its channel was removed, or is no longer a PagerDuty channel):
        deleted, so that it does not stay first among the due ones."""
        self._update(
            due.channel, due.deployment_id, f"REMOVE {_WAITING}, retrigger", "resolve_due = :due",
            {":due": due.resolve_due},
        )  # fmt: skip
