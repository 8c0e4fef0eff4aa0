"""Storage of incidents and alerts in the DeploymentsTable (keys as in deployguard.storage.keys).

- an incident: ``INCIDENT#<id>`` / ``META``; gsi1 ``LOOP`` (``!I#``, read by the minute tick) while not resolved or
  while announcements of it are pending (:attr:`Incident.announcements`), gsi2
  ``INCIDENTS`` (every incident, newest first by gsi2sk)
- the open incident of a grouping key: ``INCIDENT-KEY#<key>`` / ``INCIDENT-KEY`` (deleted on resolution)
- an alert, in the deployment's history: ``DEP#<deployment>`` / ``ALERT#<alert>`` for an alert of an event or an
  assessment (its id derived from its source: written once, whichever run of the alert engine raises it),
  ``ALERT#<time>#<ns>-<alert>`` for one of the tick's deployment-only rules; listed by time
- the alert count of a rule in a rate-limit window: ``ALERT-RATE#<rule>#<window>`` / ``ALERT-RATE``

An incident is written before its key marker is claimed (conditionally), so two alerts
of one group racing each other open one incident and a key always leads to its incident;
every change is conditional on the incident's ``version_counter``. Its timeline is stored bounded
(:func:`~deployguard.incidents.models.bound_timeline`: the first entries, "N entries omitted", the newest).
Resolved incidents and alerts expire (``expires_at``) after the repository's retention.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel

from deployguard import clock
from deployguard.alerts.models import Alert
from deployguard.exceptions import ConflictError, NotFoundError
from deployguard.incidents.models import Incident, bound_timeline
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository, put_if_unchanged, query_pages

M = TypeVar("M", bound=BaseModel)

INCIDENT = "INCIDENT"
INCIDENT_KEY = "INCIDENT-KEY"
INCIDENTS_ALL = "INCIDENTS"
ALERT_RATE = "ALERT-RATE"


def to_item(model: BaseModel) -> dict[str, Any]:
    """A model as a DynamoDB item: JSON round trip, floats as Decimal (computed fields left out)."""
    data = json.loads(model.model_dump_json(), parse_float=Decimal)
    return {k: v for k, v in data.items() if k in type(model).model_fields}


def from_item(cls: type[M], item: dict[str, Any]) -> M:
    data = {k: v for k, v in item.items() if k in cls.model_fields}
    return cls.model_validate(json.loads(json.dumps(data, default=_plain)))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("ConditionalCheckFailedException", "TransactionCanceledException")


class IncidentRepository:
    def __init__(self, deployments: DeploymentRepository) -> None:
        self.deployments = deployments
        self._cycle: dict[str, list[Incident]] | None = None
        self._cycle_announcing: list[Incident] | None = None

    @property
    def table(self) -> Any:
        return self.deployments.table

    def expires_at(self, at: datetime | None = None) -> int:
        return int(((at or clock.now()) + self.deployments.retention).timestamp())

    # ------------------------------------------------------------------ incidents

    def _item(self, incident: Incident, provisional: bool = False) -> dict[str, Any]:
        item = to_item(incident.model_copy(update={"timeline": bound_timeline(incident.timeline)}))
        opened = f"{keys.time_key(incident.opened_at)}#{incident.incident_id}"
        item.update(
            {
                keys.PK: f"{INCIDENT}#{incident.incident_id}",
                keys.SK: keys.META,
                keys.GSI2_PK: INCIDENTS_ALL,
                keys.GSI2_SK: opened,
                "record_type": "incident",
            }
        )
        if provisional:  # written before its key is claimed; expires if the writer dies in between
            item[keys.TTL_ATTRIBUTE] = int((clock.now() + timedelta(hours=1)).timestamp())
            return item
        if incident.is_open or incident.announcements:  # listed for the minute tick (a resolved one: until announced)
            item[keys.GSI1_PK] = keys.LOOP
            item[keys.GSI1_SK] = keys.loop_always(keys.INCIDENT_OPEN, incident.opened_at, incident.incident_id)
        if not incident.is_open:
            item[keys.TTL_ATTRIBUTE] = self.expires_at(incident.resolved_at)
        return item

    def _marker_key(self, key: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(INCIDENT_KEY, key)
        return {keys.PK: pk, keys.SK: sk}

    def create(self, incident: Incident) -> Incident | None:
        """Store a new open incident and claim its grouping key; None if the key has an open incident.

        The incident is written first (provisionally: not listed as open) and the key claimed
        second, so whoever finds the key always finds its incident; the loser of a race
        deletes its provisional incident and joins the winner's.
        """
        incident.version_counter = 1
        self.table.put_item(Item=self._item(incident, provisional=True), ConditionExpression="attribute_not_exists(pk)")
        marker = {**self._marker_key(incident.key), "incident_id": incident.incident_id, "record_type": "incident_key"}
        try:
            self.table.put_item(Item=marker, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _conditional_failed(exc):
                self.table.delete_item(Key={keys.PK: f"{INCIDENT}#{incident.incident_id}", keys.SK: keys.META})
                return None
            raise
        listed, _ = self.update(incident.incident_id, lambda i: None)  # now listed as open
        return listed

    def open_incident_id(self, key: str) -> str | None:
        resp = self.table.get_item(Key=self._marker_key(key), ConsistentRead=True)
        item = resp.get("Item")
        return str(item["incident_id"]) if item else None

    def release_key(self, key: str, incident_id: str) -> None:
        """Free the grouping key of a resolved incident (only if it still belongs to it)."""
        try:
            self.table.delete_item(
                Key=self._marker_key(key),
                ConditionExpression="incident_id = :id",
                ExpressionAttributeValues={":id": incident_id},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def find(self, incident_id: str) -> Incident | None:
        resp = self.table.get_item(Key={keys.PK: f"{INCIDENT}#{incident_id}", keys.SK: keys.META}, ConsistentRead=True)
        item = resp.get("Item")
        return from_item(Incident, item) if item else None

    def get(self, incident_id: str) -> Incident:
        found = self.find(incident_id)
        if found is None:
            raise NotFoundError(f"incident {incident_id} not found")
        return found

    def save(self, incident: Incident) -> Incident:
        """Write a changed incident, only if nobody wrote it since it was read."""
        expected = incident.version_counter
        new = incident.model_copy(update={"version_counter": expected + 1})
        put_if_unchanged(self.table, self._item(new), expected, f"incident {incident.incident_id}")
        incident.version_counter = expected + 1
        return incident

    def update(
        self, incident_id: str, change: Callable[[Incident], bool | None], attempts: int = 8
    ) -> tuple[Incident, bool]:
        """Read-modify-write with retries; ``change`` returns False to leave the incident as it is.

        Returns the incident and whether it was written.
        """
        last: ConflictError | None = None
        for _ in range(attempts):
            incident = self.get(incident_id)
            if change(incident) is False:
                return incident, False
            try:
                return self.save(incident), True
            except ConflictError as exc:
                last = exc
        assert last is not None
        raise last

    def open_incidents(self) -> list[Incident]:
        """The open incidents: the cycle's one read while a cycle runs (see :meth:`one_read_per_cycle`)."""
        if self._cycle is not None:
            return [incident for incidents in self._cycle.values() for incident in incidents]
        return [incident for incident in self._listed() if incident.is_open]

    def announcing(self) -> list[Incident]:
        """Incidents (open or resolved) with announcements still to write: from the cycle's one read
        while a cycle runs, else read now."""
        if self._cycle_announcing is not None:
            return list(self._cycle_announcing)
        return [incident for incident in self._listed() if incident.announcements]

    def _listed(self) -> list[Incident]:
        """The incidents listed for the minute tick: open, or resolved with announcements pending (one the
        model rejects is left out, noted once: :meth:`DeploymentRepository.readable`)."""
        found = (
            self.deployments.readable(Incident, item)
            for item in self._query(
                IndexName=keys.GSI1,
                KeyConditionExpression="gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
                ExpressionAttributeValues={":pk": keys.LOOP, ":prefix": f"{keys.ALWAYS}{keys.INCIDENT_OPEN}#"},
            )
        )
        return [incident for incident in found if incident is not None]

    def recent(self, limit: int = 50) -> list[Incident]:
        """Incidents newest first, open and resolved (within the retention)."""
        items = self._query(
            IndexName=keys.GSI2,
            KeyConditionExpression="gsi2pk = :pk",
            ExpressionAttributeValues={":pk": INCIDENTS_ALL},
            ScanIndexForward=False,
            Limit=limit,
            max_items=limit,
        )
        return [from_item(Incident, item) for item in items]

    def open_incidents_of(self, deployment_id: str) -> list[Incident]:
        """The deployment's open incidents (those whose deployment that counts, the latest alert's, it is):
        from the cycle's one read while a cycle runs (see :meth:`one_read_per_cycle`), else read now."""
        if self._cycle is not None:
            return list(self._cycle.get(deployment_id, []))
        return [i for i in self.open_incidents() if i.current_deployment_id == deployment_id]

    @contextmanager
    def one_read_per_cycle(self, items: list[dict[str, Any]] | None = None) -> Iterator[dict[str, list[Incident]]]:
        """Read the open incidents once for a whole cycle (one Query, not one per deployment; or
        ``items``, the stored incidents the minute tick's one read found).

        Incidents opened during the cycle are not in it; every change of an incident still
        re-reads it under its optimistic lock, so a stale view never overwrites anything."""
        by_deployment: dict[str, list[Incident]] = {}
        found = [from_item(Incident, item) for item in items] if items is not None else self._listed()
        for incident in found:
            if incident.is_open:
                by_deployment.setdefault(incident.current_deployment_id, []).append(incident)
        self._cycle = by_deployment
        self._cycle_announcing = [incident for incident in found if incident.announcements]
        try:
            yield by_deployment
        finally:
            self._cycle = None
            self._cycle_announcing = None

    def find_by_prefix(self, prefix: str, limit: int = 200) -> Incident:
        """An incident by id or by a unique prefix of its id (for the CLI)."""
        exact = self.find(prefix)
        if exact is not None:
            return exact
        matches = [i for i in self.recent(limit) if i.incident_id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFoundError(f"incident {prefix} not found")
        raise NotFoundError(f"incident {prefix} is ambiguous: " + ", ".join(i.incident_id for i in matches))

    # ------------------------------------------------------------------ alerts

    def add_alert(self, alert: Alert) -> Alert:
        """Store an alert in its deployment's history; returns the alert as stored.

        An alert of an event or an assessment (:attr:`Alert.derived`: its id is the same on every
        evaluation of its source) is keyed on its id alone, ``ALERT#<alert>``, and written once: a retry
        of the alert engine on the same source finds the record its first run wrote, and gets it back
        (its time, the first raise's, is the one its audit entry and event are keyed on). An alert of the
        tick's deployment-only rules is new each time: ``ALERT#<time>#<ns>-<alert>``."""
        item = to_item(alert)
        sk = (
            f"{keys.ALERT}{alert.alert_id}"
            if alert.derived
            else keys.history_sk(keys.ALERT, alert.at, f"{time.time_ns():020d}-{alert.alert_id}")
        )
        item.update(
            {
                keys.PK: keys.deployment_pk(alert.deployment_id),
                keys.SK: sk,
                keys.TTL_ATTRIBUTE: self.expires_at(alert.at),
                "record_type": "alert",
            }
        )
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not (alert.derived and _conditional_failed(exc)):
                raise
            key = {keys.PK: item[keys.PK], keys.SK: sk}
            stored = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
            if stored is not None:
                return from_item(Alert, stored)
            self.table.put_item(Item=item)  # expired meanwhile: stored again
        return alert

    def stored_alert(self, alert: Alert) -> Alert | None:
        """The record of an alert of an event or an assessment (:attr:`Alert.derived`) raised before, or None."""
        if not alert.derived:
            return None
        key = {keys.PK: keys.deployment_pk(alert.deployment_id), keys.SK: f"{keys.ALERT}{alert.alert_id}"}
        item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return from_item(Alert, item) if item is not None else None

    def alerts(self, deployment_id: str) -> list[Alert]:
        """The deployment's alerts in the order they were raised (by time; the keys of those of an event or
        assessment hold no time)."""
        found = [
            from_item(Alert, item)
            for item in self._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": keys.deployment_pk(deployment_id), ":prefix": keys.ALERT},
            )
        ]
        return sorted(found, key=lambda alert: alert.at)

    def take_rate_slot(self, rule: str, limit: int, window_seconds: int, alert_id: str | None = None) -> bool:
        """Count one alert of ``rule`` in the current window; False once ``limit`` is reached.

        With ``alert_id`` (an alert that a retry raises again under the same id) the slot is the alert's:
        its id is kept in the window's counter, and taking the slot again (the outbox's retry of a run that
        failed after taking it) counts nothing and is granted, whatever the window's count."""
        now = clock.now()
        window = int(now.timestamp()) // window_seconds
        pk, sk = keys.singleton_key(ALERT_RATE, f"{rule}#{window}")
        expires = int((now + timedelta(seconds=2 * window_seconds)).timestamp())
        update = "ADD alerts :one SET expires_at = :expires"
        condition = "attribute_not_exists(alerts) OR alerts < :limit"
        values: dict[str, Any] = {":one": 1, ":limit": limit, ":expires": expires}
        if alert_id is not None:
            update = "ADD alerts :one, alert_ids :ids SET expires_at = :expires"
            condition = f"({condition}) AND NOT contains(alert_ids, :id)"
            values.update({":ids": {alert_id}, ":id": alert_id})
        try:
            self.table.update_item(
                Key={keys.PK: pk, keys.SK: sk},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            if alert_id is None:
                return False
            item = self.table.get_item(Key={keys.PK: pk, keys.SK: sk}, ConsistentRead=True).get("Item") or {}
            return alert_id in (item.get("alert_ids") or set())  # counted already: this alert's own slot
        return True

    # ------------------------------------------------------------------ paging

    def _query(self, max_items: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_pages(self.table, max_items, **kwargs)
