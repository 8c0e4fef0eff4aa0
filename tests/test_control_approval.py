"""Approval before full traffic, and people's verbs around it, through the real canary state machine on the
embedded AWS: the approval wait keeps assessing, an abort or an expiry ends it cleanly, and no verb lets a
bad or paused canary reach 100%."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from canary_flow_support import DEP
from canary_flow_support import ask as _ask
from canary_flow_support import config_with_approval as _config
from canary_flow_support import in_background as _in_background
from canary_flow_support import prepare as _prepare
from canary_flow_support import until as _until

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError
from deployguard.models import Deployment, DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import canary as canary_module
from deployguard.workflows.control import ControlOutcome
from deployguard_local.emulator import EmbeddedAws


def _waiting_for_approval() -> Deployment | None:
    found = DeploymentRepository().find_deployment(DEP)
    return found if found is not None and found.control.awaiting_approval and found.control.approval_token else None


def _at_minute(aws: Any, minute: float, action: Callable[[], object]) -> None:
    start, fired = aws.clock(), []

    def listener(before: Any, after: Any) -> None:
        if not fired and (after - start).total_seconds() >= minute * 60:
            fired.append(True)
            action()

    aws.clock.listeners.append(listener)


def _actions(*names: str) -> list[str]:
    return [e.action for e in DeploymentRepository().audit_trail(DEP) if e.action in names]


def _titles() -> list[str]:
    return [e.title for e in DeploymentRepository().events(DEP)]


def test_an_abort_during_the_approval_wait_ends_the_execution_aborted_not_as_a_failed_rollback(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        assert _ask(aws, "abort", by="bob").changed  # SendTaskFailure without a cause: moto drops it, AWS may too
        worker.join(60)
        assert result["status"] == "SUCCEEDED"  # not DeployGuard.RollbackFailed
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
        assert not deployment.control.awaiting_approval and deployment.control.approval_token is None
        assert "Rollback Failed" not in _titles() and not _actions("rollback_failed")
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_a_regression_during_the_approval_wait_is_rolled_back_and_an_approval_never_promotes_it(
    tmp_path: Path,
) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws, regress_at=14)  # healthy through the steps, bad from minute 14
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.5}
        worker.join(120)  # the wait keeps assessing: the regression is seen and rolled back with no one asking
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
        reason = deployment.decision_reason or ""
        assert reason and not reason.startswith("DeployGuard.")  # the verdict's own words, not the error's name
        assert not _actions("promoted", "control_approve")
        assert not deployment.control.awaiting_approval and deployment.control.approval_token is None
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version
        with pytest.raises(ControlStateError):
            _ask(aws, "approve", by="carol")


def test_an_approval_promotes_after_one_fresh_assessment_and_verbs_during_the_wait_tell_the_truth(
    tmp_path: Path,
) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        with pytest.raises(ControlStateError, match="waits for approval"):
            _ask(aws, "pause", by="bob")  # a pause would not hold a canary whose approval promotes it
        first = _ask(aws, "approve", by="carol")
        assert first.changed and "one more assessment" in first.message
        again, promote = _ask(aws, "approve", by="dan"), _ask(aws, "promote", by="erin")  # idempotent
        # the promotion waits an assessment, which may land meanwhile (a simulated minute goes by in a moment)
        for outcome in (again, promote):
            assert not outcome.changed and outcome.message in ("already approved", "already promoted")
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert deployment.decision == "promoted" and not deployment.control.awaiting_approval
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
        trail = [e for e in DeploymentRepository().audit_trail(DEP) if e.action in ("control_approve", "assessed")]
        approved = next(e for e in trail if e.action == "control_approve")
        # a fresh verdict after the approval (the simulated clock may not move between the two: same time)
        assert any(e.action == "assessed" and e.at >= approved.at for e in trail if e is not approved)


def test_an_approval_that_never_comes_holds_the_canary_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(canary_module, "APPROVAL_TTL", timedelta(minutes=20))  # 24 h, shortened
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.STOPPED, "held")
        assert deployment.decision_reason == "approval expired after 24 h"
        assert not deployment.control.awaiting_approval and deployment.control.approval_token is None
        assert "Canary Held For A Person" in _titles()
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version
        retried = _ask(aws, "retry", by="carol")  # held, so a person may start the last step again
        assert retried.changed and retried.message.startswith("step 3 starts again")


def test_a_promote_before_the_approval_gate_leads_to_the_gate(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        said: list[ControlOutcome] = []
        _at_minute(aws, 1, lambda: said.append(_ask(aws, "promote", by="mallory")))
        worker, result = _in_background(aws, request)
        waiting = _until(_waiting_for_approval)
        assert said and "waits for approval" in said[0].message
        assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.1}
        assert not waiting.control.promote_requested and _until(lambda: _actions("approval_requested"))
        assert _ask(aws, "approve", by="carol").changed
        worker.join(60)
        assert result["status"] == "SUCCEEDED" and DeploymentRepository().get_deployment(DEP).decision == "promoted"


def test_an_abort_during_the_last_assess_ends_the_execution_without_a_wait_or_an_announcement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        original = canary_module.CanaryController.assess
        aborted: list[ControlOutcome] = []

        def assess(self: Any, state: Any, awaiting: bool = False) -> Any:
            out = original(self, state, awaiting)
            if out.next == "await_approval" and not aborted:  # the abort lands after Assess decided to wait
                aborted.append(_ask(aws, "abort", by="bob"))
            return out

        monkeypatch.setattr(canary_module.CanaryController, "assess", assess)
        worker, result = _in_background(aws, request)
        worker.join(60)
        assert result["status"] == "SUCCEEDED"  # not a 24 h wait on a token nobody holds
        assert aborted and aborted[0].changed
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
        assert not deployment.control.awaiting_approval and deployment.control.approval_token is None
        assert "Canary Waiting For Approval" not in _titles() and "Rollback Failed" not in _titles()
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_an_approval_after_a_pause_that_slipped_in_before_the_wait_still_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=True)) as aws:
        request, target = _prepare(aws)
        original = canary_module.CanaryController.assess
        paused: list[ControlOutcome] = []

        def assess(self: Any, state: Any, awaiting: bool = False) -> Any:
            out = original(self, state, awaiting)
            if out.next == "await_approval" and not awaiting and not paused:  # before the token is stored
                paused.append(_ask(aws, "pause", by="bob"))
            return out

        monkeypatch.setattr(canary_module.CanaryController, "assess", assess)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        assert paused and paused[0].changed
        assert _ask(aws, "approve", by="carol").changed  # the approval is the decision: it lifts the pause
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        assert DeploymentRepository().get_deployment(DEP).decision == "promoted"
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
