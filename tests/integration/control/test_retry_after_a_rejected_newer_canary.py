"""A held canary (dep-held, version 1 -> 2) is still its service's newest release after a newer canary (dep-bad,
1 -> 3) was rejected at Validate (its pre-traffic smoke test failed: it never took traffic, the alias stayed on
version 1 and its claim was released). Review: ``retry``'s newest-deployment check counted dep-bad and refused to
retry the real newest canary ("no longer the newest ... deploy again"). A newer deployment that is still running,
or one that took traffic, still refuses it (tests/integration/control/test_retry_after_a_newer_release.py). The
real state machine on the embedded AWS, the retry through the control service."""

from __future__ import annotations

import time
from typing import Any

import pytest
from control_support import control_service

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

NAME = "quiet-api"  # not in the configuration: the defaults (smoke test before traffic, on_no_evidence: hold)


def _run(aws: Any, deployment_id: str, target: LambdaTarget) -> dict[str, Any]:
    execution = aws.run_state_machine(
        "CanaryStateMachine",
        {"deployment": {"deployment_id": deployment_id, "service": NAME, "version": target.new_version,
                        "target": target.model_dump()}},
    )  # fmt: skip
    aws.invoker.drain()
    return dict(execution)


def _held_then_rejected(aws: Any) -> tuple[LambdaTarget, LambdaTarget, list[bool]]:
    broken = [False]  # the function's answer to the smoke test: version 3 is broken

    def handler(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 503 if broken[0] else 200, "body": "{}"}

    versions = aws.deploy_sample_function(NAME, "live", handler, versions=3)
    held = LambdaTarget(function_name=NAME, alias="live", stable_version=versions[0], new_version=versions[1])
    bad = held.model_copy(update={"new_version": versions[2]})
    assert _run(aws, "dep-held", held)["status"] == "SUCCEEDED"  # no traffic: no evidence, held for a person
    repository = DeploymentRepository()
    assert repository.get_deployment("dep-held").decision == "held"
    aws.clock.advance(60)  # a minute later
    broken[0] = True
    assert _run(aws, "dep-bad", bad)["status"] == "SUCCEEDED"
    broken[0] = False
    rejected = repository.get_deployment("dep-bad")
    assert (rejected.status, rejected.decision) == (DeploymentStatus.FAILED, "validation_failed")
    assert rejected.started_at > repository.get_deployment("dep-held").ended_at  # type: ignore[operator]
    alias = LambdaTrafficShifter(held).current()
    assert (alias.function_version, alias.additional_weights) == (held.stable_version, {})
    return held, bad, broken


def test_a_held_canary_is_retried_after_a_newer_canary_was_rejected_before_any_traffic(embedded: Any) -> None:
    held, _bad, _broken = _held_then_rejected(embedded)
    traffic = LambdaTrafficSource(NAME, "live", 2000, {v: VersionBehaviour() for v in ("1", "2")}, seed=7)
    embedded.clock.listeners.append(traffic.on_clock)
    outcome = control_service(embedded).apply("dep-held", ControlRequest(verb="retry", actor="frank", reason="again"))
    assert outcome.changed and "starts again" in outcome.message, outcome.message
    assert "passed over the newer dep-bad (version 3, failed (validation_failed): it never took traffic)" in (
        outcome.message
    )
    repository = DeploymentRepository()
    said = [e.details.get("result") for e in repository.audit_trail("dep-held") if e.action == "control_retry"]
    assert said == [outcome.message]  # audited with what it passed over
    deadline = time.monotonic() + 120  # the retried execution runs on the embedded AWS's own threads
    while not repository.get_deployment("dep-held").status.is_terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    traffic.active = False
    embedded.invoker.drain()
    record = repository.get_deployment("dep-held")
    assert record.decision == "promoted", record.decision_reason  # the retried run, healthy, went to 100%
    assert LambdaTrafficShifter(held).current().weight_of(held.new_version) == 1.0
    assert repository.get_deployment("dep-bad").decision == "validation_failed"


def test_a_newer_canary_in_progress_still_refuses_the_retry(embedded: Any) -> None:
    """Only a newer deployment that ended before any traffic moved is passed over: one still running (here
    validating, before its first shift) owns the alias's future, and the retry is refused as before."""
    held, bad, _broken = _held_then_rejected(embedded)
    repository = DeploymentRepository()
    repository.create_deployment(
        Deployment(deployment_id="dep-next", service=NAME, environment="production", version=bad.new_version,
                   target=bad, status=DeploymentStatus.IN_PROGRESS)
    )  # fmt: skip
    with pytest.raises(ControlStateError, match=r"no longer the newest .*dep-next"):
        control_service(embedded).apply("dep-held", ControlRequest(verb="retry", actor="frank", reason="again"))
    assert repository.get_deployment("dep-held").decision == "held"
    assert LambdaTrafficShifter(held).current().function_version == held.stable_version
