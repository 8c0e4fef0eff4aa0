"""Remediation state in the DeploymentsTable: attempts, circuit breakers, approvals.

- attempts of one action for one incident and deployment: ``REMEDIATION#<incident>#<deployment>#<action>`` /
  ``REMEDIATION`` (per deployment: an incident grouped without the deployment acts on its latest alert's,
  and the first release's rollback done does not make the second's "already done")
- circuit breaker of a target (or ``global``): ``REMEDIATION-BREAKER#<scope>`` / ``REMEDIATION-BREAKER``
- an approval request: ``APPROVAL#<id>`` / ``META``, in gsi1 under ``LOOP`` (``!P#``, read by the minute tick)
  while open
- the approval requests of one deployment, whatever became of them: ``APPROVALS-OF#<deployment>`` /
  ``APPROVALS-OF`` (a string set of their ids; the canary's promotion reads it, :meth:`RemediationStore.approvals_of`)
- lock of a target: ``REMEDIATION-LOCK#<target>`` (``DeploymentRepository.claim_once``), naming its holder (the
  incident and action) and a token of that one claim, which alone releases it (:meth:`RemediationStore.take_lock`)

Counters change with atomic, conditional updates, so racing workers never both take
the last attempt or both page for one opening of a breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.exceptions import NotFoundError
from deployguard.incidents.repository import from_item, to_item
from deployguard.remediation.models import Approval, ApprovalStatus
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository, new_request_token, put_if_unchanged

ATTEMPTS = "REMEDIATION"
BREAKER = "REMEDIATION-BREAKER"
LOCK = "REMEDIATION-LOCK"
APPROVAL = "APPROVAL"
APPROVAL_REQUEST = "APPROVAL-REQUEST"
APPROVALS_OF = "APPROVALS-OF"
logger = logging.getLogger(__name__)


def _failed_condition(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _request_key(approval: Approval) -> str:
    """The marker of an open request: one per incident, deployment and action."""
    return f"{approval.incident_id}#{approval.deployment_id}#{approval.action}"


class RemediationStore:
    def __init__(self, deployments: DeploymentRepository) -> None:
        self.deployments = deployments
        self._cycle: list[Approval] | None = None

    @property
    def table(self) -> Any:
        return self.deployments.table

    def _expires(self, at: datetime | None = None) -> int:
        return _epoch((at or clock.now()) + self.deployments.retention)

    # ------------------------------------------------------------------ attempts

    def _attempts_key(self, incident_id: str, deployment_id: str, action: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(ATTEMPTS, f"{incident_id}#{deployment_id}#{action}")
        return {keys.PK: pk, keys.SK: sk}

    def attempts(self, incident_id: str, deployment_id: str, action: str) -> dict[str, Any]:
        key = self._attempts_key(incident_id, deployment_id, action)
        item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else {}

    def take_attempt(self, incident_id: str, deployment_id: str, action: str, max_attempts: int) -> int | None:
        """Count one more attempt; its number, or None when ``max_attempts`` were used or it succeeded."""
        now = clock.now()
        try:
            resp = self.table.update_item(
                Key=self._attempts_key(incident_id, deployment_id, action),
                UpdateExpression="ADD attempts :one SET last_attempt_at = :now, expires_at = :expires",
                ConditionExpression="(attribute_not_exists(attempts) OR attempts < :max) AND "
                "(attribute_not_exists(succeeded) OR succeeded = :false)",
                ExpressionAttributeValues={
                    ":one": 1,
                    ":max": max_attempts,
                    ":now": now.isoformat(),
                    ":expires": self._expires(now),
                    ":false": False,
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if _failed_condition(exc):
                return None
            raise
        return int(resp["Attributes"]["attempts"])

    def mark_answered(self, approval: Approval) -> None:
        """People were asked for this incident, deployment and action and the request ended without a yes:
        rejected, or expired unanswered. Kept on its attempts record (``answered``), so later alerts of the
        incident do not ask again (a new request would restart a canary's promotion hold, :mod:`deployguard.
        workflows.promotion_hold`). Best effort: the answer stands whatever; unrecorded, a later alert may ask again."""
        try:
            self.table.update_item(
                Key=self._attempts_key(approval.incident_id, approval.deployment_id, approval.action),
                UpdateExpression="SET answered = :status, answered_approval = :id, expires_at = :expires",
                ExpressionAttributeValues={
                    ":status": approval.status.value,
                    ":id": approval.approval_id,
                    ":expires": self._expires(),
                },
            )
        except ClientError:
            logger.exception("cannot note the answer on its attempts", extra={"approval_id": approval.approval_id})

    def record_outcome(self, incident_id: str, deployment_id: str, action: str, outcome: str, succeeded: bool) -> None:
        self.table.update_item(
            Key=self._attempts_key(incident_id, deployment_id, action),
            UpdateExpression="SET last_outcome = :outcome, succeeded = :ok, expires_at = :expires",
            ExpressionAttributeValues={":outcome": outcome, ":ok": succeeded, ":expires": self._expires()},
        )

    # ------------------------------------------------------------------ lock of a target

    def take_lock(self, target: str, holder: str, ttl: timedelta) -> str | None:
        """Take the target's lock for ``ttl``; the token of this claim (for :meth:`release_lock`), or None
        while another holds it. ``holder`` (the incident and action) says who has it; it is the same for every
        run of that incident and action, so the token, new at each claim, is what makes the lock this run's."""
        token = new_request_token()
        taken = self.deployments.claim_once(LOCK, target, ttl, holder=holder, lock_token=token)
        return token if taken else None

    def release_lock(self, target: str, token: str) -> bool:
        """Release the lock taken with ``token``, only while it is still that claim's: a lock that expired
        under a slow action and was taken again (by any run, the same incident's and action's too) stands.
        True if released."""
        return self.deployments.release(LOCK, target, lock_token=token)

    # ------------------------------------------------------------------ circuit breaker

    def _breaker_key(self, scope: str) -> dict[str, str]:
        pk, sk = keys.singleton_key(BREAKER, scope)
        return {keys.PK: pk, keys.SK: sk}

    def breaker(self, scope: str) -> dict[str, Any]:
        item = self.table.get_item(Key=self._breaker_key(scope), ConsistentRead=True).get("Item")
        return dict(item) if item else {}

    def breaker_open(self, scope: str, reset_after: timedelta) -> bool:
        opened = self.breaker(scope).get("opened_at")
        return opened is not None and clock.now().timestamp() - float(opened) < reset_after.total_seconds()

    def record_failure(self, scope: str, threshold: int, reset_after: timedelta) -> tuple[int, bool]:
        """Count a failure; (consecutive failures, whether this call opened the breaker)."""
        now = clock.now()
        resp = self.table.update_item(
            Key=self._breaker_key(scope),
            UpdateExpression="ADD failures :one SET expires_at = :expires",
            ExpressionAttributeValues={":one": 1, ":expires": self._expires(now)},
            ReturnValues="ALL_NEW",
        )
        failures = int(resp["Attributes"]["failures"])
        if failures < threshold:
            return failures, False
        try:
            self.table.update_item(
                Key=self._breaker_key(scope),
                UpdateExpression="SET opened_at = :now",
                ConditionExpression="attribute_not_exists(opened_at) OR opened_at < :stale",
                ExpressionAttributeValues={
                    ":now": int(now.timestamp()),
                    ":stale": int(now.timestamp() - reset_after.total_seconds()),
                },
            )
        except ClientError as exc:
            if _failed_condition(exc):
                return failures, False
            raise
        return failures, True

    def record_success(self, scope: str) -> None:
        self.table.update_item(
            Key=self._breaker_key(scope),
            UpdateExpression="SET failures = :zero, expires_at = :expires REMOVE opened_at",
            ExpressionAttributeValues={":zero": 0, ":expires": self._expires()},
        )

    def reset_breaker(self, scope: str) -> None:
        self.table.delete_item(Key=self._breaker_key(scope))

    # ------------------------------------------------------------------ approvals

    def _approval_item(self, approval: Approval) -> dict[str, Any]:
        item = to_item(approval)
        item.update({keys.PK: f"{APPROVAL}#{approval.approval_id}", keys.SK: keys.META, "record_type": "approval"})
        if approval.status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
            item[keys.GSI1_PK] = keys.LOOP
            item[keys.GSI1_SK] = keys.loop_always(keys.APPROVAL_OPEN, approval.requested_at, approval.approval_id)
        else:
            item[keys.TTL_ATTRIBUTE] = self._expires()
        return item

    def request_approval(self, approval: Approval, ttl: timedelta) -> bool:
        """Store a pending approval, once per incident, deployment and action while one is open."""
        if not self.deployments.claim_once(
            APPROVAL_REQUEST, _request_key(approval), ttl, approval_id=approval.approval_id
        ):
            return False
        approval.version_counter = 1
        self.table.put_item(Item=self._approval_item(approval), ConditionExpression="attribute_not_exists(pk)")
        try:  # best effort: while it is open the canary finds it among the open approvals all the same
            pk, sk = keys.singleton_key(APPROVALS_OF, approval.deployment_id)
            self.table.update_item(
                Key={keys.PK: pk, keys.SK: sk},
                UpdateExpression="ADD approval_ids :id SET expires_at = :expires",
                ExpressionAttributeValues={":id": {approval.approval_id}, ":expires": self._expires()},
            )
        except ClientError:
            logger.exception("cannot note the approval on its deployment", extra={"approval_id": approval.approval_id})
        return True

    def approval(self, approval_id: str) -> Approval:
        item = self.table.get_item(Key={keys.PK: f"{APPROVAL}#{approval_id}", keys.SK: keys.META}, ConsistentRead=True)
        if "Item" not in item:
            raise NotFoundError(f"approval {approval_id} not found")
        return from_item(Approval, item["Item"])

    def save_approval(self, approval: Approval) -> Approval:
        expected = approval.version_counter
        new = approval.model_copy(update={"version_counter": expected + 1})
        put_if_unchanged(self.table, self._approval_item(new), expected, f"approval {approval.approval_id}")
        approval.version_counter = expected + 1
        if new.status not in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
            # only this approval's request marker: an older request ending late never frees a newer one's
            self.deployments.release(APPROVAL_REQUEST, _request_key(approval), approval_id=approval.approval_id)
        return approval

    def approvals_of(self, deployment_id: str) -> list[Approval]:
        """Every approval request asked for the deployment, open or ended (rejected, expired, executed), oldest
        first: the ids noted on the deployment (:meth:`request_approval`) and its open ones."""
        pk, sk = keys.singleton_key(APPROVALS_OF, deployment_id)
        item = self.table.get_item(Key={keys.PK: pk, keys.SK: sk}, ConsistentRead=True).get("Item") or {}
        found = {a.approval_id: a for a in self.open_approvals() if a.deployment_id == deployment_id}
        for approval_id in set(item.get("approval_ids") or ()) - set(found):
            try:
                found[approval_id] = self.approval(approval_id)
            except NotFoundError:  # ended long ago and gone with its retention
                continue
        return sorted(found.values(), key=lambda a: (a.requested_at, a.approval_id))

    def open_approvals(self) -> list[Approval]:
        """The pending and approved requests: the cycle's one read while a cycle runs (:meth:`one_read_per_cycle`)."""
        if self._cycle is not None:
            return list(self._cycle)
        out: list[Approval] = []
        kwargs: dict[str, Any] = {
            "IndexName": keys.GSI1,
            "KeyConditionExpression": "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            "ExpressionAttributeValues": {":pk": keys.LOOP, ":prefix": f"{keys.ALWAYS}{keys.APPROVAL_OPEN}#"},
        }
        while True:
            resp = self.table.query(**kwargs)
            out.extend(from_item(Approval, item) for item in resp.get("Items", []))
            if not resp.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    @contextmanager
    def one_read_per_cycle(self, items: list[dict[str, Any]]) -> Iterator[list[Approval]]:
        """The open approvals the minute tick's one read found (``items``), used for the whole cycle."""
        self._cycle = [from_item(Approval, item) for item in items]
        try:
            yield self._cycle
        finally:
            self._cycle = None
