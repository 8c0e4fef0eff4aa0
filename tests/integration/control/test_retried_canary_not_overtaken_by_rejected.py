"""A held canary retried after a newer canary of its service was rejected before any traffic moved (retry passes over
that one) stays its service's live canary: review of the retry change, the rejected deployment still counted as the
one that overtook it everywhere else (``DeploymentRepository.superseding`` read only the newest record). A retried
execution stopped at its first Wait (the alias at 10%) was ended by the minute tick as "traffic left to the later
deployment dep-bad" with the alias left split; the console then refused to abort it; an approved rollback of the
running retried canary was refused as overtaken. Now a deployment that ended before any of its traffic moved
(``Deployment.never_took_traffic``) overtakes nothing. The real CanaryStepFunction on the embedded AWS, the minute
tick's stale-execution check, the control service."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from control_support import control_service
from test_retry_after_a_rejected_newer_canary import _held_then_rejected
from tick_support import minute_tick

from deployguard import clock
from deployguard.alerts.settings import RemediationSettings
from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.remediation.executor import RemediationExecutor
from deployguard.remediation.models import Approval
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest


def _retried_then_stopped_at_its_first_wait(aws: Any) -> tuple[LambdaTarget, list[str]]:
    """The held canary retried after the rejected one; its execution stopped by a person once traffic moved, and
    what the executor says of an approved rollback of it while it ran (split)."""
    held, _bad, _ = _held_then_rejected(aws)
    repository = DeploymentRepository()
    stale: list[str] = []

    def at_first_wait(before: Any, after: Any) -> None:
        if stale:
            return
        running = repository.get_deployment("dep-held")
        if running.status.is_terminal or running.canary_weight == 0 or not running.execution_arn:
            return
        approval = Approval(
            incident_id="inc-1", deployment_id="dep-held", action="rollback", target=f"{held.function_name}:live",
            description="roll back", expires_at_time=clock.now() + timedelta(hours=1),
            deployment_status=running.status.value,
        )  # fmt: skip
        executor = RemediationExecutor(RemediationSettings(), repository, None, None)  # type: ignore[arg-type]
        stale.append(executor._stale(approval, running, None) or "applies")
        clients.client("stepfunctions").stop_execution(executionArn=running.execution_arn, cause="a person stopped it")

    aws.clock.listeners.append(at_first_wait)
    outcome = control_service(aws).apply("dep-held", ControlRequest(verb="retry", actor="frank", reason="again"))
    assert outcome.changed, outcome.message
    deadline = time.monotonic() + 60  # the execution runs on the embedded AWS's own threads
    while not stale and time.monotonic() < deadline:
        time.sleep(0.05)
    aws.clock.listeners.remove(at_first_wait)
    aws.invoker.drain()
    assert stale, "the retried canary never moved traffic"
    return held, stale


def test_a_stopped_retried_canary_is_put_back_on_stable_and_not_said_overtaken(embedded: Any) -> None:
    held, stale = _retried_then_stopped_at_its_first_wait(embedded)
    assert stale == ["applies"]  # an approved rollback of the running retried canary is not refused as overtaken
    repository = DeploymentRepository()
    split = LambdaTrafficShifter(held).current()
    assert split.additional_weights, split  # stopped while split
    assert repository.superseding(repository.get_deployment("dep-held")) is None
    assert not [e for e in repository.audit_trail("dep-bad") if e.action == "stale_remediation_refused"]

    embedded.clock.advance(15 * 60)  # the execution ended; its record stayed in progress longer than its step lasts
    minute_tick(embedded)
    ended = repository.get_deployment("dep-held")
    alias = LambdaTrafficShifter(held).current()
    assert (alias.function_version, alias.additional_weights) == (held.stable_version, {}), alias
    assert ended.status == DeploymentStatus.ROLLED_BACK and "dep-bad" not in (ended.decision_reason or ""), (
        ended.decision_reason
    )


def test_abort_is_offered_for_a_retried_canary_left_on_its_new_version(embedded: Any) -> None:
    held, _ = _retried_then_stopped_at_its_first_wait(embedded)
    repository = DeploymentRepository()
    # its execution stopped: say the rollback failed, the alias still split (what only abort can finish)
    service = control_service(embedded)
    running = repository.get_deployment("dep-held")
    repository.update_deployment("dep-held", lambda d: setattr(d, "status", DeploymentStatus.FAILED))
    assert service.left_on_new(repository.get_deployment("dep-held")), running
    outcome = service.apply("dep-held", ControlRequest(verb="abort", actor="frank", reason="finish it"))
    assert outcome.changed, outcome.message
    alias = LambdaTrafficShifter(held).current()
    assert (alias.function_version, alias.additional_weights) == (held.stable_version, {}), alias
