"""A canary whose judge passes (it tolerates the revenue drop: a gauge's smallest effect set at 200%) but an
alert asks people whether to roll it back (``business-impact``: revenue down, a rollback in approval mode)
is not promoted before they answer: the promotion holds the
traffic where it is (audited ``promotion_waits_for_approval``). Rejected, it is promoted; approved, the
rollback ends it and it is never promoted. The real path: the Shop metrics in the embedded CloudWatch, the
canary state machine, the alert engine and remediation, a person's answer while the canary runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alert_rules_support import ShopBehaviour, run_canary, service_config, shop_stack

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.remediation.models import ApprovalStatus
from deployguard.remediation.store import RemediationStore
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.traffic import VersionBehaviour

REVENUE_DOWN = ShopBehaviour(revenue_per_conversion=20.0)  # half the stable version's revenue per conversion


def _tolerant() -> dict[str, Any]:
    config = service_config("revenue")
    config["judge"]["min_effect"] = {"gauge_relative": 2.0}
    return config


class _Answers:
    """A person who answers the rollback request two minutes after the promotion started waiting for it."""

    def __init__(self, deployment_id: str, approve: bool) -> None:
        self.deployment_id, self.approve = deployment_id, approve
        self.answered_at: datetime | None = None
        self.waiting_since: datetime | None = None

    def on_clock(self, before: datetime, after: datetime) -> None:
        if self.answered_at is not None:
            return
        repo = DeploymentRepository()
        if self.waiting_since is None:
            waits = [e for e in repo.audit_trail(self.deployment_id) if e.action == "promotion_waits_for_approval"]
            self.waiting_since = waits[0].at if waits else None
            return
        if after - self.waiting_since < timedelta(minutes=2):
            return
        for approval in RemediationStore(repo).open_approvals():
            if approval.deployment_id == self.deployment_id and approval.status == ApprovalStatus.PENDING:
                runtime.alert_engine().remediation.decide(approval.approval_id, "carol", approve=self.approve,
                                                          notes="looked at revenue")  # fmt: skip
                self.answered_at = after


def _actions(deployment_id: str) -> list[tuple[datetime, str]]:
    return [(e.at, e.action) for e in DeploymentRepository().audit_trail(deployment_id)]


def test_the_promotion_waits_for_a_rejected_rollback_request_then_goes_on() -> None:
    with shop_stack([], {"revenue": _tolerant()}) as (aws, _receivers):
        answers = _Answers("dep-revenue", approve=False)
        assert aws.clock is not None
        aws.clock.listeners.append(answers.on_clock)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert answers.waiting_since is not None and answers.answered_at is not None
        record = DeploymentRepository().get_deployment("dep-revenue")
        assert record.decision == "promoted"
        promoted_at = [at for at, action in _actions("dep-revenue") if action == "promoted"]
        assert promoted_at and promoted_at[0] >= answers.answered_at  # not before the person said no
        assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0


def test_an_approved_rollback_ends_the_canary_it_held_and_it_is_never_promoted() -> None:
    with shop_stack([], {"revenue": _tolerant()}) as (aws, _receivers):
        answers = _Answers("dep-revenue", approve=True)
        assert aws.clock is not None
        aws.clock.listeners.append(answers.on_clock)
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert answers.answered_at is not None
        record = DeploymentRepository().get_deployment("dep-revenue")
        assert record.decision != "promoted" and record.status.is_terminal
        assert "promoted" not in [action for _, action in _actions("dep-revenue")]
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
