"""One canary at a time per Lambda alias: Validate claims the alias, a second canary of it is refused (naming the
first) before any traffic moves, and the claim never outlives the canary. Through the real CanaryStepFunction
handler on the embedded AWS, as the state machine runs it (a Validate that fails goes to Rollback, then
NotifyOutcome)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alias_race_support import EXECUTION, audit_actions, request, step
from control_support import control_service
from tick_support import minute_tick

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import alias_claim
from deployguard.workflows.control import ControlRequest
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws, sample_handler


def two_targets(aws: EmbeddedAws) -> tuple[LambdaTarget, LambdaTarget]:
    v = aws.deploy_sample_function("svc", "live", sample_handler, versions=3)
    return (
        LambdaTarget(function_name="svc", alias="live", stable_version=v[0], new_version=v[1]),
        LambdaTarget(function_name="svc", alias="live", stable_version=v[0], new_version=v[2]),
    )


def refused_validate(aws: EmbeddedAws, deployment_id: str, target: LambdaTarget) -> dict[str, Any]:
    """Validate refused: the state the state machine's Catch gives Rollback (the request, the error)."""
    req = request(deployment_id, target)
    out, errored = step(aws, "validate", req, EXECUTION + deployment_id)
    assert errored and out["errorType"] == "InvalidEventError", out
    return {**req, "error": {"Error": out["errorType"], "Cause": out["errorMessage"]}}


def rollback_and_notify(aws: EmbeddedAws, deployment_id: str, caught: dict[str, Any]) -> dict[str, Any]:
    """What the state machine runs after a Validate that failed: Rollback, then NotifyOutcome."""
    rolled, errored = step(aws, "rollback", caught, EXECUTION + deployment_id)
    assert not errored, rolled
    notified, errored = step(aws, "notify", rolled)
    assert not errored, notified
    return dict(rolled)


def test_a_second_canary_of_the_alias_is_refused_naming_the_first(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        a, b = two_targets(aws)
        sa, errored = step(aws, "validate", request("dep-A", a), EXECUTION + "A")
        assert not errored and sa["next"] == "shift"
        caught = refused_validate(aws, "dep-B", b)  # both would see the alias on the stable version
        assert "claimed by deployment dep-A" in caught["error"]["Cause"]
        sa, _ = step(aws, "shift", sa)  # A goes on: its first step is on the alias when B's Rollback runs
        shifter = LambdaTrafficShifter(a)
        assert shifter.current().routes(a, sa["weight"] / 100)
        assert rollback_and_notify(aws, "dep-B", caught)["decision"] == "rejected"
        assert shifter.current().routes(a, sa["weight"] / 100)  # B's Rollback left A's alias alone

        repo = DeploymentRepository()
        record_b = repo.get_deployment("dep-B")
        assert (record_b.status, record_b.decision) == (DeploymentStatus.FAILED, "rejected")
        assert "dep-A" in (record_b.decision_reason or "")
        claim_refused = [e for e in repo.audit_trail("dep-B") if e.action == "alias_claim_refused"]
        assert len(claim_refused) == 1 and claim_refused[0].details["holder"] == "dep-A"
        assert "traffic_shifted" not in audit_actions("dep-B")

        out, errored = step(aws, "promote", {**sa, "next": "promote"})
        assert not errored and out["decision"] == "promoted"
        alias = shifter.current()
        assert (alias.function_version, alias.additional_weights) == (a.new_version, {})
        assert alias_claim.holder_of(repo, a) is None  # released when A ended


def test_the_claim_is_released_when_the_canary_ends(tmp_path: Path) -> None:
    """Promoted, aborted or rejected by its own pre-traffic checks: the next canary of the alias may start."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        a, b = two_targets(aws)
        repo = DeploymentRepository()
        step(aws, "validate", request("dep-A", a), EXECUTION + "A")
        assert alias_claim.holder_of(repo, a) == "dep-A"
        step(aws, "validate", request("dep-A", a), EXECUTION + "A")  # a retried Validate: its own claim
        assert alias_claim.holder_of(repo, a) == "dep-A"
        aborted = control_service(aws).apply("dep-A", ControlRequest(verb="abort", actor="bob", reason="not today"))
        assert aborted.changed
        assert alias_claim.holder_of(repo, a) is None
        sb, errored = step(aws, "validate", request("dep-B", b), EXECUTION + "B")
        assert not errored and sb["next"] == "shift"
        assert alias_claim.holder_of(repo, b) == "dep-B"


def test_a_claim_whose_release_never_ran_does_not_block_the_alias(tmp_path: Path) -> None:
    """The holder's record ended without releasing (a crash between the two, an end written elsewhere): the
    next canary takes the claim over."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        a, b = two_targets(aws)
        repo = DeploymentRepository()
        step(aws, "validate", request("dep-A", a), EXECUTION + "A")

        def ended(d: Any) -> None:
            d.status, d.decision = DeploymentStatus.ROLLED_BACK, "rolled_back"

        repo.update_deployment("dep-A", ended)
        assert alias_claim.holder_of(repo, a) == "dep-A"  # left behind
        sb, errored = step(aws, "validate", request("dep-B", b), EXECUTION + "B")
        assert not errored and sb["next"] == "shift"
        assert alias_claim.holder_of(repo, b) == "dep-B"


def test_the_claim_goes_when_the_canary_rolls_back(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        a, _ = two_targets(aws)
        repo = DeploymentRepository()
        sa, _ = step(aws, "validate", request("dep-A", a), EXECUTION + "A")
        sa, _ = step(aws, "shift", sa)
        out, errored = step(aws, "rollback", {**sa, "next": "rollback", "reason": "failing"}, EXECUTION + "A")
        assert not errored and out["decision"] == "rolled_back"
        assert alias_claim.holder_of(repo, a) is None


def test_the_stale_canary_repair_releases_the_claim(tmp_path: Path) -> None:
    """The canary's execution was stopped by a person at its first Wait (alias at 20%, record in progress, the
    alias claimed): the minute tick's stale-canary repair ends the record and frees the alias for the next one."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        a, b = two_targets(aws)
        repo = DeploymentRepository()
        stopped: list[bool] = []

        def stop_at_first_wait(before: Any, after: Any) -> None:
            if not stopped:
                stopped.append(True)
                arn = repo.get_deployment("dep-A").execution_arn
                clients.client("stepfunctions").stop_execution(executionArn=arn, cause="stopped by an operator")

        aws.clock.listeners.append(stop_at_first_wait)
        try:
            aws.run_state_machine("CanaryStateMachine", request("dep-A", a), timeout=30)
        finally:
            aws.clock.listeners.remove(stop_at_first_wait)
        aws.invoker.drain()
        assert alias_claim.holder_of(repo, a) == "dep-A"
        rollback_and_notify(aws, "dep-B", refused_validate(aws, "dep-B", b))  # A is (still recorded) in progress

        aws.clock.advance(30 * 60)
        minute_tick(aws)
        record = repo.get_deployment("dep-A")
        assert record.status == DeploymentStatus.ROLLED_BACK and "ABORTED" in (record.decision_reason or "")
        assert alias_claim.holder_of(repo, a) is None
        sc, errored = step(aws, "validate", request("dep-C", b), EXECUTION + "C")
        assert not errored and sc["next"] == "shift"


def test_the_refused_canary_s_execution_ends_without_moving_the_alias(tmp_path: Path) -> None:
    """The second canary run by the real state machine after the first one's Validate: its Validate is refused,
    Rollback and NotifyOutcome move nothing, and the execution ends with the decision ``rejected``, naming the
    first canary, which goes on."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        a, b = two_targets(aws)
        sa, _ = step(aws, "validate", request("dep-A", a), EXECUTION + "A")
        before = LambdaTrafficShifter(a).current()
        execution = aws.run_state_machine("CanaryStateMachine", request("dep-B", b), timeout=30)
        aws.invoker.drain()
        output = json.loads(execution["output"])
        assert execution["status"] == "SUCCEEDED" and output["decision"] == "rejected"
        assert "claimed by deployment dep-A" in output["reason"]
        assert LambdaTrafficShifter(a).current() == before
        repo = DeploymentRepository()
        assert repo.get_deployment("dep-B").decision == "rejected"
        assert repo.get_deployment("dep-A").status == DeploymentStatus.IN_PROGRESS
        assert alias_claim.holder_of(repo, a) == "dep-A"
        sa, errored = step(aws, "shift", sa)
        assert not errored and LambdaTrafficShifter(a).current().routes(a, sa["weight"] / 100)
