"""A canary whose judge passes (it tolerates the revenue drop: a gauge's smallest effect set at 200%) while an
alert asks people whether to roll it back (``business-impact``: revenue down, a rollback in approval mode):
the promotion hold's tests (deployguard.workflows.promotion_hold) drive it through the real path: the Shop
metrics in the embedded CloudWatch, the canary state machine, the alert engine and remediation, the minute
tick, and a person's answer while the canary runs (a listener of the simulated clock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alert_rules_support import ShopBehaviour, service_config

from deployguard.models import AuditEntry, EventType
from deployguard.remediation.models import Approval, ApprovalStatus
from deployguard.remediation.store import RemediationStore
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime

REVENUE_DOWN = ShopBehaviour(revenue_per_conversion=20.0)  # half the stable version's revenue per conversion
DEP = "dep-revenue"


def tolerant(**judge: Any) -> dict[str, Any]:
    """The ``revenue`` service: its judge tolerates the revenue drop the ``business-impact`` rule pages on."""
    config = service_config("revenue")
    config["judge"]["min_effect"] = {"gauge_relative": 2.0}
    config["judge"].update(judge)
    return config


def requests(deployment_id: str = DEP) -> list[Approval]:
    return RemediationStore(DeploymentRepository()).approvals_of(deployment_id)


def asked(deployment_id: str = DEP) -> list[datetime]:
    """When people were asked to approve a remediation of the deployment (the ``approval_requested`` alerts)."""
    return [
        e.at for e in DeploymentRepository().events(deployment_id)
        if e.event_type == EventType.ALERT and e.details.get("kind") == "approval_requested"
    ]  # fmt: skip


def trail(deployment_id: str = DEP, *actions: str) -> list[AuditEntry]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if not actions or e.action in actions]


class Person:
    """Answers the rollback request ``after`` the promotion hold began (None: as soon as it is asked, hold or
    not), once: ``approve`` True says yes, False no."""

    def __init__(self, approve: bool, after: timedelta | None = timedelta(minutes=2)) -> None:
        self.approve, self.after = approve, after
        self.hold_began: datetime | None = None
        self.answered_at: datetime | None = None

    def on_clock(self, before: datetime, after: datetime) -> None:
        if self.answered_at is not None:
            return
        if self.after is None:
            self._answer(after)
            return
        if self.hold_began is None:
            began = trail(DEP, "promotion_held")
            self.hold_began = began[0].at if began else None
            return
        if after - self.hold_began >= self.after:
            self._answer(after)

    def _answer(self, after: datetime) -> None:
        for approval in requests():
            if approval.status == ApprovalStatus.PENDING:
                runtime.alert_engine().remediation.decide(approval.approval_id, "carol", approve=self.approve,
                                                          notes="looked at revenue")  # fmt: skip
                self.answered_at = after
