"""People said yes to rolling the canary back, but the rollback is not done: the release must not promote
(review of the first hold: an approved rollback that then failed ended its request, and the next Promote
went to 100%). An approved request whose rollback has failed for good (every attempt's UpdateAlias
throttled: given up, a person paged, the request ``executed``), or has not run yet, sends the canary to its
own Rollback (the alias back at stable), never to Promote. The remediation's UpdateAlias calls are failed
with a botocore hook on the functions' calls (the canary's own rollback is left alone). The real path:
promotion_hold_support.py."""

from __future__ import annotations

import inspect
from typing import Any

from alert_rules_support import run_canary, shop_stack
from promotion_hold_support import DEP, REVENUE_DOWN, Person, requests, tolerant, trail
from tick_support import function_faults

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus
from deployguard.remediation.models import ApprovalStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.traffic import VersionBehaviour


def _the_remediations(_request: Any) -> bool:
    """The UpdateAlias of the remediation's rollback (LambdaRollback.execute), not the canary's."""
    return any(f.function == "execute" and f.filename.endswith("remediation/actions.py") for f in inspect.stack())


def _rolled_back_by_the_canary(target: Any) -> None:
    record = DeploymentRepository().get_deployment(DEP)
    assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    assert (record.decision_reason or "").startswith("not promoted: people approved rolling it back: rollback request")
    assert not trail(DEP, "promoted")
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})


def test_a_rollback_approved_during_the_hold_whose_own_run_fails_rolls_the_canary_back_not_promoted() -> None:
    with shop_stack([], {"revenue": tolerant()}) as (aws, _receivers), function_faults(aws) as faults:
        plan = faults.on("lambda", "UpdateAlias", [], then="throttle", when=_the_remediations)
        person = Person(approve=True)
        assert aws.clock is not None
        aws.clock.listeners.append(person.on_clock)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert person.answered_at is not None and plan.injected >= 1  # approved, and its own rollback failed
        _rolled_back_by_the_canary(target)
        began, ended = trail(DEP, "promotion_held"), trail(DEP, "promotion_hold_ended")
        assert len(began) == 1 and len(ended) == 1, (began, ended)
        assert ended[0].details["outcome"] == "rolled_back" and "approved by carol" in ended[0].reason
        assert ended[0].at >= person.answered_at


def test_a_rollback_approved_before_the_promotion_that_failed_for_good_still_keeps_it_from_promoting() -> None:
    service = tolerant()
    service["canary"]["step_duration_seconds"] = 600  # the approved rollback fails for good well before Promote
    with shop_stack([], {"revenue": service}) as (aws, _receivers), function_faults(aws) as faults:
        plan = faults.on("lambda", "UpdateAlias", [], then="throttle", when=_the_remediations)
        person = Person(approve=True, after=None)
        assert aws.clock is not None
        aws.clock.listeners.append(person.on_clock)
        aws.follow_schedules(["AssessorFunction"])  # the minute tick tries the approved rollback again
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert person.answered_at is not None and plan.injected >= 3  # every attempt (max_attempts 3) failed
        first = requests()[0]
        assert first.status == ApprovalStatus.EXECUTED and first.decided_by == "carol"  # given up: no longer open
        assert trail(DEP, "approved_remediation_failed")  # and a person was paged
        _rolled_back_by_the_canary(target)
        refused = trail(DEP, "promotion_refused")
        assert len(refused) == 1 and first.approval_id in refused[0].reason
        assert not trail(DEP, "promotion_held")  # nothing to wait for: people had answered
