"""A promotion hold does not use up an ``approval_before_full_traffic`` approval (review of the first hold: held
after the approval gate, the canary went back to Assess, which sent it to the gate again and took the approval
back: nobody approves twice, so it waited 24 h and ended held). Here a person approves 100% while a rollback
request is pending; Promote holds; the rollback request is rejected two minutes later; the canary promotes on
the approval it was given, without a second gate. The real path: promotion_hold_support.py, the person's
approve through the control verbs (the canary's task token answered)."""

from __future__ import annotations

from datetime import datetime

from alert_rules_support import run_canary, shop_stack
from control_support import control_service
from promotion_hold_support import DEP, REVENUE_DOWN, Person, requests, tolerant, trail

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.remediation.models import ApprovalStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.traffic import VersionBehaviour


class Approver:
    """Approves 100% at the canary's gate once a rollback request is pending (so Promote then holds). A second
    gate would mean the approval was taken back: it is noted and the canary aborted (the test ends at once)."""

    def __init__(self, aws: object) -> None:
        self.aws = aws
        self.approved_at: datetime | None = None
        self.gates_after_approval = 0

    def on_clock(self, before: datetime, after: datetime) -> None:
        record = DeploymentRepository().find_deployment(DEP)
        if record is None or record.status.is_terminal or not record.control.awaiting_approval:
            return
        if not record.control.approval_token:
            return
        if self.approved_at is not None:
            self.gates_after_approval += 1
            self._ask("abort", "asked to approve again")
            return
        if any(a.status == ApprovalStatus.PENDING for a in requests()):
            self._ask("approve", "healthy at 50%")
            self.approved_at = after

    def _ask(self, verb: str, reason: str) -> None:
        control_service(self.aws).apply(DEP, ControlRequest(verb=verb, actor="dana", reason=reason))  # type: ignore[arg-type]


def test_a_full_traffic_approval_given_before_the_hold_still_counts_after_it() -> None:
    service = tolerant()
    service["approval_before_full_traffic"] = True
    with shop_stack([], {"revenue": service}) as (aws, _receivers):
        approver, person = Approver(aws), Person(approve=False)
        assert aws.clock is not None
        aws.clock.listeners += [approver.on_clock, person.on_clock]
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert approver.approved_at is not None and person.answered_at is not None
        assert approver.gates_after_approval == 0
        assert len(trail(DEP, "approval_requested")) == 1  # one gate: the approval was not asked for again
        record = DeploymentRepository().get_deployment(DEP)
        assert record.decision == "promoted" and record.control.approved_by == "dana"
        assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        assert approver.approved_at <= began[0].at  # held after the gate's approval
        assert trail(DEP, "promoted")[0].at >= person.answered_at  # promoted once people said no to the rollback
