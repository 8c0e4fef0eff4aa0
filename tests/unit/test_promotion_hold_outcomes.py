"""What Promote does with a deployment's rollback requests (deployguard.workflows.promotion_hold.look), every
state a request can be in, and the hold's bound from the canary's own configuration. The state machine runs
these through the embedded AWS in tests/integration/alerts/test_promotion_hold_*.py; here the cases those do
not reach: a request withdrawn before anyone was asked, one approved then refused as stale, a rejected one
next to a pending one, several incidents, and the bound's cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from deployguard.config import ServiceConfig
from deployguard.remediation.models import Approval, ApprovalStatus
from deployguard.workflows.promotion_hold import MAX_HOLD, bound, look

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIMIT = timedelta(minutes=10)


def _request(status: ApprovalStatus, *, by: str | None = None, expires_in: float = 3600, **more: Any) -> Approval:
    return Approval(incident_id=more.pop("incident_id", "inc-1"), deployment_id="dep-1", action="rollback",
                    target="lambda:f", description="roll f back", status=status, decided_by=by,
                    requested_at=NOW - timedelta(minutes=5), expires_at_time=NOW + timedelta(seconds=expires_in),
                    **more)  # fmt: skip


def test_a_yes_rolls_back_whatever_became_of_it_since() -> None:
    for status, result in [
        (ApprovalStatus.APPROVED, None),  # not run yet
        (ApprovalStatus.APPROVED, "failed (attempt 1/3): throttled; tried again at the next tick"),
        (ApprovalStatus.EXECUTED, "failed: throttled"),  # given up, a person paged
        (ApprovalStatus.EXPIRED, "refused: the target no longer routes what was approved"),  # approved, then stale
    ]:
        found = look([_request(status, by="carol", result=result)], NOW, None, LIMIT)
        assert found.outcome == "rollback" and "approved by carol" in found.reason, (status, found)
    pending_too = [_request(ApprovalStatus.PENDING), _request(ApprovalStatus.APPROVED, by="dan", incident_id="inc-2")]
    assert look(pending_too, NOW, NOW - timedelta(minutes=1), LIMIT).outcome == "rollback"  # a yes wins


def test_pending_holds_within_the_bound_and_then_is_no_evidence() -> None:
    pending = [_request(ApprovalStatus.PENDING)]
    assert look(pending, NOW, None, LIMIT).outcome == "hold"
    assert look(pending, NOW, NOW - LIMIT + timedelta(seconds=1), LIMIT).outcome == "hold"
    over = look(pending, NOW, NOW - LIMIT, LIMIT)
    assert over.outcome == "no_evidence" and "within the hold's bound of 600 s" in over.reason
    # a request asked later (another incident) does not restart the bound: it runs from the hold's beginning
    later = [*pending, _request(ApprovalStatus.PENDING, incident_id="inc-2")]
    assert look(later, NOW, NOW - LIMIT, LIMIT).outcome == "no_evidence"


def test_no_answer_is_no_yes_nor_a_no() -> None:
    lapsed = look([_request(ApprovalStatus.EXPIRED, expires_in=-60)], NOW, None, LIMIT)
    assert lapsed.outcome == "no_evidence" and "before it expired" in lapsed.reason
    # pending past its expiry, the minute tick not there yet to say so: the same
    assert look([_request(ApprovalStatus.PENDING, expires_in=-1)], NOW, None, LIMIT).outcome == "no_evidence"
    # a request withdrawn before anyone was asked (it could not be sent; a retry asks again) is none
    withdrawn = _request(ApprovalStatus.EXPIRED, result="the request could not be sent")
    assert look([withdrawn], NOW, None, LIMIT).outcome == "promote"


def test_a_no_promotes_unless_another_request_is_still_open() -> None:
    rejected = _request(ApprovalStatus.REJECTED, by="carol")
    found = look([rejected], NOW, NOW - timedelta(minutes=2), LIMIT)
    assert found.outcome == "promote" and "rejected by carol" in found.reason
    assert look([rejected, _request(ApprovalStatus.PENDING, incident_id="inc-2")], NOW, None, LIMIT).outcome == "hold"
    assert look([], NOW, None, LIMIT).outcome == "promote"


def test_the_bound_is_the_canarys_no_evidence_wait_capped_under_the_history_limit() -> None:
    service = ServiceConfig.model_validate({"canary": {"assessment_interval_seconds": 60},
                                            "judge": {"max_inconclusive_periods": 10}})  # fmt: skip
    assert bound(service) == timedelta(minutes=10)
    patient = ServiceConfig.model_validate({"canary": {"assessment_interval_seconds": 900},
                                            "judge": {"max_inconclusive_periods": 1000}})  # fmt: skip
    assert bound(patient) == MAX_HOLD == timedelta(hours=6)
    impatient = ServiceConfig.model_validate({"judge": {"max_inconclusive_periods": 0}})
    assert bound(impatient) == timedelta(0)
