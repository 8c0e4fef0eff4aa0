"""Once-only work with a lease: a marker that is claimed, then done.

A marker (``pk = <KIND>#<key>``, ``sk = <KIND>``) is ``claimed`` by one caller until its
``lease_until`` (epoch seconds, on :mod:`deployguard.clock`), may carry the ``result``
the claimer decided, and is ``done`` once the work is confirmed. Who finds it:

- free (absent, or past its TTL ``expires_at``): claims it;
- claimed, lease running: someone is at work, leave it;
- claimed, lease over, no ``result``: the claimer died before deciding; with
  ``reclaim_expired`` the caller takes the claim over (``Claim.taken_over``);
- claimed with a ``result`` but not done: the decision stands, the confirmation is
  missing; the caller may do the same work again (it must be idempotent);
- done: nothing to do.

Each write carries the caller's ``token``, so a write that succeeded but was answered
with an error (a 500, a timeout), and retried into its own condition, is recognised as
the caller's own and not as somebody else's claim. Markers of a kind created with
``pending_index`` sit in index ``gsi1`` under ``gsi1pk = PENDING#<KIND>`` until done,
so a sweep finds the unconfirmed ones without scanning.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.storage import keys
from deployguard.storage.repository import query_pages

State = Literal["claimed", "done"]
CLAIMED: State = "claimed"
DONE: State = "done"


@dataclass(frozen=True)
class Marker:
    """A marker as stored."""

    key: str
    state: State
    token: str
    lease_until: float
    result: str | None
    attributes: dict[str, Any]

    @property
    def lease_over(self) -> bool:
        return clock.now().timestamp() > self.lease_until

    @classmethod
    def of(cls, key: str, item: dict[str, Any]) -> Marker:
        result = item.get("result")
        return cls(
            key=key,
            state=DONE if item.get("state") == DONE else CLAIMED,
            token=str(item.get("token", "")),
            # ``deadline``: the attribute earlier versions of the hook's marker had
            lease_until=float(item.get("lease_until", item.get("deadline", 0)) or 0),
            result=str(result) if result is not None else None,
            attributes=dict(item),
        )


@dataclass(frozen=True)
class Claim:
    """What :meth:`Leases.claim` found: ``mine`` when the caller holds the claim now."""

    mine: bool
    token: str
    taken_over: Marker | None = None  # the expired claim this one replaced
    existing: Marker | None = None  # when not mine: the marker somebody else holds


def _conditional_failed(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) == "ConditionalCheckFailedException"


class Leases:
    """Markers of one ``kind`` in the deployments table."""

    def __init__(self, table: Callable[[], Any], kind: str, ttl: timedelta, *, pending_index: bool = False) -> None:
        self._table = table
        self.kind = kind
        self.ttl = ttl
        self.pending_index = pending_index

    @property
    def table(self) -> Any:
        return self._table()

    def _key(self, key: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(self.kind, key)
        return {keys.PK: pk, keys.SK: sk}

    def get(self, key: str) -> Marker | None:
        item = self.table.get_item(Key=self._key(key), ConsistentRead=True).get("Item")
        return Marker.of(key, dict(item)) if item else None

    def claim(self, key: str, lease_until: float, *, reclaim_expired: bool = False, **attributes: Any) -> Claim:
        """Claim ``key`` until ``lease_until``; with ``reclaim_expired`` also an undecided claim whose lease is over."""
        token = uuid.uuid4().hex
        now = clock.now()
        item: dict[str, Any] = {
            **self._key(key),
            "state": CLAIMED,
            "token": token,
            "lease_until": Decimal(str(round(lease_until, 3))),
            "record_type": f"lease_{self.kind.lower()}",
            keys.TTL_ATTRIBUTE: int((now + self.ttl).timestamp()),
        }
        item.update(json.loads(json.dumps(attributes, default=str), parse_float=Decimal))
        if self.pending_index:
            item[keys.GSI1_PK] = f"PENDING#{self.kind}"
            item[keys.GSI1_SK] = f"{keys.time_key(now)}#{key}"
        condition = "attribute_not_exists(pk) OR expires_at < :now"
        values: dict[str, Any] = {":now": int(now.timestamp())}
        if reclaim_expired:
            condition += " OR (#state = :claimed AND lease_until < :lease_now AND attribute_not_exists(#result))"
            values.update({":claimed": CLAIMED, ":lease_now": Decimal(str(round(now.timestamp(), 3)))})
        names = {"#state": "state", "#result": "result"} if reclaim_expired else None
        try:
            replaced = self.table.put_item(
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",  # the expired claim this one replaced, if any
                **({"ExpressionAttributeNames": names} if names else {}),
            ).get("Attributes")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            existing = self.get(key)
            if existing is not None and existing.token == token:  # our own write, answered with an error
                return Claim(True, token)
            return Claim(False, token, existing=existing)
        previous = Marker.of(key, dict(replaced)) if replaced else None
        return Claim(True, token, taken_over=_expired(previous, now.timestamp()))

    def decide(self, key: str, token: str, result: str) -> bool:
        """Record the claimer's decision; False if the claim is no longer the caller's or already decided."""
        held = "#token = :token" if token else "attribute_not_exists(#token)"  # "": a marker of an earlier version
        try:
            self.table.update_item(
                Key=self._key(key),
                UpdateExpression="SET #result = :result, decided_at = :at",
                ConditionExpression=f"{held} AND attribute_not_exists(#result)",
                ExpressionAttributeNames={"#result": "result", "#token": "token"},
                ExpressionAttributeValues={":result": result, ":at": clock.now().isoformat(),
                                           **({":token": token} if token else {})},
            )  # fmt: skip
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            existing = self.get(key)  # our own write answered with an error reads back as ours
            return existing is not None and existing.token == token and existing.result == result
        return True

    def done(self, key: str, **attributes: Any) -> None:
        """Mark the work confirmed (idempotent); it leaves the pending index."""
        values: dict[str, Any] = {":done": DONE, ":at": clock.now().isoformat()}
        sets = ["#state = :done", "done_at = :at"]
        names = {"#state": "state"}
        for i, (name, value) in enumerate(attributes.items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = json.loads(json.dumps(value, default=str), parse_float=Decimal)
            sets.append(f"#a{i} = :a{i}")
        update = "SET " + ", ".join(sets)
        if self.pending_index:
            update += f" REMOVE {keys.GSI1_PK}, {keys.GSI1_SK}"
        self.table.update_item(
            Key=self._key(key),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def release(self, key: str, token: str) -> None:
        """Give the claim up (the work was not done and must be free for the next caller)."""
        try:
            self.table.delete_item(
                Key=self._key(key),
                ConditionExpression="#token = :token AND #state = :claimed",
                ExpressionAttributeNames={"#token": "token", "#state": "state"},
                ExpressionAttributeValues={":token": token, ":claimed": CLAIMED},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def pending(self, max_items: int = 100) -> Iterator[Marker]:
        """Markers of this kind not yet done, oldest first (index ``gsi1``, eventually consistent)."""
        prefix = len(f"{self.kind}#")
        for item in query_pages(
            self.table,
            max_items,
            IndexName=keys.GSI1,
            KeyConditionExpression=f"{keys.GSI1_PK} = :pk",
            ExpressionAttributeValues={":pk": f"PENDING#{self.kind}"},
        ):
            yield Marker.of(str(item[keys.PK])[prefix:], dict(item))


def _expired(previous: Marker | None, now: float) -> Marker | None:
    """The claim a reclaim replaced: an undecided one whose lease was over (not one past its TTL)."""
    if previous is None or previous.state == DONE or previous.result is not None:
        return None
    expires_at = float(previous.attributes.get(keys.TTL_ATTRIBUTE, 0) or 0)
    return previous if previous.lease_until < now and expires_at >= now else None
