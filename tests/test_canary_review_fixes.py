"""Review of the canary and approval paths (suspected bugs), each through the real path: the canary state machine
on the embedded AWS, the canary step handler (CanaryController), and the control verbs (CanaryControlService)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from canary_flow_support import CONFIG, DEP
from canary_flow_support import ask as _ask
from canary_flow_support import in_background as _in_background
from canary_flow_support import prepare as _prepare
from canary_flow_support import until as _until

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import canary as canary_module
from deployguard.workflows.control import ControlOutcome
from deployguard_local.emulator import EmbeddedAws, sample_handler


def _config(tmp_path: Path, **service: Any) -> Path:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-api"].update(service)
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


_HOOKS: list[tuple[Any, str, str]] = []


def _hook(events: Any, name: str, handler: Any) -> None:
    """A botocore event hook for this test only (unregistered after it: the clients outlive the test)."""
    unique = f"test-canary-review-{len(_HOOKS)}-{name}"
    events.register(name, handler, unique_id=unique)
    _HOOKS.append((events, name, unique))


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    yield
    while _HOOKS:
        events, name, unique = _HOOKS.pop()
        events.unregister(name, unique_id=unique)


def _waiting_for_approval() -> Deployment | None:
    found = DeploymentRepository().find_deployment(DEP)
    return found if found is not None and found.control.awaiting_approval and found.control.approval_token else None


def test_a_canary_held_for_missing_evidence_says_no_conclusive_evidence_once(tmp_path: Path) -> None:
    judge = {"max_inconclusive_periods": 1, "on_no_evidence": "hold"}
    with EmbeddedAws(config_file=_config(tmp_path, judge=judge)) as aws:
        versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)  # no traffic: no evidence
        target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        request = {"deployment": {"deployment_id": DEP, "service": "checkout-api", "version": versions[1],
                                  "target": target.model_dump()}}  # fmt: skip
        worker, result = _in_background(aws, request)
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.STOPPED, "held")
        reason = deployment.decision_reason or ""
        assert reason == (
            "no conclusive evidence after 1 extra assessment at 10%: not enough evidence: 0 canary invocations "
            "in 0 of 4 periods, need 50 invocations in 3 periods"
        )
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def _fail_the_next_record_write_after(aws: Any, call: str) -> list[str]:
    """The next DynamoDB PutItem this (the test's) thread makes after ``call`` (a Step Functions operation) fails
    with a throttle, once; the canary's tasks run in other threads and are left alone. Returns what it failed."""
    from deployguard.aws import clients

    armed, failed, me = [False], [], threading.current_thread()

    def arm(**_: Any) -> None:
        if threading.current_thread() is me:
            armed[0] = True

    def fail(**_: Any) -> None:
        if armed[0] and not failed and threading.current_thread() is me:
            failed.append("PutItem")
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}},
                              "PutItem")  # fmt: skip

    _hook(clients.client("stepfunctions").meta.events, f"after-call.states.{call}", arm)
    _hook(clients.resource("dynamodb").meta.client.meta.events, "before-call.dynamodb.PutItem", fail)
    return failed


def test_an_approval_whose_record_write_fails_after_the_token_is_answered_still_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(canary_module, "APPROVAL_TTL", timedelta(minutes=20))  # 24 h, shortened
    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        failed = _fail_the_next_record_write_after(aws, "SendTaskSuccess")
        try:
            first: ControlOutcome | None = _ask(aws, "approve", by="carol")
        except ClientError:
            first = None
        assert failed == ["PutItem"]  # the token was answered, then the record write failed
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
        assert first is not None and first.changed and "approved" in first.message  # the person was told so
        again = _ask(aws, "approve", by="dan")
        assert not again.changed and again.message in ("already approved", "already promoted")
        recorded = [e for e in DeploymentRepository().audit_trail(DEP) if e.action == "approval_recorded"]
        assert recorded and "carol" in recorded[0].reason


def test_a_second_approve_before_the_canary_records_the_first_is_told_so_not_an_aws_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a first approve whose record write failed and the canary's RecordApproval, the record still holds
    the used token: a second approve gets a 409 saying the wait has its answer, not Step Functions' error."""
    from deployguard.exceptions import ControlStateError
    from deployguard.workflows.control import CanaryControlService

    monkeypatch.setattr(canary_module, "APPROVAL_TTL", timedelta(minutes=20))
    original = CanaryControlService.approval_answered
    recording, go_on = threading.Event(), threading.Event()

    def approval_answered(self: Any, deployment_id: str, answer: object) -> bool:
        recording.set()
        go_on.wait(60)  # the canary's RecordApproval holds until the second approve was asked
        return original(self, deployment_id, answer)

    monkeypatch.setattr(CanaryControlService, "approval_answered", approval_answered)
    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        failed = _fail_the_next_record_write_after(aws, "SendTaskSuccess")
        assert _ask(aws, "approve", by="carol").changed and failed == ["PutItem"]
        assert recording.wait(60) and DeploymentRepository().get_deployment(DEP).control.approval_token
        from deployguard.aws import clients

        def used_token(**_: Any) -> None:  # what AWS answers for a used token (moto accepts it again)
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"}}, "SendTaskSuccess")

        _hook(clients.client("stepfunctions").meta.events, "before-call.states.SendTaskSuccess", used_token)
        with pytest.raises(ControlStateError, match="the approval wait already has its answer"):
            _ask(aws, "approve", by="dan")
        go_on.set()
        worker.join(120)
        assert result["status"] == "SUCCEEDED" and DeploymentRepository().get_deployment(DEP).decision == "promoted"
        assert LambdaTrafficShifter(target).current().function_version == target.new_version


def test_a_plain_promote_before_the_token_is_stored_is_not_read_as_the_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promote that lands after Assess decided to wait for approval but before the token wait has stored its
    token: the assessing branch must not take it for an approval (only control.approved() is one), or it ends
    while the token branch waits on, and the canary goes unassessed: here a regression must still roll back."""
    from deployguard.workflows.control import CanaryControlService

    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws, regress_at=14)  # healthy through the steps, bad from minute 14
        original_assess, original_wait = canary_module.CanaryController.assess, CanaryControlService.wait_for_approval
        promoted: list[ControlOutcome] = []
        throttled: list[int] = []

        def assess(self: Any, state: Any, awaiting: bool = False) -> Any:
            out = original_assess(self, state, awaiting)
            if out.next == "await_approval" and not awaiting and not promoted:  # before the token is stored
                promoted.append(_ask(aws, "promote", by="mallory"))
            return out

        def wait_for_approval(self: Any, deployment_id: str, task_token: str) -> Any:
            if len(throttled) < 4:  # Step Functions retries it (5 + 10 + 20 + 30 s): the first look comes first
                throttled.append(1)
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "UpdateItem")
            return original_wait(self, deployment_id, task_token)

        monkeypatch.setattr(canary_module.CanaryController, "assess", assess)
        monkeypatch.setattr(CanaryControlService, "wait_for_approval", wait_for_approval)
        worker, result = _in_background(aws, request)
        worker.join(60)
        assert promoted and "waits for approval" in promoted[0].message and len(throttled) == 4
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
        assert not (deployment.decision_reason or "").startswith(("approval expired", "DeployGuard."))
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_a_plain_promote_during_the_approval_wait_is_the_approval_and_both_branches_agree(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        outcome = _ask(aws, "promote", by="erin")
        assert outcome.changed and outcome.message.startswith("approved")
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.decision, deployment.control.last_action) == ("promoted", "approve")
        assert LambdaTrafficShifter(target).current().function_version == target.new_version


def _fail_after_the_next_alias_move() -> list[str]:
    """The next UpdateAlias lands, then its caller sees a timeout (the task dies after the move, before its
    record): once. Returns what it failed."""
    from botocore.exceptions import ReadTimeoutError

    from deployguard.aws import clients

    failed: list[str] = []

    def fail(**_: Any) -> None:
        if not failed:
            failed.append("UpdateAlias")
            raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com")

    _hook(clients.client("lambda").meta.events, "after-call.lambda.UpdateAlias", fail)
    return failed


def _pause(aws: Any, deployment_id: str) -> ControlOutcome:
    from control_support import control_service

    from deployguard.workflows.control import ControlRequest

    return control_service(aws).apply(deployment_id, ControlRequest(verb="pause", actor="bob", reason="look first"))


def test_a_promote_retried_after_a_pause_whose_first_attempt_moved_the_alias_records_the_promotion(
    tmp_path: Path,
) -> None:
    from control_support import canary_controller, canary_in_flight

    from deployguard.workflows.canary import CanaryState

    with EmbeddedAws() as aws:
        target = canary_in_flight(aws, "pay-api", weight=0.5)
        controller = canary_controller(aws)
        state = CanaryState(deployment_id="dep-pay-api", steps=[10, 25, 50], step_index=2, weight=50, target=target,
                            next="promote")  # fmt: skip
        failed = _fail_after_the_next_alias_move()
        with pytest.raises(Exception, match=r"Read timeout on endpoint"):
            controller.promote(state)  # the alias went to 100%, the record did not follow
        assert failed and LambdaTrafficShifter(target).current().function_version == target.new_version
        assert _pause(aws, "dep-pay-api").changed  # the person sees 50% on the record
        out = controller.promote(state)  # Step Functions' retry of Promote
        assert (out.next, out.decision, out.weight) == ("done", "promoted", 100.0)
        deployment = DeploymentRepository().get_deployment("dep-pay-api")
        assert (deployment.decision, deployment.canary_weight) == ("promoted", 1.0)
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
        trail = DeploymentRepository().audit_trail("dep-pay-api")
        assert not [e for e in trail if e.action == "traffic_held"]  # never "held at 50%" with the alias at 100%
        assert [e for e in trail if e.action == "pause_after_move"]


def test_a_shift_retried_after_a_pause_whose_first_attempt_moved_the_alias_holds_where_the_alias_is(
    tmp_path: Path,
) -> None:
    from control_support import canary_controller, canary_in_flight

    from deployguard.workflows.canary import CanaryState

    with EmbeddedAws() as aws:
        target = canary_in_flight(aws, "pay-api", weight=0.25)
        controller = canary_controller(aws)
        state = CanaryState(deployment_id="dep-pay-api", steps=[10, 25, 50], step_index=2, weight=25, target=target,
                            next="advance")  # fmt: skip
        failed = _fail_after_the_next_alias_move()
        with pytest.raises(Exception, match=r"Read timeout on endpoint"):
            controller.shift(state)  # the alias went to 50%, the record still says 25%
        assert failed and LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.5}
        assert _pause(aws, "dep-pay-api").changed
        out = controller.shift(state)  # Step Functions' retry of ShiftTraffic
        assert (out.next, out.weight, out.step_index) == ("wait", 50.0, 2)
        deployment = DeploymentRepository().get_deployment("dep-pay-api")
        assert (deployment.canary_weight, deployment.step_index, deployment.control.paused) == (0.5, 2, True)
        assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.5}
        held = [e.reason for e in DeploymentRepository().audit_trail("dep-pay-api") if e.action == "traffic_held"]
        assert not [r for r in held if "held at 25%" in r]  # never claims the 25% the alias no longer routes


def test_a_paused_shift_whose_alias_is_elsewhere_records_the_alias_real_weight(tmp_path: Path) -> None:
    from control_support import canary_controller, canary_in_flight

    from deployguard.workflows.canary import CanaryState

    with EmbeddedAws() as aws:
        target = canary_in_flight(aws, "pay-api", weight=0.25)
        controller = canary_controller(aws)
        LambdaTrafficShifter(target).shift(0.1)  # routed elsewhere than the record says (neither 25% nor 50%)
        assert _pause(aws, "dep-pay-api").changed
        state = CanaryState(deployment_id="dep-pay-api", steps=[10, 25, 50], step_index=2, weight=25, target=target,
                            next="advance")  # fmt: skip
        out = controller.shift(state)
        assert (out.next, out.weight) == ("wait", 10.0)
        assert DeploymentRepository().get_deployment("dep-pay-api").canary_weight == 0.1
        held = [e.reason for e in DeploymentRepository().audit_trail("dep-pay-api") if e.action == "traffic_held"]
        assert held and "held at 10%" in held[-1] and "the record said 25%" in held[-1]


def test_an_approval_survives_a_later_skip_analysis_and_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verb after the approval (here skip_analysis, which rewrites the record's last action) must not undo
    it: the wait's next assessment promotes (it once waited on for 24 h and held, the approval lost)."""
    monkeypatch.setattr(canary_module, "APPROVAL_TTL", timedelta(minutes=20))
    original = canary_module.CanaryController.assess
    gate = threading.Event()

    def assess(self: Any, state: Any, awaiting: bool = False) -> Any:
        if awaiting:  # the wait's assessments look only after both verbs landed
            gate.wait(60)
        return original(self, state, awaiting)

    monkeypatch.setattr(canary_module.CanaryController, "assess", assess)
    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        assert _ask(aws, "approve", by="carol").changed
        assert _ask(aws, "skip_analysis", by="dave").changed
        gate.set()
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
        assert deployment.control.approved_by == "carol"
        assert LambdaTrafficShifter(target).current().function_version == target.new_version


def test_an_approval_the_canary_records_before_the_person_does_is_still_theirs(tmp_path: Path) -> None:
    """Step Functions takes the answer; the canary's RecordApproval records it (token cleared) before the person's
    own record write: that person is told "approved", not "already approved" (a race seen under load)."""
    from deployguard.aws import clients

    with EmbeddedAws(config_file=_config(tmp_path, approval_before_full_traffic=True)) as aws:
        request, target = _prepare(aws)
        worker, result = _in_background(aws, request)
        _until(_waiting_for_approval)
        me = threading.current_thread()

        def canary_first(**_: Any) -> None:  # the person's thread waits until the canary recorded the approval
            if threading.current_thread() is me:
                _until(lambda: DeploymentRepository().get_deployment(DEP).control.approved_by or None)

        _hook(clients.client("stepfunctions").meta.events, "after-call.states.SendTaskSuccess", canary_first)
        said = _ask(aws, "approve", by="carol")
        assert said.changed and said.message.startswith("approved"), said.message
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert deployment.decision == "promoted" and deployment.control.approved_by == "carol"
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
