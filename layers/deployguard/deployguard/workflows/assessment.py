"""Turning a judge verdict and the health report into an Assessment, and storing it with the
deployment record that carries what the next assessment needs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from deployguard.alerts.fields import fields_from_window
from deployguard.analysis.health import assess_health, health_values_from_window
from deployguard.analysis.settings import HealthSettings
from deployguard.exceptions import ConflictError
from deployguard.models import (
    Assessment,
    AssessmentCursor,
    CanaryWindow,
    Decision,
    Deployment,
    DeploymentEvent,
    HealthStatus,
    Verdict,
)

if TYPE_CHECKING:
    from deployguard.storage.repository import DeploymentRepository

# an assessment stored this close to another of the same kind belongs to the same cycle
SAME_CYCLE = timedelta(seconds=5)
UNREADABLE = "METRICS-UNREADABLE"  # once per deployment and kind of look: its metrics cannot be read
UNREADABLE_NOTE_TTL = timedelta(days=2)  # longer than a canary and its 24 hours of monitoring
logger = logging.getLogger(__name__)

_VERDICT_STATUS = {
    Decision.FAILING: HealthStatus.CRITICAL,
    Decision.INCONCLUSIVE: HealthStatus.UNKNOWN,
    Decision.HEALTHY: HealthStatus.HEALTHY,
}


def assessment_from_verdict(
    deployment: Deployment,
    window: CanaryWindow,
    verdict: Verdict,
    health_settings: HealthSettings | None = None,
) -> Assessment:
    """The assessment of one period: the canary verdict, and the canary's own health.

    The overall status is the worse of the two: a canary that is no worse than a
    sick baseline is still reported as sick.
    """
    report = assess_health(health_values_from_window(window), health_settings or HealthSettings())
    order = [HealthStatus.HEALTHY, HealthStatus.UNKNOWN, HealthStatus.WARNING, HealthStatus.CRITICAL]
    status = max(_VERDICT_STATUS[verdict.decision], report.overall_status, key=order.index)
    return Assessment(
        deployment_id=deployment.deployment_id,
        step_index=deployment.step_index,
        canary_weight=deployment.canary_weight,
        verdict=verdict,
        health_status=status,
        health_score=report.score,
        details={
            "health": report.model_dump(mode="json"),
            "periods": window.periods,
            "fields": fields_from_window(window).as_details(),  # what the alert rules read
        },
    )


def save_assessment(
    repository: DeploymentRepository,
    deployment: Deployment,
    assessment: Assessment,
    cursor: AssessmentCursor,
    change: Callable[[Deployment], None] | None = None,
    attempts: int = 3,
    events: Sequence[DeploymentEvent] = (),
) -> Deployment | None:
    """Store ``assessment`` and the deployment's record with ``cursor`` (and ``change``) in one
    conditional write, with the ``events`` it announces in the outbox. On a conflict the record is
    read again and the write retried, unless another run stored an assessment of the same kind since
    ``deployment`` was read, or the look is no longer due at this one's time (then None: this one is
    dropped, not doubled, and so are its events: a verdict change is announced once). Two runs that
    overlap (a shard handed out again while the first still works on it) judge a deployment once."""
    read = deployment.last_assessment  # the look this run's judgement followed
    for attempt in range(attempts):
        deployment.last_assessment = cursor
        if change is not None:
            change(deployment)
        try:
            return repository.save_with_assessment(deployment, assessment, events)
        except ConflictError:
            if attempt == attempts - 1:
                raise
            deployment = repository.get_deployment(deployment.deployment_id)
            if _assessed_meanwhile(deployment.last_assessment, read, cursor):
                return None
    return None


def _assessed_meanwhile(last: AssessmentCursor | None, read: AssessmentCursor | None, cursor: AssessmentCursor) -> bool:
    """Whether the stored last look ``last`` (read again after a conflict) is another run's look of this
    cycle: of the same kind as ``cursor``, and newer than the one this run read (``read``), or one after
    which this look is not due yet, or of the same cycle."""
    if last is None or last.kind != cursor.kind:
        return False
    newer = read is None or read.kind != last.kind or last.at > read.at
    return newer or not last.due(cursor.kind, cursor.at) or last.at >= cursor.at - SAME_CYCLE


def note_unreadable(repository: DeploymentRepository, deployment_id: str, kind: str, reason: str, actor: str) -> None:
    """A deployment that is due but whose metrics cannot be read (its configuration names none that
    can be queried for it) is not assessed: logged every look, and audited once, so a person can
    see why it is not watched. Never raises."""
    logger.warning("deployment not assessed: its metrics cannot be read",
                   extra={"deployment_id": deployment_id, "kind": kind, "reason": reason})  # fmt: skip
    try:
        if not repository.claim_once(UNREADABLE, f"{deployment_id}#{kind}", UNREADABLE_NOTE_TTL):
            return
    except Exception:
        logger.exception("cannot note unreadable metrics", extra={"deployment_id": deployment_id})
        return
    try:
        repository.audit(deployment_id, "metrics_unreadable", actor,
                         f"not assessed ({kind}): its metrics cannot be read: {reason}", kind=kind)  # fmt: skip
    except Exception:
        logger.exception("cannot audit unreadable metrics", extra={"deployment_id": deployment_id})
        with contextlib.suppress(Exception):
            repository.release(UNREADABLE, f"{deployment_id}#{kind}")  # audited at the next look
