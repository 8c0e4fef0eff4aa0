"""A retry of a held canary whose StartExecution fails for good (Step Functions throttles every attempt, through
botocore's hooks on the embedded AWS): the record is held again as it was, with why and when it was held and its
flags, not a hold with no reason and no end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from control_support import control_service

from deployguard import clock
from deployguard.exceptions import StepFunctionsError
from deployguard.models import CanaryControl, Deployment, DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import sample_handler

HELD_BECAUSE = "no conclusive evidence after 5 extra assessments at 10%"


def test_a_retry_that_does_not_start_leaves_the_hold_as_it_was(embedded: Any, faults: Any) -> None:
    versions = embedded.deploy_sample_function("quiet-api", "live", sample_handler)
    target = LambdaTarget(function_name="quiet-api", alias="live", stable_version=versions[0], new_version=versions[1])
    ended = clock.now() - timedelta(minutes=20)
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-quiet", service="quiet-api", environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.STOPPED, decision="held", decision_reason=HELD_BECAUSE,
                   phase=Phase.FAILED, started_at=ended - timedelta(minutes=30), ended_at=ended,
                   control=CanaryControl(paused=True, last_action="pause", last_actor="alice", last_action_at=ended))
    )  # fmt: skip
    plan = faults.on("stepfunctions", "StartExecution", ["throttle"] * 20)
    with pytest.raises(StepFunctionsError):
        control_service(embedded).apply("dep-quiet", ControlRequest(verb="retry", actor="frank", reason="again"))
    assert plan.injected
    faults.clear()
    record = DeploymentRepository().get_deployment("dep-quiet")
    assert (record.status, record.decision, record.phase) == (DeploymentStatus.STOPPED, "held", Phase.FAILED)
    assert (record.decision_reason, record.ended_at) == (HELD_BECAUSE, ended)
    assert (record.control.paused, record.control.last_action, record.control.unreported) == (True, "pause", [])
    assert record.phase_history[-1].reason == "the retry did not start"
    attempts = [e for e in DeploymentRepository().audit_trail("dep-quiet") if e.action == "control_retry"]
    assert [e.details["outcome"] for e in attempts] == ["failed"]

    retried = control_service(embedded).apply("dep-quiet", ControlRequest(verb="retry", actor="frank", reason="now"))
    assert retried.changed  # held as before: it can be retried again
