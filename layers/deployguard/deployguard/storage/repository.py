"""DynamoDB storage of deployments, assessments, events, alerts, deliveries and audit.

Writes that change a deployment are conditional on its ``version_counter``
(optimistic locking): when two writers race, one wins and the other gets
:class:`ConflictError` and re-reads, so no update is lost.

Every conditional write carries a request token (``request_token``, new for each
logical write, the same for botocore's retries of it). A write that succeeded but was
answered with an error (a 500 or a timeout after DynamoDB applied it) is retried by
botocore; its condition then also accepts the item it wrote itself, so the retry
succeeds instead of failing "already exists" or "changed since it was read".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from deployguard import clock
from deployguard.aws import clients
from deployguard.exceptions import ConflictError, NotFoundError
from deployguard.models import (
    Assessment,
    AuditEntry,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EndCause,
    Notification,
    Phase,
    TrafficCheck,
    new_id,
)
from deployguard.storage import keys

M = TypeVar("M", bound=BaseModel)

DEFAULT_RETENTION_DAYS = 90
DUE_EARLY = timedelta(seconds=5)  # a tick this early still counts as on time (the assessor's SAME_CYCLE)
UNREADABLE_RECORD = "RECORD-UNREADABLE"  # once per stored item the model rejects: logged and audited once a day
UNREADABLE_RECORD_NOTE_TTL = timedelta(days=1)
OWNERS_LOOKED_AT = 10  # newest_that_took_traffic: the newest deployments read to pass over those that took none
UNREADABLE_ERRORS = (ValueError, TypeError, KeyError)  # pydantic's ValidationError is a ValueError
logger = logging.getLogger(__name__)


def _to_item(model: BaseModel) -> dict[str, Any]:
    """A model as a DynamoDB item: JSON round trip, floats as Decimal, without the fields that are
    ``None`` by default and ``None`` here (an absent attribute reads back as that default): DynamoDB
    bills an item by its names and values in 1 KB write units, and stored ``NULL`` attributes put
    the records and assessments the minute loop writes just over 1 KB (two units each instead of
    one). No condition of this module asks for such an attribute's presence."""
    data = json.loads(model.model_dump_json(), parse_float=Decimal)
    return _without_default_nulls(model, data)


def _without_default_nulls(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (``model`` dumped) less the ``None`` values of fields whose default is ``None``, in
    nested models too; fields without a default, or with another one, keep their ``None``."""
    for name, info in type(model).model_fields.items():
        if name not in data:
            continue
        value = getattr(model, name)
        if value is None:
            if info.default is None and info.default_factory is None:
                del data[name]
        elif isinstance(value, BaseModel) and isinstance(data[name], dict):
            _without_default_nulls(value, data[name])
        elif isinstance(value, list | tuple) and isinstance(data[name], list):
            for each, dumped in zip(value, data[name], strict=False):
                if isinstance(each, BaseModel) and isinstance(dumped, dict):
                    _without_default_nulls(each, dumped)
        elif isinstance(value, dict) and isinstance(data[name], dict):
            for key, each in value.items():
                if isinstance(each, BaseModel) and isinstance(data[name].get(key), dict):
                    _without_default_nulls(each, data[name][key])
    return data


def _written_order(item: dict[str, Any]) -> tuple[str, int]:
    """(time, ns written) of a history item whose key is ``<prefix><time>#<unique>``."""
    at, _, unique = str(item[keys.SK]).rpartition("#")
    head = unique.split("-", 1)[0]
    written = item.get(WRITTEN_NS)
    if written is None:
        written = int(head) if head.isdigit() else 0
    return at, int(written)


def _from_item(cls: type[M], item: dict[str, Any]) -> M:
    data = {k: v for k, v in item.items() if k in cls.model_fields}
    return cls.model_validate(json.loads(json.dumps(data, default=_decimal)))


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


REQUEST_TOKEN = "request_token"


def new_request_token() -> str:
    """A token naming one logical write; botocore's retries of that write send the same one."""
    return uuid.uuid4().hex


def transaction_token(deployment_id: str, expected: int, unique: str) -> str:
    """A deterministic token of one logical write of a deployment (at most 36 characters, as
    ``ClientRequestToken`` allows): the same deployment, version read and ``unique`` id give the same one."""
    digest = hashlib.sha256(f"{deployment_id}\x00{expected}\x00{unique}".encode()).hexdigest()
    return digest[:36]


def put_if_unchanged(table: Any, item: dict[str, Any], expected: int, what: str) -> None:
    """Write ``item`` only if the stored one still has ``version_counter == expected`` (optimistic lock),
    or is this very write already applied (same request token: a retry after an ambiguous answer)."""
    token = item.setdefault(REQUEST_TOKEN, new_request_token())
    try:
        table.put_item(
            Item=item,
            ConditionExpression="version_counter = :expected OR request_token = :token",
            ExpressionAttributeValues={":expected": expected, ":token": token},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise ConflictError(f"{what} changed since it was read (version {expected})") from exc
        raise


def query_pages(table: Any, max_items: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query returns, page after page (at most ``max_items``)."""
    count = 0
    while True:
        resp = table.query(**kwargs)
        for item in resp.get("Items", []):
            yield item
            count += 1
            if max_items is not None and count >= max_items:
                return
        start = resp.get("LastEvaluatedKey")
        if not start:
            return
        kwargs["ExclusiveStartKey"] = start


ALERTS_DUE = "alerts_due"  # on an outbox item: the alert engine has not seen the event yet


@dataclass(frozen=True)
class OutboxEntry:
    """An event as the outbox holds it (see :mod:`deployguard.storage.outbox`): whether it went out on
    the topic, whether the alert engine has still to see it, and whether this call recorded it."""

    event: DeploymentEvent
    published: bool = False
    alerts_due: bool = False
    new: bool = False
    recorded_at: datetime | None = None  # when it was stored (None: stored before this was noted)
    given_up: bool = False  # SNS refused it for good: never published (``published`` is true, the topic is done)


RECORDED_AT = "recorded_at"  # on an outbox item: when it was stored (the clock's now, not the event's time)
WRITTEN_NS = "written_ns"  # on an audit entry written once under a fixed key: time.time_ns() of its writing


def _recorded_at(item: dict[str, Any]) -> datetime | None:
    value = item.get(RECORDED_AT)
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


PUBLISH_GIVEN_UP_AT = "publish_given_up_at"  # on an event: SNS refused it for good, the outbox gave it up


def _outbox_entry(item: dict[str, Any]) -> OutboxEntry:
    given_up = PUBLISH_GIVEN_UP_AT in item
    return OutboxEntry(_from_item(DeploymentEvent, item), "published_at" in item or given_up,
                       bool(item.get(ALERTS_DUE)), recorded_at=_recorded_at(item), given_up=given_up)  # fmt: skip


@dataclass
class LoopWork:
    """What one Query of the LOOP partition found for the minute tick (see :meth:`DeploymentRepository.loop_work`)."""

    active: list[Deployment] = field(default_factory=list)
    monitored: list[Deployment] = field(default_factory=list)  # due
    ended: list[Deployment] = field(default_factory=list)  # stored before the traffic checks' own partition
    outbox: list[OutboxEntry] = field(default_factory=list)
    incident_items: list[dict[str, Any]] = field(default_factory=list)
    approval_items: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # keys of items the models reject: skipped (RecordsUnreadable)


def record_key(item: dict[str, Any]) -> str:
    """A stored item's key as text (``<pk>|<sk>``), naming it in logs, reports and its once-only note."""
    return f"{item.get(keys.PK)}|{item.get(keys.SK)}"


class DeploymentRepository:
    """Data access for the DeploymentsTable (see :mod:`deployguard.storage.keys`)."""

    def __init__(self, table_name: str | None = None, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.table_name = table_name or os.environ["DEPLOYMENTS_TABLE"]
        self.retention = timedelta(days=retention_days)

    @property
    def table(self) -> Any:
        return clients.table(self.table_name)

    def _expires_at(self, at: datetime | None = None) -> int:
        return int(((at or clock.now()) + self.retention).timestamp())

    # ------------------------------------------------------------------ deployments

    def _deployment_item(self, deployment: Deployment) -> dict[str, Any]:
        item = _to_item(deployment)
        if deployment.control.approval_token:  # never serialised (models.CanaryControl): the record alone keeps it
            item["control"]["approval_token"] = deployment.control.approval_token
        if deployment.control.unreported:  # never serialised either: a verb's audit and announcement still due
            item["control"]["unreported"] = [json.loads(r.model_dump_json()) for r in deployment.control.unreported]
        started = keys.time_key(deployment.started_at)
        item.update(
            {
                keys.PK: keys.deployment_pk(deployment.deployment_id),
                keys.SK: keys.META,
                keys.GSI2_PK: keys.service_env_pk(deployment.service, deployment.environment),
                keys.GSI2_SK: f"{started}#{deployment.deployment_id}",
                "record_type": "deployment",
            }
        )
        if not deployment.status.is_terminal:
            item[keys.GSI1_PK] = keys.LOOP
            item[keys.GSI1_SK] = keys.loop_always(keys.ACTIVE, deployment.started_at, deployment.deployment_id)
        elif deployment.phase == Phase.MONITORING:  # read by the loop when its next assessment is due
            cursor = deployment.last_assessment
            due = (
                cursor.next_at - DUE_EARLY if cursor is not None and cursor.kind == "post_deployment"
                else deployment.ended_at or deployment.started_at
            )  # fmt: skip
            item[keys.GSI1_PK] = keys.LOOP
            item[keys.GSI1_SK] = keys.loop_due(keys.MONITORING, due, deployment.deployment_id)
        elif (
            deployment.ended_at is not None
            and deployment.status != DeploymentStatus.SUCCEEDED
            and deployment.traffic_check.reconciled_at is None
        ):
            # rolled back, failed, held: the reconciler checks that its traffic agrees, when next due
            due = deployment.traffic_check.next_at or deployment.ended_at
            item[keys.GSI1_PK] = keys.TRAFFIC
            item[keys.GSI1_SK] = keys.loop_due(keys.ENDED, due, deployment.deployment_id)
        return item

    def create_deployment(self, deployment: Deployment) -> Deployment:
        """Store a new deployment; fails with ConflictError if the id exists.

        Its service/environment pair goes in the catalog first (idempotent: each pair once), so no stored
        record is ever missing from the lists: a catalog write that fails fails the whole call before the
        record exists, and the retry (which would find the record and not create it again) writes both."""
        deployment.version_counter = 1
        self.table.put_item(
            Item={
                keys.PK: keys.CATALOG,
                keys.SK: keys.service_env_pk(deployment.service, deployment.environment),
                "service": deployment.service,
                "environment": deployment.environment,
            }
        )
        if not self._put_new(self._deployment_item(deployment)):
            raise ConflictError(f"deployment {deployment.deployment_id} already exists")
        return deployment

    def save_deployment(self, deployment: Deployment) -> Deployment:
        """Write a changed deployment, only if nobody wrote it since it was read."""
        expected = deployment.version_counter
        new = deployment.model_copy(update={"version_counter": expected + 1})
        put_if_unchanged(self.table, self._deployment_item(new), expected, f"deployment {deployment.deployment_id}")
        deployment.version_counter = expected + 1
        return deployment

    def save_with_assessment(
        self, deployment: Deployment, assessment: Assessment, events: Sequence[DeploymentEvent] = ()
    ) -> Deployment:
        """Store an assessment and the changed deployment record in one transaction (TransactWriteItems),
        the record only if nobody wrote it since it was read: ConflictError otherwise, and none is written.
        ``events`` (what the assessment announces) go into the outbox in the same transaction, so an
        assessment is never stored without its events (:mod:`deployguard.storage.outbox` publishes them).

        The transaction is idempotent: its ``ClientRequestToken`` and the ``request_token`` on both
        items are derived from the deployment, the version read and the assessment, so a retry after
        an ambiguous answer (applied, then answered 500 or timed out) recognises its own earlier
        write: DynamoDB by the token (within ten minutes), the conditions by the items' token.
        """
        history = self._history_item(
            assessment.deployment_id, keys.ASSESSMENT, assessment.at, assessment.assessment_id, assessment
        )
        return self._transact_with_record(deployment, [history], events, assessment.assessment_id)

    def end_with_audit_and_events(
        self, deployment: Deployment, audit: AuditEntry, events: Sequence[DeploymentEvent], unique: str
    ) -> Deployment:
        """Store a deployment's changed record (e.g. ended), its audit entry and the events that announce it
        (the outbox) in one transaction, the record only if nobody wrote it since it was read: ConflictError
        otherwise, and none is written. So a change is never recorded without its announcement, nor
        announced twice by two racing writers: each write has a request token of its own (botocore's retries
        of it send the same), so the loser's conditions fail even when both read the same version.
        ``unique`` keys the audit entry (written once under it)."""
        item = self._history_item(audit.deployment_id, keys.AUDIT, audit.at, f"once-{unique}", audit)
        item[WRITTEN_NS] = time.time_ns()
        return self._transact_with_record(deployment, [item], events, new_request_token())

    def _transact_with_record(
        self,
        deployment: Deployment,
        history: Sequence[dict[str, Any]],
        events: Sequence[DeploymentEvent],
        unique: str,
    ) -> Deployment:
        """``history`` items and ``events`` (new items) with the changed record, in one TransactWriteItems,
        the record conditional on its ``version_counter``; idempotent by a token derived from the
        deployment, the version read and ``unique``."""
        expected = deployment.version_counter
        new = deployment.model_copy(update={"version_counter": expected + 1})
        serialize = TypeSerializer().serialize
        token = transaction_token(deployment.deployment_id, expected, unique)
        added = [*history, *(self._outbox_item(event, alerts=False) for event in events)]
        for item in added:
            item[REQUEST_TOKEN] = token
        record = self._deployment_item(new)
        record[REQUEST_TOKEN] = token

        def marshalled(item: dict[str, Any]) -> dict[str, Any]:
            return {k: serialize(v) for k, v in item.items()}

        def new_item(item: dict[str, Any]) -> dict[str, Any]:
            return {
                "Put": {
                    "TableName": self.table_name,
                    "Item": marshalled(item),
                    "ConditionExpression": "attribute_not_exists(pk) OR request_token = :token",
                    "ExpressionAttributeValues": {":token": serialize(token)},
                }
            }

        try:
            clients.client("dynamodb").transact_write_items(
                ClientRequestToken=token,
                TransactItems=[
                    *(new_item(item) for item in added),
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": marshalled(record),
                            "ConditionExpression": "version_counter = :expected OR request_token = :token",
                            "ExpressionAttributeValues": {":expected": serialize(expected), ":token": serialize(token)},
                        }
                    },
                ],
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                raise ConflictError(
                    f"deployment {deployment.deployment_id} changed since it was read (version {expected})"
                ) from exc
            raise
        deployment.version_counter = expected + 1
        return deployment

    def deployments_by_id(self, deployment_ids: list[str], unreadable: list[str] | None = None) -> list[Deployment]:
        """Many deployments in BatchGetItem calls (100 keys a call, unprocessed keys asked again); a record
        the model rejects is left out (:meth:`readable`: noted once, its key added to ``unreadable``)."""
        found: list[Deployment] = []
        dynamodb = clients.resource("dynamodb")
        for offset in range(0, len(deployment_ids), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [
                        {keys.PK: keys.deployment_pk(i), keys.SK: keys.META}
                        for i in deployment_ids[offset : offset + 100]
                    ],
                    "ConsistentRead": True,
                }
            }
            while request:
                resp = dynamodb.batch_get_item(RequestItems=request)
                items = resp.get("Responses", {}).get(self.table_name, [])
                found.extend(d for d in (self.readable(Deployment, item, unreadable) for item in items) if d)
                request = resp.get("UnprocessedKeys") or {}
        order = {d: i for i, d in enumerate(deployment_ids)}
        return sorted(found, key=lambda d: order[d.deployment_id])

    def update_deployment(
        self, deployment_id: str, change: Callable[[Deployment], None], attempts: int = 5
    ) -> Deployment:
        """Read-modify-write with retries on conflict: the safe way to change a deployment."""
        last: ConflictError | None = None
        for _ in range(attempts):
            deployment = self.get_deployment(deployment_id)
            change(deployment)
            try:
                return self.save_deployment(deployment)
            except ConflictError as exc:
                last = exc
        assert last is not None
        raise last

    def get_deployment(self, deployment_id: str) -> Deployment:
        found = self.find_deployment(deployment_id)
        if found is None:
            raise NotFoundError(f"deployment {deployment_id} not found")
        return found

    def find_deployment(self, deployment_id: str) -> Deployment | None:
        resp = self.table.get_item(
            Key={keys.PK: keys.deployment_pk(deployment_id), keys.SK: keys.META}, ConsistentRead=True
        )
        item = resp.get("Item")
        return _from_item(Deployment, item) if item else None

    def active_deployments(self) -> list[Deployment]:
        found = (self.readable(Deployment, item) for item in self._loop_query(f"{keys.ALWAYS}{keys.ACTIVE}#"))
        return [deployment for deployment in found if deployment is not None]  # one unreadable: skipped, noted

    def monitored_deployments(self) -> list[Deployment]:
        """Promoted deployments still in post-deployment monitoring (24 hours), due or not."""
        items = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk > :always",
            ExpressionAttributeValues={":pk": keys.LOOP, ":always": f"{keys.ALWAYS}~"},
        )
        found = (self.readable(Deployment, i) for i in items if keys.loop_kind(i[keys.GSI1_SK]) == keys.MONITORING)
        return [deployment for deployment in found if deployment is not None]

    def traffic_checks_due(
        self, now: datetime, limit: int | None = None, unreadable: list[str] | None = None
    ) -> list[Deployment]:
        """Deployments that ended without promotion (rolled back, failed, held) whose next traffic
        check is due at ``now``, the longest due first, at most ``limit`` (the reconciler's, bounded:
        see :class:`~deployguard.models.TrafficCheck`), from their own partition of ``gsi1``."""
        return [deployment for deployment, promoted in self.traffic_work(now, limit, unreadable) if not promoted]

    def traffic_work(
        self, now: datetime, limit: int | None = None, unreadable: list[str] | None = None
    ) -> list[tuple[Deployment, bool]]:
        """Every traffic check due at ``now`` in the ``TRAFFIC`` partition, the longest due first, at most
        ``limit``: ``(deployment, False)`` for one that ended without promotion (its record), ``(deployment,
        True)`` for a promotion's check (:meth:`schedule_promotion_check`: the record as it is now, its
        ``traffic_check`` the promotion check's). An item the model rejects is left out, the others are
        checked (:meth:`readable`: noted once, its key added to ``unreadable``)."""
        items = list(
            self._query(
                limit,
                IndexName=keys.GSI1,
                KeyConditionExpression="gsi1pk = :pk AND gsi1sk <= :now",
                ExpressionAttributeValues={":pk": keys.TRAFFIC, ":now": f"{keys.time_key(now)}#~"},
                **({"Limit": limit} if limit is not None else {}),
            )
        )
        checks = {str(i["deployment_id"]): i for i in items if i.get(keys.SK) == keys.PROMOTION_CHECK}
        skipped: list[str] = []
        records = {d.deployment_id: d for d in self.deployments_by_id(list(checks), skipped)} if checks else {}
        if unreadable is not None:
            unreadable += skipped
        unread_records = {name.split("|")[0] for name in skipped}  # records there, and unreadable
        work: list[tuple[Deployment, bool]] = []
        for item in items:
            if item.get(keys.SK) != keys.PROMOTION_CHECK:
                deployment = self.readable(Deployment, item, unreadable)
                if deployment is not None:
                    work.append((deployment, False))
                continue
            deployment_id = str(item["deployment_id"])
            record = records.get(deployment_id)
            check = self.readable(TrafficCheck, item, unreadable)
            if check is None or keys.deployment_pk(deployment_id) in unread_records:
                continue  # left as it is (noted): the others are checked
            if record is None:  # its record is gone (retention): nothing to check
                self.end_promotion_check(deployment_id)
                continue
            work.append((record.model_copy(update={"traffic_check": check}), True))
        return work

    def schedule_promotion_check(self, deployment_id: str, due: datetime, checks: int = 0, failures: int = 0) -> None:
        """A promoted deployment's next traffic check (the reconciler's, :meth:`traffic_work`): an item next to
        its record, in the ``TRAFFIC`` partition of ``gsi1`` by when it is due; the record itself is not
        written (post-deployment monitoring keeps it)."""
        self.table.put_item(
            Item={
                keys.PK: keys.deployment_pk(deployment_id),
                keys.SK: keys.PROMOTION_CHECK,
                keys.GSI1_PK: keys.TRAFFIC,
                keys.GSI1_SK: keys.loop_due(keys.PROMOTED, due, deployment_id),
                keys.TTL_ATTRIBUTE: self._expires_at(due),
                "record_type": "promotion_check",
                "deployment_id": deployment_id,
                "next_at": due.isoformat(),
                "checks": checks,
                "failures": failures,
            }
        )

    def end_promotion_check(self, deployment_id: str) -> None:
        """A promoted deployment's traffic checks are over: its check item goes (and leaves the index)."""
        self.table.delete_item(Key={keys.PK: keys.deployment_pk(deployment_id), keys.SK: keys.PROMOTION_CHECK})

    def loop_work(self, now: datetime, readers: Mapping[str, type[Any]] | None = None) -> LoopWork:
        """Everything the minute tick works on, in one Query (paged): active deployments, monitored
        ones whose assessment is due, unpublished events, and the open incidents and approvals (as
        stored items: their stores read them); ``ended``: only deployments stored before the traffic
        checks had a partition of their own (:meth:`traffic_checks_due`). ``readers``: the model each kind of
        open incident or approval item is read with (``keys.INCIDENT_OPEN``, ``keys.APPROVAL_OPEN``), given
        by the caller (storage knows no incident or approval model), so that one such item the model rejects
        is left out and counted here too."""
        work = LoopWork()
        readers = readers or {}
        items = self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk <= :now",
            ExpressionAttributeValues={":pk": keys.LOOP, ":now": f"{keys.time_key(now)}#~"},
        )
        for item in items:  # each item read on its own: one the models reject is skipped (noted once), not the loop
            kind = keys.loop_kind(item[keys.GSI1_SK])
            if kind in (keys.ACTIVE, keys.MONITORING, keys.ENDED):
                deployment = self.readable(Deployment, item, work.unreadable)
                if deployment is not None:
                    {keys.ACTIVE: work.active, keys.MONITORING: work.monitored, keys.ENDED: work.ended}[kind].append(
                        deployment
                    )
            elif kind == keys.OUTBOX:
                if self.readable(DeploymentEvent, item, work.unreadable) is not None:
                    work.outbox.append(_outbox_entry(item))
            elif kind in (keys.INCIDENT_OPEN, keys.APPROVAL_OPEN):  # the alert engine's stores read them
                model = readers.get(kind)
                if model is None or self.readable(model, item, work.unreadable) is not None:
                    (work.incident_items if kind == keys.INCIDENT_OPEN else work.approval_items).append(item)
        return work

    def readable(self, cls: type[M], item: dict[str, Any], unreadable: list[str] | None = None) -> M | None:
        """The stored ``item`` as a ``cls``, or None when the model rejects it (a status, phase or event
        type written by a newer release, a hand edit): its key added to ``unreadable`` and noted once
        (:meth:`note_unreadable_record`), so that one such item costs the loops reading it only itself."""
        try:
            return _from_item(cls, item)
        except UNREADABLE_ERRORS as exc:
            name = record_key(item)
            if unreadable is not None:
                unreadable.append(name)
            self.note_unreadable_record(name, cls.__name__, item, exc)
            return None

    def note_unreadable_record(self, name: str, model: str, item: dict[str, Any], exc: Exception) -> None:
        """A stored item the model rejects, skipped by the loops that read it: logged with its key and
        audited (in its deployment's trail, when it names one) once a day while it stays, not every
        minute (the loops count it every time: RecordsUnreadable). Never raises."""
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        deployment_id = item.get("deployment_id")
        try:
            if not self.claim_once(UNREADABLE_RECORD, name, UNREADABLE_RECORD_NOTE_TTL, model=model, reason=reason):
                return
        except Exception:
            logger.exception("cannot note an unreadable record", extra={"record": name})
        extra = {"record": name, "model": model, "deployment_id": deployment_id, "reason": reason}
        logger.error("a stored record cannot be read: skipped", extra=extra)
        if not isinstance(deployment_id, str) or not deployment_id:
            return
        try:
            message = f"a stored {model} cannot be read and is skipped: {reason}"
            self.audit(deployment_id, "record_unreadable", "deployguard:storage", message, record=name, model=model)
        except Exception:
            logger.exception("cannot audit an unreadable record", extra={"record": name})

    def _loop_query(self, prefix: str) -> Iterator[dict[str, Any]]:
        return self._query(
            IndexName=keys.GSI1,
            KeyConditionExpression="gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            ExpressionAttributeValues={":pk": keys.LOOP, ":prefix": prefix},
        )

    def deployments_of(self, service: str, environment: str, limit: int = 50) -> list[Deployment]:
        items = self._query(
            IndexName=keys.GSI2,
            KeyConditionExpression="gsi2pk = :pk",
            ExpressionAttributeValues={":pk": keys.service_env_pk(service, environment)},
            ScanIndexForward=False,
            Limit=limit,
            max_items=limit,
        )
        return [_from_item(Deployment, item) for item in items]

    def keep_stop_reason(self, deployment_id: str, reason: str, cause: EndCause | None = None) -> None:
        """Why DeployGuard (a remediation, a person's abort) stopped a CodeDeploy deployment, kept on its
        record (unless it ended, or a hook's verdict already said why), so that the recorder puts CodeDeploy's
        STOP after it instead of replacing it; a remediation's ``cause`` (the same in parts) with it. Best
        effort: the stop is done, and a record that cannot say why never turns it into a failure (logged)."""

        def change(d: Deployment) -> None:
            if not d.status.is_terminal and not d.decision_reason:
                d.decision_reason, d.end_cause = reason[:500], cause

        try:
            if self.find_deployment(deployment_id) is not None:
                self.update_deployment(deployment_id, change)
        except Exception:
            logging.getLogger(__name__).exception(
                "cannot keep why the deployment was stopped", extra={"deployment_id": deployment_id}
            )

    def superseding(self, deployment: Deployment) -> Deployment | None:
        """The newest deployment of ``deployment``'s service and environment if it started after ``deployment``
        ended (after it started, while it has not ended; None when nothing started since): its alias or task
        sets are that later deployment's now, never to be put back under it. One that ended before any of its
        traffic moved is passed over (:meth:`newest_that_took_traffic`): a canary retried after it is still
        its service's live one."""
        since = deployment.ended_at or deployment.started_at
        newest = self.newest_that_took_traffic(deployment.service, deployment.environment)
        if newest is not None and newest.deployment_id != deployment.deployment_id and newest.started_at > since:
            return newest
        return None

    def newest_that_took_traffic(self, service: str, environment: str) -> Deployment | None:
        """The newest deployment of the service and environment, passing over those that ended before any of their
        traffic moved (``Deployment.never_took_traffic``: rejected at Validate, failed their pre-traffic checks):
        such a one never owned the alias or task sets. One record read while the newest took traffic (or may
        still); a few more only after such a deployment (within :data:`OWNERS_LOOKED_AT`, else the last read)."""
        newest = self.deployments_of(service, environment, limit=1)
        if not newest or not newest[0].never_took_traffic:
            return newest[0] if newest else None
        recent = self.deployments_of(service, environment, limit=OWNERS_LOOKED_AT)
        return next((d for d in recent if not d.never_took_traffic), recent[-1])

    def service_environments(self) -> list[tuple[str, str]]:
        """Every (service, environment) pair that has had a deployment (the catalog)."""
        items = self._query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": keys.CATALOG})
        return [(str(i["service"]), str(i["environment"])) for i in items]

    def deployments_page(
        self,
        service: str,
        environment: str,
        *,
        before: str | None = None,
        since: datetime | None = None,
        statuses: list[str] | None = None,
        limit: int = 50,
        examine: int | None = None,
    ) -> tuple[list[tuple[str, Deployment]], str | None]:
        """Deployments of one service/environment, newest first, with their sort keys (for paging), and where
        the search stopped short: None, or the sort key of the last item examined when ``examine`` items were
        read without finding ``limit`` (every item from the newest down to that key was examined).

        ``before`` is a sort key returned earlier (keyset paging); ``since`` keeps deployments that
        started at or after it; ``statuses`` keeps those in one of the statuses (a filter: DynamoDB reads the
        items it drops, so ``examine`` bounds what one call reads however long the history).
        """
        condition = "gsi2pk = :pk"
        values: dict[str, Any] = {":pk": keys.service_env_pk(service, environment)}
        low = keys.time_key(since) if since else None
        if before and low:
            condition += " AND gsi2sk BETWEEN :low AND :before"
            values.update({":low": low, ":before": before})
        elif before:
            condition += " AND gsi2sk < :before"
            values[":before"] = before
        elif low:
            condition += " AND gsi2sk >= :low"
            values[":low"] = low
        kwargs: dict[str, Any] = {
            "IndexName": keys.GSI2,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if statuses:
            names = [f":st{i}" for i in range(len(statuses))]
            kwargs["FilterExpression"] = f"#status IN ({', '.join(names)})"
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            values.update(dict(zip(names, statuses, strict=True)))
        extra = 1 if before and low else 0  # BETWEEN may return the ``before`` item itself
        wanted = limit + extra
        budget = max(examine if examine is not None else wanted, wanted)
        found: list[tuple[str, Deployment]] = []
        examined, page_size = 0, wanted
        while True:
            # a filter's Limit counts the items examined: a page's worth first (a common status fills it at
            # once), then twice as many each call, up to the budget (a rare one: a few calls, not one per page)
            resp = self.table.query(**kwargs, Limit=min(page_size, budget - examined) if statuses else wanted)
            page_size *= 2
            examined += int(resp.get("ScannedCount", len(resp.get("Items", []))))
            for item in resp.get("Items", []):
                if before and item[keys.GSI2_SK] >= before:  # BETWEEN includes its upper bound
                    continue
                found.append((str(item[keys.GSI2_SK]), _from_item(Deployment, item)))
            start = resp.get("LastEvaluatedKey")
            if len(found) >= limit or not start:
                return found[:limit], None
            if examined >= budget:
                return found, str(start[keys.GSI2_SK])
            kwargs["ExclusiveStartKey"] = start

    # ------------------------------------------------------------------ history

    def _history_item(
        self, deployment_id: str, prefix: str, at: datetime, unique: str, model: BaseModel
    ) -> dict[str, Any]:
        item = _to_item(model)
        item.update(
            {
                keys.PK: keys.deployment_pk(deployment_id),
                keys.SK: keys.history_sk(prefix, at, unique),
                keys.TTL_ATTRIBUTE: self._expires_at(at),
                "record_type": prefix.rstrip("#").lower(),
                REQUEST_TOKEN: new_request_token(),
            }
        )
        return item

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Write an item that must not exist yet (or is this very write, retried after an ambiguous
        answer: same request token); False if another write made it first."""
        item.setdefault(REQUEST_TOKEN, new_request_token())
        try:
            self.table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR request_token = :token",
                ExpressionAttributeValues={":token": item[REQUEST_TOKEN]},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _put_history(self, deployment_id: str, prefix: str, at: datetime, unique: str, model: BaseModel) -> None:
        if not self._put_new(self._history_item(deployment_id, prefix, at, unique, model)):
            raise ConflictError(f"{prefix}{unique} of deployment {deployment_id} already exists")

    def add_assessment(self, assessment: Assessment) -> None:
        self._put_history(
            assessment.deployment_id, keys.ASSESSMENT, assessment.at, assessment.assessment_id, assessment
        )

    def add_audit(self, entry: AuditEntry) -> None:
        # the suffix keeps entries written in the same instant in the order they were written
        self._put_history(entry.deployment_id, keys.AUDIT, entry.at, f"{time.time_ns():020d}-{new_id('au')}", entry)

    def audit(self, deployment_id: str, action: str, actor: str, reason: str = "", **details: Any) -> AuditEntry:
        entry = AuditEntry(deployment_id=deployment_id, action=action, actor=actor, reason=reason, details=details)
        self.add_audit(entry)
        return entry

    def audit_once(
        self, deployment_id: str, key: str, at: datetime, action: str, actor: str, reason: str = "", **details: Any
    ) -> bool:
        """An audit entry written at most once under ``key`` (a step retried after a failure writes
        it again harmlessly); True if this call wrote it."""
        entry = AuditEntry(deployment_id=deployment_id, at=at, action=action, actor=actor, reason=reason,
                           details=details)  # fmt: skip
        item = self._history_item(deployment_id, keys.AUDIT, at, f"once-{key}", entry)
        item[WRITTEN_NS] = time.time_ns()  # its place among the entries of the same instant (its key cannot say)
        return self._put_new(item)

    def _outbox_item(self, event: DeploymentEvent, alerts: bool) -> dict[str, Any]:
        item = self._history_item(event.deployment_id, keys.EVENT, event.at, event.event_id, event)
        item[keys.GSI1_PK] = keys.LOOP
        item[keys.GSI1_SK] = keys.loop_due(keys.OUTBOX, event.at, event.event_id)
        item[RECORDED_AT] = keys.time_key(clock.now())  # the tick's grace runs from here, not from event.at
        if alerts:
            item[ALERTS_DUE] = True
        return item

    def _event_key(self, event: DeploymentEvent) -> dict[str, str]:
        return {
            keys.PK: keys.deployment_pk(event.deployment_id),
            keys.SK: keys.history_sk(keys.EVENT, event.at, event.event_id),
        }

    def outbox_record(self, event: DeploymentEvent, *, alerts: bool = False) -> OutboxEntry:
        """Store an event in the outbox (index ``gsi1``, ``LOOP``, kind ``O``), ``alerts``: with the alert
        engine still to see it; it leaves the outbox once published (:meth:`mark_published`) and, if
        due, alerted (:meth:`mark_alerted`). An event stored already (same id and time: a retried step,
        or a write retried after an ambiguous answer) is not written again: the entry says what
        earlier attempts did (``new`` false). ``recorded_at``: when it was stored (the clock's now; the
        minute tick's grace runs from it, as ``event.at`` may be minutes old: CodeDeploy's time, a replay)."""
        item = self._outbox_item(event, alerts)
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            stored = self.table.get_item(Key=self._event_key(event), ConsistentRead=True).get("Item")
            if stored is not None:
                return _outbox_entry(stored)
            item = self._outbox_item(event, alerts)
            self.table.put_item(Item=item)  # expired meanwhile: stored again
        return OutboxEntry(event, published=False, alerts_due=alerts, new=True, recorded_at=_recorded_at(item))

    def mark_published(self, event: DeploymentEvent) -> None:
        """Note that ``event`` went out on the topic, so a retried step does not publish it again; it
        leaves the outbox unless the alert engine has still to see it."""
        now = keys.time_key(clock.now())
        try:
            self.table.update_item(
                Key=self._event_key(event),
                UpdateExpression="SET published_at = :now REMOVE gsi1pk, gsi1sk",
                ConditionExpression=f"attribute_exists(pk) AND attribute_not_exists({ALERTS_DUE})",
                ExpressionAttributeValues={":now": now},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self._update_if_present(event, "SET published_at = :now", {":now": now})

    def publication_failed(self, event: DeploymentEvent) -> int:
        """Count a publication SNS refused for good (:func:`deployguard.aws.events.refused_for_good`);
        returns the refusals so far."""
        return self._count_on_event(event, "publish_failures")

    def give_up_publication(self, event: DeploymentEvent, reason: str) -> None:
        """Note that ``event`` will never be published (SNS refused it for good, every attempt): the
        topic is done with it, so it leaves the outbox unless the alert engine has still to see it."""
        now = keys.time_key(clock.now())
        values = {":now": now, ":reason": reason[:1000]}
        given_up = f"SET {PUBLISH_GIVEN_UP_AT} = :now, publish_give_up_reason = :reason"
        try:
            self.table.update_item(
                Key=self._event_key(event),
                UpdateExpression=f"{given_up} REMOVE gsi1pk, gsi1sk",
                ConditionExpression=f"attribute_exists(pk) AND attribute_not_exists({ALERTS_DUE})",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self._update_if_present(event, given_up, values)

    def mark_alerted(self, event: DeploymentEvent) -> None:
        """Note that the alert engine saw ``event``; it leaves the outbox if it was published (or given up)."""
        try:
            self.table.update_item(
                Key=self._event_key(event),
                UpdateExpression=f"REMOVE {ALERTS_DUE}, gsi1pk, gsi1sk",
                ConditionExpression=f"attribute_exists(published_at) OR attribute_exists({PUBLISH_GIVEN_UP_AT})",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self._update_if_present(event, f"REMOVE {ALERTS_DUE}")

    def alerting_failed(self, event: DeploymentEvent) -> int:
        """Count a failed run of the alert engine on ``event``; returns the failures so far."""
        return self._count_on_event(event, "alert_failures")

    def _count_on_event(self, event: DeploymentEvent, counter: str) -> int:
        """Add one to ``counter`` on the stored event (which must exist); returns the new count."""
        answer = self.table.update_item(
            Key=self._event_key(event),
            UpdateExpression=f"ADD {counter} :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer.get("Attributes", {}).get(counter, 1))

    def _update_if_present(self, event: DeploymentEvent, expression: str, values: dict[str, Any] | None = None) -> None:
        try:
            self.table.update_item(
                Key=self._event_key(event), UpdateExpression=expression, ConditionExpression="attribute_exists(pk)",
                **({"ExpressionAttributeValues": values} if values else {}),
            )  # fmt: skip
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def outbox(self, before: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Events recorded (at or before ``before``) not yet published, or not yet seen by the alert engine."""
        return [e for e in self.loop_work(before).outbox if e.event.at <= before][:limit]

    def add_notification(self, notification: Notification) -> None:
        self._put_history(
            notification.deployment_id,
            keys.NOTIFICATION,
            notification.at,
            notification.notification_id,
            notification,
        )

    def assessments(self, deployment_id: str) -> list[Assessment]:
        return [_from_item(Assessment, i) for i in self._history(deployment_id, keys.ASSESSMENT)]

    def latest_assessment(self, deployment_id: str) -> Assessment | None:
        """The deployment's newest assessment: one item read (a reverse Query, Limit 1), however long it has run."""
        items = self._query(
            1,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": keys.deployment_pk(deployment_id), ":prefix": keys.ASSESSMENT},
            ScanIndexForward=False,
            Limit=1,
        )
        return next((_from_item(Assessment, i) for i in items), None)

    def history_page(
        self, deployment_id: str, prefix: str, cls: type[M], *, before: str | None, limit: int
    ) -> tuple[list[tuple[str, M]], bool]:
        """The newest ``limit`` history items of one kind (``prefix``: ``AS#``, ``EVENT#`` ...) whose sort key,
        after the prefix, sorts before ``before`` (``<time key>`` takes what is older than that instant,
        ``<time key>#<unique>`` what is older than that item), newest first, each with its key after the prefix;
        and whether older ones are stored. One Query, reverse, with a ``Limit`` of ``limit + 2`` items: what
        DynamoDB reads does not grow with the deployment's age."""
        found, more = self._history_page_items(deployment_id, prefix, before, limit)
        return [(str(item[keys.SK])[len(prefix) :], _from_item(cls, item)) for item in found], more

    def audit_page(
        self, deployment_id: str, *, before: str | None, limit: int
    ) -> tuple[list[tuple[str, AuditEntry]], bool]:
        """:meth:`history_page` of the audit trail, newest first in the order written (as :meth:`audit_trail`)."""
        found, more = self._history_page_items(deployment_id, keys.AUDIT, before, limit)
        found.sort(key=_written_order, reverse=True)
        return [(str(item[keys.SK])[len(keys.AUDIT) :], _from_item(AuditEntry, item)) for item in found], more

    def _history_page_items(
        self, deployment_id: str, prefix: str, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        values: dict[str, Any] = {":pk": keys.deployment_pk(deployment_id), ":prefix": prefix}
        if before is None:
            condition = "pk = :pk AND begins_with(sk, :prefix)"
        else:  # BETWEEN includes its upper bound: an item whose key is exactly ``before`` is dropped below
            condition = "pk = :pk AND sk BETWEEN :prefix AND :before"
            values[":before"] = prefix + before
        resp = self.table.query(
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=limit + 2,
        )
        found = [item for item in resp.get("Items", []) if before is None or str(item[keys.SK]) < prefix + before]
        more = len(found) > limit or "LastEvaluatedKey" in resp  # (a 1 MB answer stops short of the Limit)
        return found[:limit], more

    def audit_trail(self, deployment_id: str) -> list[AuditEntry]:
        """The deployment's audit entries in the order they were written: by time, and within one instant
        (a simulated clock, or one microsecond) by when they were written: an entry's key says it
        (``<ns>-<id>``), or, for an entry written once under a fixed key, its ``written_ns``."""
        items = list(self._history(deployment_id, keys.AUDIT))
        items.sort(key=_written_order)
        return [_from_item(AuditEntry, i) for i in items]

    def events(self, deployment_id: str) -> list[DeploymentEvent]:
        return [_from_item(DeploymentEvent, i) for i in self._history(deployment_id, keys.EVENT)]

    def notifications(self, deployment_id: str) -> list[Notification]:
        return [_from_item(Notification, i) for i in self._history(deployment_id, keys.NOTIFICATION)]

    def _history(self, deployment_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        return self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": keys.deployment_pk(deployment_id), ":prefix": prefix},
        )

    # ------------------------------------------------------------------ once-only markers

    def claim_once(self, kind: str, key: str, ttl: timedelta, **attributes: Any) -> bool:
        """Create a marker unless it exists and has not expired; True if this caller got it.

        Used for deduplication (SNS delivers at least once), cooldowns and locks.
        """
        pk, sk = keys.singleton_key(kind, key)
        now = clock.now()
        item = {keys.PK: pk, keys.SK: sk, keys.TTL_ATTRIBUTE: int((now + ttl).timestamp())}
        item.update(json.loads(json.dumps(attributes, default=str), parse_float=Decimal))
        item[REQUEST_TOKEN] = new_request_token()
        try:
            self.table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR request_token = :token",
                ExpressionAttributeValues={":now": int(now.timestamp()), ":token": item[REQUEST_TOKEN]},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def find_claim(self, kind: str, key: str) -> dict[str, Any] | None:
        """The attributes of an unexpired marker made by :meth:`claim_once`, or None."""
        pk, sk = keys.singleton_key(kind, key)
        item = self.table.get_item(Key={keys.PK: pk, keys.SK: sk}, ConsistentRead=True).get("Item")
        if item is None or int(item.get(keys.TTL_ATTRIBUTE, 0)) < int(clock.now().timestamp()):
            return None
        return dict(item)

    def release(self, kind: str, key: str, **owned_by: Any) -> bool:
        """Delete a marker made by :meth:`claim_once`. With ``owned_by`` (an attribute given to
        ``claim_once``, e.g. ``holder=...``) only while the marker still has those values: a lock whose
        expiry let another holder take it is that holder's, never deleted by the first. True if deleted
        (or there was nothing to delete without ``owned_by``)."""
        pk, sk = keys.singleton_key(kind, key)
        if not owned_by:
            self.table.delete_item(Key={keys.PK: pk, keys.SK: sk})
            return True
        names = {f"#a{i}": name for i, name in enumerate(owned_by)}
        values = {f":v{i}": value for i, value in enumerate(owned_by.values())}
        try:
            self.table.delete_item(
                Key={keys.PK: pk, keys.SK: sk},
                ConditionExpression=" AND ".join(f"#a{i} = :v{i}" for i in range(len(owned_by))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # someone else's now (or gone)
            raise
        return True

    # ------------------------------------------------------------------ paging

    def _query(self, max_items: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_pages(self.table, max_items, **kwargs)
