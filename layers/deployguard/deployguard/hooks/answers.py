"""Answering CodeDeploy once per hook execution, and finishing answers left unconfirmed.

One marker per ``LifecycleEventHookExecutionId`` (:class:`deployguard.storage.leases.Leases`,
kind ``HOOK``): ``claimed`` by the attempt that runs the checks, with a lease until that
attempt's deadline; the status it decided is stored on the marker *before* the
PutLifecycleEventHookExecutionStatus call; ``done`` once CodeDeploy accepted it (or said it
no longer waits on the execution: LifecycleEventAlreadyCompletedException). Whoever finds a
marker not done, a later delivery of the same execution or the recorder's scheduled sweep,
finishes it with :meth:`HookAnswers.settle`:

- a decided status: sent again, the same one (CodeDeploy accepts a repeated status while it
  waits, and answers LifecycleEventAlreadyCompletedException once it no longer does); a decided
  ``Failed`` is kept first (the attempt that decided it may have ended before keeping it);
- no status and the lease over: the attempt died before deciding (killed at its timeout):
  ``Failed`` is decided for it and sent (fail closed);
- no status and the lease running: the attempt is still at work; nothing to do.

A ``Failed`` verdict is also kept, under its own marker (kind ``HOOK-VERDICT``, in the pending
index until done), from just before it is sent to CodeDeploy until it is recorded (the deployment's
record, the ``validation.failed`` event and its alert): whatever failed then, a kill right after the
answer included, is finished by the recorder's schedule
(:meth:`deployguard.hooks.lifecycle.LifecycleHook.finish_verdicts`, once this marker's answer says
CodeDeploy has the Failed). Whoever sends a ``Failed``, keeps it first (:meth:`HookAnswers.keep_verdict`):
the hook for its own decision, and :meth:`HookAnswers.settle` for an attempt that died (a redelivery,
or the recorder's sweep), and before it sends again a ``Failed`` an attempt decided: that attempt stores
its decision on the answer marker before it keeps its verdict, and may end between the two (a verdict it
kept already stays as it kept it: a verdict marker is written once).

This module sits below the lifecycle hook and the recorder (both use it) and imports neither.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from deployguard import clock
from deployguard.storage.leases import DONE, Leases, Marker

if TYPE_CHECKING:
    from deployguard.aws.codedeploy import CodeDeployGateway, HookStatus, StatusReport
    from deployguard.storage.repository import DeploymentRepository

HOOK_KIND = "HOOK"
VERDICT_KIND = "HOOK-VERDICT"
MARKER_TTL = timedelta(days=2)
DEAD_ATTEMPT_GRACE_SECONDS = 5.0
DEFAULT_BUDGET_SECONDS = 15.0
DEAD_ATTEMPT_REASON = (
    "the first attempt of this hook execution ended without answering (timed out or crashed); failing closed"
)
RESENT_FAILED_REASON = (
    "an earlier attempt of this hook execution decided Failed and ended before keeping its verdict "
    "(its checks are not known here); the Failed sent again"
)
logger = logging.getLogger(__name__)

SettleAction = Literal["answered", "resent", "failed_for_dead_attempt", "in_progress"]


@dataclass(frozen=True)
class Settled:
    """What :meth:`HookAnswers.settle` did with a marker."""

    action: SettleAction
    execution_id: str
    deployment_id: str | None
    status: HookStatus | None = None
    report: StatusReport | None = None
    decided_at: datetime | None = None  # when the status sent was decided (None: by this very settle)

    @property
    def confirmed(self) -> bool:
        return self.action == "answered" or (self.report is not None and self.report.settled)


def _decided_at(marker: Marker) -> datetime | None:
    """When the status stored on ``marker`` was decided, if it says."""
    decided_at = marker.attributes.get("decided_at")
    try:
        return datetime.fromisoformat(str(decided_at)) if decided_at else None
    except ValueError:
        return None


def _status(value: str | None) -> HookStatus | None:
    return value if value in ("Succeeded", "Failed") else None  # type: ignore[return-value]


class HookAnswers:
    def __init__(
        self,
        repository: DeploymentRepository,
        codedeploy: CodeDeployGateway,
        *,
        sleep: Callable[[float], None] = clock.sleep,
    ) -> None:
        self.markers = Leases(lambda: repository.table, HOOK_KIND, MARKER_TTL, pending_index=True)
        self.verdicts = Leases(lambda: repository.table, VERDICT_KIND, MARKER_TTL, pending_index=True)
        self.codedeploy = codedeploy
        self.sleep = sleep

    def send(
        self,
        deployment_id: str | None,
        execution_id: str,
        status: HookStatus,
        budget_seconds: float,
        before_done: Callable[[StatusReport], None] | None = None,
    ) -> StatusReport:
        """The status call within ``budget_seconds``; the marker is done once CodeDeploy settled it, after
        ``before_done`` (what must be kept of the answer, e.g. its audit entry): when that fails, the marker
        stays pending and the next sweep sends the same status again and calls it again."""
        report = self.codedeploy.report(
            deployment_id, execution_id, status, budget_seconds=max(0.0, budget_seconds), sleep=self.sleep
        )
        if report.settled:
            if before_done is not None:
                try:
                    before_done(report)
                except Exception:  # left pending: the next sweep finishes it
                    logger.exception("cannot keep the confirmed hook answer", extra={"execution_id": execution_id})
                    return report
            try:
                self.markers.done(execution_id, answer=report.outcome, attempts=report.attempts)
            except Exception:  # CodeDeploy has its answer; a re-send later is harmless
                logger.exception("cannot mark the hook answer confirmed", extra={"execution_id": execution_id})
        return report

    def keep_verdict(
        self, execution_id: str, deployment_id: str | None, at: datetime, outcome: str, **attributes: Any
    ) -> bool:
        """Keep a ``Failed`` verdict pending before it is sent (``outcome``: the lifecycle hook's outcome as
        JSON, what will be recorded); ``before_answer``: recorded once the answer marker says CodeDeploy has
        it; ``unclaimed``: no answer marker says it (the claim failed, a malformed event), the answer is
        learned by sending the same Failed again. False when the table refuses (logged): then it is recorded
        now or never."""
        try:
            self.verdicts.claim(execution_id, at.timestamp(), deployment_id=deployment_id, at=at.isoformat(),
                                outcome=outcome, **attributes)  # fmt: skip
        except Exception:
            logger.exception("cannot keep the hook verdict pending", extra={"execution_id": execution_id})
            return False
        return True

    def settle(
        self,
        marker: Marker,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        before_done: Callable[[Settled], None] | None = None,
    ) -> Settled:
        """Finish a marker somebody else claimed (see the module docstring). ``before_done``: called with
        the outcome once CodeDeploy has the status, before the marker is done (see :meth:`send`)."""
        deployment_id = marker.attributes.get("deployment_id")
        deployment_id = str(deployment_id) if deployment_id else None
        if marker.state == DONE:
            return Settled("answered", marker.key, deployment_id, _status(marker.result))

        def kept(
            action: SettleAction, status: HookStatus, at: datetime | None
        ) -> Callable[[StatusReport], None] | None:
            if before_done is None:
                return None
            return lambda report: before_done(Settled(action, marker.key, deployment_id, status, report, at))

        decided = _status(marker.result)
        if decided is not None:
            if decided == "Failed" and deployment_id is not None:  # kept before it is sent again
                self._keep_decided(marker, deployment_id)
            at = _decided_at(marker)
            report = self.send(deployment_id, marker.key, decided, budget_seconds, kept("resent", decided, at))
            return Settled("resent", marker.key, deployment_id, decided, report, at)
        if clock.now().timestamp() <= marker.lease_until + DEAD_ATTEMPT_GRACE_SECONDS:
            return Settled("in_progress", marker.key, deployment_id)
        if not self.markers.decide(marker.key, marker.token, "Failed"):
            # somebody decided meanwhile: finish what they decided
            fresh = self.markers.get(marker.key)
            if fresh is None or (fresh.token == marker.token and fresh.result is None):
                return Settled("in_progress", marker.key, deployment_id)
            return self.settle(fresh, budget_seconds)
        if deployment_id is not None:  # kept before it is sent: a kill after the answer loses no verdict
            dead = {"execution_id": marker.key, "deployment_id": deployment_id, "status": "Failed",
                    "reason": DEAD_ATTEMPT_REASON}  # fmt: skip
            self.keep_verdict(marker.key, deployment_id, clock.now(), json.dumps(dead), before_answer=True)
        report = self.send(
            deployment_id, marker.key, "Failed", budget_seconds, kept("failed_for_dead_attempt", "Failed", None)
        )
        return Settled("failed_for_dead_attempt", marker.key, deployment_id, "Failed", report)

    def _keep_decided(self, marker: Marker, deployment_id: str) -> None:
        """Keep the ``Failed`` an attempt decided (stored on ``marker``) before it is sent again: that attempt may
        have ended before it kept its verdict. One it kept stays (a verdict marker is claimed once); recorded
        once the answer marker says CodeDeploy has it
        (:meth:`~deployguard.hooks.lifecycle.LifecycleHook.finish_verdicts`)."""
        at = _decided_at(marker) or clock.now()
        verdict = {"execution_id": marker.key, "deployment_id": deployment_id, "status": "Failed",
                   "reason": RESENT_FAILED_REASON, "resent": True}  # fmt: skip
        self.keep_verdict(marker.key, deployment_id, at, json.dumps(verdict), before_answer=True)

    def sweep(
        self,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        max_items: int = 100,
        seconds_left: Callable[[], float] | None = None,
        before_done: Callable[[Settled], None] | None = None,
    ) -> list[Settled]:
        """Settle every hook marker left unconfirmed (the recorder's schedule calls this).

        ``seconds_left``: the invocation's remaining time; no status call starts that could not
        end within it (the rest waits for the next run). ``before_done``: see :meth:`settle`.
        """
        settled = []
        for marker in self.markers.pending(max_items):
            if seconds_left is not None and seconds_left() < budget_seconds + 2:
                break
            fresh = self.markers.get(marker.key)  # the index lags: read the marker itself
            if fresh is None or fresh.state == DONE:
                continue
            result = self.settle(fresh, budget_seconds, before_done)
            if result.action != "in_progress":
                settled.append(result)
        return settled
