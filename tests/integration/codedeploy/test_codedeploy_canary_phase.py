"""The scheduled assessor during a CodeDeploy canary's 10% phase, on the embedded AWS.

The AssessorFunction's EventBridge schedule (rate(1 minute)) fires as the simulated
clock passes each minute; a failing verdict raises ``canary-issue``, whose automatic
rollback of a CodeDeploy-driven deployment is StopDeployment with automatic rollback,
served locally like CodeDeploy: the deployment stops, a rollback deployment puts the
alias back, and AfterAllowTraffic never runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployguard.aws import clients
from deployguard.models import Decision, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import (
    LEDGER,
    create_lambda_deployment,
    simulate_embedded_rollout,
    simulate_lambda_rollout,
)
from deployguard_local.emulator import rate_seconds, sample_handler, schedule_boundaries
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def _deploy(embedded: Any, name: str, canary: VersionBehaviour, seed: int) -> LambdaTarget:
    """A configured service's function (remediation only touches configured targets) and its traffic."""
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    traffic = LambdaTrafficSource(name, "live", 3000, {versions[0]: VersionBehaviour(), versions[1]: canary}, seed=seed)
    embedded.clock.listeners.append(traffic.on_clock)
    return LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])


def _assessor_runs(embedded: Any) -> list[Any]:
    return [r for r in embedded.schedule_runs if r.function == "AssessorFunction"]


def test_a_regressing_canary_is_stopped_by_the_assessor_during_its_10_percent_phase(embedded: Any) -> None:
    target = _deploy(embedded, "payments-api", VersionBehaviour(regress_at=0, regressed_error_rate=0.1), seed=31)
    started = embedded.clock()
    steps: list[str] = []
    result = simulate_embedded_rollout(embedded, target, application="payments-api", on_step=steps.append)

    assert (result.final_state, result.status, result.states) == ("STOP", "RolledBack", ["START", "STOP"])
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded")]  # AfterAllowTraffic never ran
    assert not any(s.startswith("traffic 100%") for s in steps), steps
    alias = clients.client("lambda").get_alias(FunctionName="payments-api", Name="live")
    assert alias["FunctionVersion"] == target.stable_version == result.alias_version
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")

    # exactly one StopDeployment, accepted while the deployment ran, with automatic rollback
    stops = LEDGER.stops_of(result.deployment_id)
    assert [(s.accepted, s.auto_rollback, s.status_before) for s in stops] == [(True, True, "InProgress")]
    assert result.stop_calls == stops

    # CodeDeploy's view: stopped, rolled back by a deployment of its own
    codedeploy = clients.client("codedeploy")
    original = codedeploy.get_deployment(deploymentId=result.deployment_id)["deploymentInfo"]
    assert original["status"] == "Stopped"
    assert original["rollbackInfo"]["rollbackDeploymentId"] == result.rollback_deployment_id
    rollback = codedeploy.get_deployment(deploymentId=str(result.rollback_deployment_id))["deploymentInfo"]
    assert (rollback["status"], rollback["creator"]) == ("Succeeded", "codeDeployRollback")
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == result.deployment_id

    # the record: rolled back within the 10% phase, by the assessor's verdict and the remediation
    repository = DeploymentRepository()
    record = repository.get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK and record.canary_weight == 0.0
    assert record.ended_at is not None and record.ended_at - started < timedelta(minutes=5)
    assessments = repository.assessments(result.deployment_id)
    assert assessments and assessments[-1].verdict.decision == Decision.FAILING
    assert len(assessments) == len(_assessor_runs(embedded))  # one verdict per scheduled run
    trail = repository.audit_trail(result.deployment_id)
    raised = [e for e in trail if e.action == "alert_raised" and e.reason.startswith("canary-issue")]
    assert len(raised) == 1 and raised[0].at == assessments[-1].at
    remediated = [e for e in trail if e.action == "remediation_succeeded"]
    assert len(remediated) == 1 and "stopping with rollback" in remediated[0].reason
    actions = [e.action for e in trail]
    assert actions.count("hook_verdict") == 1
    assert (
        actions.index("remediation_succeeded") < actions.index("codedeploy_stop") < actions.index("rollback_completed")
    )


def test_a_healthy_canary_is_judged_every_minute_and_succeeds(embedded: Any) -> None:
    target = _deploy(embedded, "checkout-api", VersionBehaviour(), seed=32)
    result = simulate_embedded_rollout(embedded, target, application="checkout-api")

    assert result.final_state == "SUCCESS" and result.status == "Succeeded", result.hooks
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    assert result.stop_calls == [] and result.rollback_deployment_id is None
    assert result.alias_version == target.new_version
    runs = _assessor_runs(embedded)
    assert len(runs) == 6 and not any(r.errored for r in runs)  # five minutes at 10%, one at 100%
    assert [r.at - runs[0].at for r in runs] == [timedelta(minutes=i) for i in range(6)]
    assert runs[0].event["detail-type"] == "Scheduled Event" and runs[0].event["source"] == "aws.events"
    assert runs[0].event["resources"][0].endswith(":rule/" + runs[0].rule)
    repository = DeploymentRepository()
    assessments = repository.assessments(result.deployment_id)
    assert {r.at for r in runs} <= {a.at for a in assessments}
    assert len(assessments) == len(runs) + 1  # and the AfterAllowTraffic hook's own judgement
    assert Decision.FAILING not in {a.verdict.decision for a in assessments}
    assert Decision.HEALTHY in {a.verdict.decision for a in assessments}
    assert repository.get_deployment(result.deployment_id).status == DeploymentStatus.SUCCEEDED


def test_stop_deployment_of_a_finished_deployment_is_refused(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("finished", "live", sample_handler)
    target = LambdaTarget(function_name="finished", alias="live", stable_version=versions[0], new_version=versions[1])
    codedeploy = clients.client("codedeploy")

    def answer(event: dict[str, Any]) -> None:
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=event["DeploymentId"],
            lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
            status="Succeeded",
        )

    done = simulate_lambda_rollout("finished", "live", versions[0], versions[1], hooks_function=answer,
                                   clock_advance=embedded.clock.advance)  # fmt: skip
    assert done.final_state == "SUCCESS"
    with pytest.raises(ClientError) as refused:
        codedeploy.stop_deployment(deploymentId=done.deployment_id, autoRollbackEnabled=True)
    assert refused.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"
    assert codedeploy.get_deployment(deploymentId=done.deployment_id)["deploymentInfo"]["status"] == "Succeeded"

    # a running one stops once; stopping it again is refused the same way
    running = create_lambda_deployment(target, "finished", "live")
    assert codedeploy.stop_deployment(deploymentId=running, autoRollbackEnabled=False)["status"] == "Pending"
    with pytest.raises(ClientError) as again:
        codedeploy.stop_deployment(deploymentId=running)
    assert again.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"
    info = codedeploy.get_deployment(deploymentId=running)["deploymentInfo"]
    assert info["status"] == "Stopped" and not info["rollbackInfo"]  # no rollback was asked for
    assert [(s.accepted, s.error) for s in LEDGER.stops_of(done.deployment_id) + LEDGER.stops_of(running)] == [
        (False, "DeploymentAlreadyCompletedException"),
        (True, None),
        (False, "DeploymentAlreadyCompletedException"),
    ]


def test_schedules_fire_only_while_followed_and_enabled(embedded: Any) -> None:
    events = clients.client("events")
    (rule,) = embedded.schedule_rules(["AssessorFunction"])
    embedded.clock.advance(120)
    assert embedded.schedule_runs == []  # opt-in: nothing fires unless followed
    undo = embedded.follow_schedules(["AssessorFunction"])
    embedded.clock.advance(150)  # two minute boundaries
    events.disable_rule(Name=rule)
    embedded.clock.advance(60)
    events.enable_rule(Name=rule)
    embedded.clock.advance(60)
    undo()
    embedded.clock.advance(60)
    runs = embedded.schedule_runs
    assert [(r.function, r.at.second) for r in runs] == [("AssessorFunction", 0)] * 3
    assert not any(r.errored for r in runs) and {r.event["resources"][0] for r in runs} == {
        events.describe_rule(Name=rule)["Arn"]
    }
    assert runs[2].at - runs[1].at == timedelta(minutes=2)  # the disabled minute did not fire
    assert rate_seconds("rate(1 minute)") == 60 and rate_seconds("rate(5 minutes)") == 300
    with pytest.raises(ValueError):
        rate_seconds("rate(5 minute)")
    with pytest.raises(ValueError):
        rate_seconds("cron(0 12 * * ? *)")
    at = embedded.clock()
    assert len(schedule_boundaries(300, at, at + timedelta(minutes=30))) == 6
