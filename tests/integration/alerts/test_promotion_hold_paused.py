"""A person's pause during a promotion hold (review: the hold's clock ran on while the canary was paused, so the
first look after the person resumed found the hold's bound long past and ended the canary with
``judge.on_no_evidence``'s outcome at once, rolled back for a pause). The time a person holds the canary paused
does not count against the hold's bound (``judge.max_inconclusive_periods`` x ``canary.assessment_interval_seconds``:
2 x 60 s here); the hold goes on once resumed, and ends as before when nobody answers within it. The real path:
promotion_hold_support.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alert_rules_support import run_canary, shop_stack
from control_support import control_service
from promotion_hold_support import DEP, REVENUE_DOWN, Person, requests, tolerant, trail
from suppression_support import alerting_stack
from test_promotion_hold_bounded import LOUD

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus
from deployguard.remediation.models import ApprovalStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.traffic import VersionBehaviour

PAUSED_FOR = timedelta(minutes=3)


class Pauser:
    """Pauses the canary as soon as its promotion hold began, and resumes it ``PAUSED_FOR`` later."""

    def __init__(self, aws: Any) -> None:
        self.aws = aws
        self.paused_at: datetime | None = None
        self.resumed_at: datetime | None = None
        self.ended_while_paused: list[str] = []

    def on_clock(self, _before: datetime, after: datetime) -> None:
        if self.resumed_at is not None:
            return
        if self.paused_at is None:
            if trail(DEP, "promotion_held"):
                self._ask("pause")
                self.paused_at = after
            return
        record = DeploymentRepository().get_deployment(DEP)
        if record.status.is_terminal:
            self.ended_while_paused.append(str(record.decision))
            self.resumed_at = after
            return
        if after - self.paused_at >= PAUSED_FOR:
            self._ask("resume")
            self.resumed_at = after

    def _ask(self, verb: str) -> None:
        outcome = control_service(self.aws).apply(DEP, ControlRequest(verb=verb, actor="erin", reason="looking"))  # type: ignore[arg-type]
        assert outcome.changed, outcome.message


def test_paused_time_does_not_count_against_the_hold_and_it_ends_after_its_bound_once_resumed() -> None:
    with shop_stack([], {"revenue": tolerant(on_no_evidence="rollback")}) as (aws, _receivers):
        assert aws.clock is not None
        pauser = Pauser(aws)
        aws.clock.listeners.append(pauser.on_clock)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert pauser.paused_at is not None and pauser.resumed_at is not None
        assert not pauser.ended_while_paused
        record = DeploymentRepository().get_deployment(DEP)
        assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
        assert "within the hold's bound" in str(record.decision_reason)
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        # not at the first look after the resume: the hold's 120 s, the paused time not counted
        held_unpaused = (ended[0].at - began[0].at) - (pauser.resumed_at - pauser.paused_at)
        assert timedelta(seconds=120) <= held_unpaused < timedelta(seconds=240), held_unpaused
        assert ended[0].at - pauser.resumed_at >= timedelta(seconds=60)
        assert "paused" in ended[0].reason  # the end says the paused time was not counted
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        assert [a.status for a in requests()] == [ApprovalStatus.PENDING]


def test_a_person_who_resumes_a_paused_hold_can_still_answer_and_the_canary_is_promoted() -> None:
    """The rollback request rejected a minute after the resume (the hold's bound long past in wall time, not in
    unpaused time): promoted, as a rejection within the bound is."""
    with alerting_stack({"revenue": tolerant(on_no_evidence="rollback")}, LOUD) as (aws, _receivers):
        assert aws.clock is not None
        pauser = Pauser(aws)
        person = Person(approve=False, after=None)
        answering = [False]

        def answer_after_resume(before: datetime, after: datetime) -> None:
            if pauser.resumed_at is not None and after - pauser.resumed_at >= timedelta(seconds=30):
                answering[0] = True
            if answering[0]:
                person.on_clock(before, after)

        aws.clock.listeners.append(pauser.on_clock)
        aws.clock.listeners.append(answer_after_resume)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert pauser.resumed_at is not None and person.answered_at is not None
        assert not pauser.ended_while_paused
        record = DeploymentRepository().get_deployment(DEP)
        assert record.decision == "promoted", record.decision_reason
        assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0
        ended = trail(DEP, "promotion_hold_ended")
        assert [e.details["outcome"] for e in ended] == ["promoted"]
        assert trail(DEP, "promoted")[0].at >= person.answered_at
