"""An alert its rule's cooldown holds back still runs the automatic remediation (a stop never waits on a
cooldown), but never asks people again: a rollback whose approval a person rejected is not asked for again
at each minute's held-back alert (review: a new approval request was announced every minute)."""

from __future__ import annotations

from datetime import datetime

from suppression_support import alerting_stack, regressing_rollout

from deployguard.models import EventType
from deployguard.remediation.models import ApprovalStatus
from deployguard.remediation.store import RemediationStore
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime

SERVICES = {"payments-api": {"environment": "production", "function_name": "payments-api"}}
ALERTING = {
    "rules": [{"name": "canary-issue", "description": "off", "expression": 'event == "never"', "severity": "critical",
               "group": "canary"}],
    "remediation": {"plans": [{"rules": ["high-error-rate"], "actions": [{"action": "rollback", "mode": "approval"}]}]},
}  # fmt: skip


def test_a_rejected_rollback_is_not_asked_again_at_each_held_back_alert() -> None:
    with alerting_stack(SERVICES, ALERTING) as (aws, _receivers):
        rejected: list[datetime] = []

        def reject(before: datetime, after: datetime) -> None:  # the on-call person says no to every request
            for approval in RemediationStore(DeploymentRepository()).open_approvals():
                if approval.status == ApprovalStatus.PENDING:
                    runtime.alert_engine().remediation.decide(approval.approval_id, "carol", approve=False,
                                                              notes="not now")  # fmt: skip
                    rejected.append(after)

        assert aws.clock is not None
        aws.clock.listeners.append(reject)
        result, _target = regressing_rollout(aws, "payments-api")
        asks = [
            e for e in DeploymentRepository().events(result.deployment_id)
            if e.event_type == EventType.ALERT and e.details.get("kind") == "approval_requested"
        ]  # fmt: skip
        assert len(asks) == 1 and len(rejected) == 1
        assert not [e for e in asks if e.at > rejected[0]]
