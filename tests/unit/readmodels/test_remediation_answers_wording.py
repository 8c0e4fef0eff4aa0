"""The timeline says a rollback asked of people, their answer and the canary's promotion hold in words (the audit
actions remediation_pending_approval / _approved / _rejected / _approval_expired, promotion_held /
promotion_hold_ended / promotion_refused), in the detail's and the report's timeline alike (readmodels.history);
other remediation entries as recorded ("<action> by <actor>")."""

from __future__ import annotations

from deployguard import clock
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.readmodels import DeploymentReader, timeline
from deployguard.storage.repository import DeploymentRepository


def test_answers_and_the_hold_are_said_in_words(repo: DeploymentRepository, sim_clock: clock.SimulatedClock) -> None:
    target = LambdaTarget(function_name="checkout", alias="live", stable_version="1", new_version="2")
    d = repo.create_deployment(Deployment(service="checkout", environment="production", version="2", target=target,
                                          status=DeploymentStatus.IN_PROGRESS))  # fmt: skip
    dep, ids = d.deployment_id, {"incident_id": "inc-1", "approval_id": "ap-1", "remediation_action": "rollback"}
    repo.audit(dep, "remediation_pending_approval", "deployguard:remediation", "rollback on lambda:checkout: point "
               "alias checkout:live at 100% version 1", **ids)  # fmt: skip
    sim_clock.advance(60)
    repo.audit(dep, "promotion_held", "deployguard:canary-state-machine", "promotion held at 50%: people are asked",
               weight=50.0, approval_ids=["ap-1"])  # fmt: skip
    sim_clock.advance(60)
    repo.audit(dep, "remediation_rejected", "carol", "a blip", **ids)
    sim_clock.advance(1)
    repo.audit(dep, "promotion_hold_ended", "deployguard:canary-state-machine",
               "promotion hold ended (promoted): people said no", outcome="promoted")  # fmt: skip
    repo.audit(dep, "promotion_refused", "deployguard:canary-state-machine", "not promoted: people approved")
    repo.audit(dep, "remediation_approved", "dana", "", **ids)
    repo.audit(dep, "remediation_approval_expired", "deployguard:remediation", "not answered by 13:00", **ids)
    repo.audit(dep, "remediation_succeeded", "deployguard:remediation", "rollback done", **ids)
    said = [(i.title, i.detail, i.severity) for i in timeline(DeploymentReader(repo).history(dep))
            if i.kind == "remediation"]  # fmt: skip
    assert said == [
        (
            "rollback asked of people for incident inc-1: waiting for an answer (request ap-1)",
            "rollback on lambda:checkout: point alias checkout:live at 100% version 1",
            "warning",
        ),
        (
            "promotion held at 50%: waiting for people's answer on a rollback",
            "promotion held at 50%: people are asked",
            "warning",
        ),
        ("rollback rejected by carol (request ap-1)", "notes: a blip", "info"),
        ("promotion hold ended: promoted", "promotion hold ended (promoted): people said no", "info"),
        ("promotion refused: people were asked to roll it back", "not promoted: people approved", "warning"),
        ("rollback approved by dana (request ap-1)", "", "warning"),
        ("rollback request expired unanswered (request ap-1)", "not answered by 13:00", "warning"),
        ("remediation_succeeded by deployguard:remediation", "rollback done", "info"),
    ]
