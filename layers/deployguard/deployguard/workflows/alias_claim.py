"""One canary at a time per Lambda alias: the claim ``Validate`` takes before any traffic moves.

Two canaries of the same function and alias could both pass ``Validate`` (each sees the alias on the stable
version) and then overwrite each other's routing: one promotes, the other's ShiftTraffic undoes it. So
``Validate`` claims the alias (a conditional DynamoDB write, ``pk = CANARY-ALIAS#<function>:<alias>``, made
by :meth:`~deployguard.storage.repository.DeploymentRepository.claim_once`) for its deployment, and a second
canary of that alias is refused while the holder is in progress, naming it.

The claim is held until the holder's record ends, and released when it ends (its Promote, Rollback or hold,
a person's abort, a rejection, the stale-canary repair): :func:`release`. A claim whose release never ran
(a crash, an end written elsewhere) cannot block the alias: one whose holder's record has ended, or is gone,
is taken over by the next canary, and every claim expires after :data:`TTL` all the same.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.exceptions import ConflictError

if TYPE_CHECKING:
    from deployguard.models import Deployment, LambdaTarget
    from deployguard.storage.repository import DeploymentRepository

KIND = "CANARY-ALIAS"
TTL = timedelta(days=8)  # the longest canary (steps, a 24 h approval wait, a ~40 h pause) ends well within it
logger = logging.getLogger(__name__)


def key(target: LambdaTarget) -> str:
    return f"{target.function_name}:{target.alias}"


def claim(
    repository: DeploymentRepository, target: LambdaTarget, deployment_id: str, execution_arn: str | None
) -> Deployment | None:
    """Claim ``target``'s alias for ``deployment_id`` (its own claim again: a retried Validate, a person's
    retry). Returns None when this deployment holds it, else the in-progress deployment that does."""
    for _ in range(3):
        if repository.claim_once(
            KIND, key(target), TTL, deployment_id=deployment_id, execution_arn=execution_arn or "",
            claimed_at=clock.now().isoformat(),
        ):  # fmt: skip
            return None
        found = repository.find_claim(KIND, key(target))
        if found is None:  # released or expired since: claim it again
            continue
        holder_id = str(found.get("deployment_id") or "")
        if holder_id == deployment_id:
            return None
        holder = repository.find_deployment(holder_id) if holder_id else None
        if holder is not None and not holder.status.is_terminal:
            return holder
        # its holder ended (its release never ran) or is gone: the claim is stale, take it over
        logger.warning("stale alias claim taken over", extra={"alias": key(target), "holder": holder_id})
        repository.release(KIND, key(target), deployment_id=holder_id)
    found = repository.find_claim(KIND, key(target)) or {}
    holder = repository.find_deployment(str(found.get("deployment_id") or "-"))
    if holder is None:  # three times taken and freed under us: say so rather than loop
        raise ConflictError(f"alias {key(target)}: its claim keeps changing")
    return holder


def holder_of(repository: DeploymentRepository, target: LambdaTarget) -> str | None:
    """The deployment id holding ``target``'s alias claim (unexpired), or None."""
    found = repository.find_claim(KIND, key(target))
    return str(found.get("deployment_id")) if found and found.get("deployment_id") else None


def release(repository: DeploymentRepository, deployment: Deployment | Any) -> None:
    """The deployment ended: its alias claim goes, only while it is still this deployment's (a claim taken
    over since is the taker's). Best effort, never raises: a claim left behind is taken over once its
    holder's record has ended (:func:`claim`)."""
    from deployguard.models import LambdaTarget

    target = getattr(deployment, "target", None)
    if not isinstance(target, LambdaTarget):
        return
    try:
        repository.release(KIND, key(target), deployment_id=deployment.deployment_id)
    except Exception:
        logger.exception("cannot release the alias claim", extra={"deployment_id": deployment.deployment_id})
