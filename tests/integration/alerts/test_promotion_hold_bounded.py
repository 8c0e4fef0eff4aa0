"""The promotion hold is bounded (review of the first hold: a rejected or unanswered request asked again held
the canary at its weight without end). A canary whose rollback request is pending is held at its weight and
assessed every period; a rejection lets it promote, and later alerts of the incident do not ask again (so
the hold does not begin anew); nobody answering ends it after the canary's own bound
(``judge.max_inconclusive_periods`` x ``canary.assessment_interval_seconds``: 2 x 60 s here) with its
``judge.on_no_evidence`` outcome, alias back at stable; a failing verdict while held rolls it back as
usual. One audit entry when the hold begins, one when it ends (with why). The real path:
promotion_hold_support.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alert_rules_support import run_canary, shop_stack
from promotion_hold_support import DEP, REVENUE_DOWN, Person, asked, requests, tolerant, trail
from suppression_support import alerting_stack

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus
from deployguard.remediation.models import ApprovalStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.traffic import VersionBehaviour

# business-impact without its 5-minute cooldown: every look of the revenue drop is an announced alert of the
# same incident, which would ask people again once they said no (the approval's request marker is released)
LOUD = {"rules": [{"name": "business-impact", "description": "revenue down", "severity": "critical",
                   "expression": "conversion_rate_drop > 15% or revenue_per_minute decrease > 20% vs baseline",
                   "group": "business", "cooldown_seconds": 0}]}  # fmt: skip


def test_a_rejected_request_ends_the_hold_the_canary_promotes_and_it_is_not_asked_again() -> None:
    with alerting_stack({"revenue": tolerant()}, LOUD) as (aws, _receivers):
        person = Person(approve=False)
        assert aws.clock is not None
        aws.clock.listeners.append(person.on_clock)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert person.hold_began is not None and person.answered_at is not None
        record = DeploymentRepository().get_deployment(DEP)
        assert record.decision == "promoted"
        assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0
        promoted_at = trail(DEP, "promoted")[0].at
        assert promoted_at >= person.answered_at  # not before the person said no
        # asked once: the later alerts of the incident (announced, no cooldown) did not ask again
        assert len(asked()) == 1
        assert [a.status for a in requests()] == [ApprovalStatus.REJECTED]
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        assert ended[0].details["outcome"] == "promoted" and "rejected by carol" in ended[0].reason
        assert "held at 50%" in began[0].reason
        looks = [e for e in trail(DEP, "assessed") if began[0].at <= e.at <= ended[0].at]
        assert len(looks) >= 2  # assessed every period while it held


@pytest.mark.parametrize(("on_no_evidence", "status"), [("hold", DeploymentStatus.STOPPED),
                                                         ("rollback", DeploymentStatus.ROLLED_BACK)])  # fmt: skip
def test_nobody_answering_ends_the_hold_after_the_canarys_bound_with_its_on_no_evidence_outcome(
    on_no_evidence: str, status: DeploymentStatus
) -> None:
    with shop_stack([], {"revenue": tolerant(on_no_evidence=on_no_evidence)}) as (aws, _receivers):
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        record = DeploymentRepository().get_deployment(DEP)
        assert record.status == status and record.decision == ("held" if on_no_evidence == "hold" else "rolled_back")
        assert "not promoted: nobody answered rollback request" in (record.decision_reason or "")
        assert not trail(DEP, "promoted")
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        held_for = ended[0].at - began[0].at
        assert timedelta(seconds=120) <= held_for < timedelta(seconds=240)  # 2 periods of 60 s, then one look
        assert [a.status for a in requests()] == [ApprovalStatus.PENDING]  # still asked: nobody answered


def test_a_canary_that_starts_failing_while_held_rolls_back_as_usual_and_the_hold_ends_once() -> None:
    with shop_stack([], {"revenue": tolerant(max_inconclusive_periods=10)}) as (aws, _receivers):
        failing_from_minute_5 = VersionBehaviour(regress_at=5, regressed_error_rate=0.2)
        _execution, target = run_canary(aws, "revenue", failing_from_minute_5, REVENUE_DOWN)
        record = DeploymentRepository().get_deployment(DEP)
        assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
        assert not trail(DEP, "promoted")
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        assert ended[0].details["outcome"] == "rolled_back" and "the canary ended" in ended[0].reason
        failing = [e for e in trail(DEP, "assessed") if e.details.get("decision") == "failing"]
        assert failing and began[0].at < failing[0].at <= ended[0].at  # judged failing while held


def test_a_request_that_expired_unanswered_is_not_asked_again_and_the_canary_is_not_promoted() -> None:
    alerting = {**LOUD, "remediation": {"approval_ttl_seconds": 60}}  # the question lapses after a minute
    with alerting_stack({"revenue": tolerant()}, alerting) as (aws, _receivers):
        aws.follow_schedules(["AssessorFunction"])  # the minute tick expires the request nobody answered
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert [a.status for a in requests()] == [ApprovalStatus.EXPIRED]
        assert len(asked()) == 1  # the later alerts of the incident (announced, no cooldown) did not ask again
        record = DeploymentRepository().get_deployment(DEP)
        assert (record.status, record.decision) == (DeploymentStatus.STOPPED, "held")  # on_no_evidence: hold
        assert "nobody answered rollback request" in (record.decision_reason or "")
        assert "before it expired" in (record.decision_reason or "")
        assert not trail(DEP, "promoted")
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        assert len(trail(DEP, "promotion_refused")) == 1 and not trail(DEP, "promotion_held")
