from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from remediation_support import make_function

from deployguard.alerts.settings import RemediationAction
from deployguard.aws import clients
from deployguard.exceptions import NotApplicableError, RemediationError
from deployguard.models import Deployment, DeploymentStatus, EcsTarget, LambdaTarget
from deployguard.remediation.actions import handler_for
from deployguard.remediation.targets import TargetAllowlist, target_id


def _lambda_deployment(**kw: Any) -> Deployment:
    return Deployment(
        deployment_id="dg-1",
        service="checkout-api",
        environment="production",
        version="2",
        target=LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2"),
        status=DeploymentStatus.IN_PROGRESS,
        **kw,
    )


def _ecs_deployment(stable: str = "", new: str = "") -> Deployment:
    return Deployment(
        deployment_id="dg-ecs",
        service="web",
        environment="production",
        version="2",
        target=EcsTarget(cluster="prod", service="web", stable_task_definition=stable, new_task_definition=new),
        status=DeploymentStatus.IN_PROGRESS,
    )


def _ecs_service(desired: int = 2) -> list[str]:
    ecs = clients.client("ecs")
    ecs.create_cluster(clusterName="prod")
    arns = [
        ecs.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": f"web:{i}", "memory": 128}]
        )["taskDefinition"]["taskDefinitionArn"]
        for i in (1, 2)
    ]
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=arns[1], desiredCount=desired)
    return arns


def _service() -> dict[str, Any]:
    return dict(clients.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0])


def test_target_ids_and_allowlist() -> None:
    assert target_id(_lambda_deployment()) == "lambda:checkout-api"
    assert target_id(_ecs_deployment()) == "ecs:prod/web"
    allow = TargetAllowlist(["ecs:prod/*"], functions=["checkout-api"])
    assert allow.allows("lambda:checkout-api") and allow.allows("ecs:prod/web")
    assert not allow.allows("lambda:payments-api") and not allow.allows("ecs:staging/web")


def test_rollback_picks_the_right_action() -> None:
    rollback = RemediationAction(type="rollback")
    assert handler_for("rollback", rollback, _lambda_deployment()).type == "lambda_rollback"
    codedeploy = _lambda_deployment(driver="codedeploy", codedeploy_deployment_id="d-ABC")
    assert handler_for("rollback", rollback, codedeploy).type == "codedeploy_stop"
    assert handler_for("rollback", rollback, _ecs_deployment()).type == "ecs_rollback"
    # CodeDeploy drives an ECS blue/green deployment too: stopping it sends production back to blue
    ecs_blue_green = _ecs_deployment().model_copy(update={"driver": "codedeploy", "codedeploy_deployment_id": "d-E"})
    assert handler_for("rollback", rollback, ecs_blue_green).type == "codedeploy_stop"


def test_shed_load_lowers_reserved_concurrency_once(repo: Any) -> None:
    make_function("checkout-api")
    handler = handler_for(
        "shed-load",
        RemediationAction(type="lambda_reserved_concurrency", reserved_concurrency=20),
        _lambda_deployment(),
    )
    plan = handler.plan()
    assert not plan.noop and "PutFunctionConcurrency checkout-api ReservedConcurrentExecutions=20" in plan.calls[0]
    assert handler.execute(repo) == "checkout-api reserved concurrency 20"
    assert handler.plan().noop


def test_ecs_scale_restart_and_rollback(repo: Any) -> None:
    arns = _ecs_service(desired=2)
    scale = handler_for("scale", RemediationAction(type="ecs_scale", scale_factor=1.5), _ecs_deployment())
    assert "desiredCount=3" in scale.plan().calls[0]
    scale.execute(repo)
    assert _service()["desiredCount"] == 3
    fixed = handler_for("scale", RemediationAction(type="ecs_scale", desired_count=3), _ecs_deployment())
    assert fixed.plan().noop

    restart = handler_for("restart", RemediationAction(type="ecs_force_new_deployment"), _ecs_deployment())
    assert "forceNewDeployment=true" in restart.plan().calls[0]
    assert "restarting" in restart.execute(repo)

    # the revision before the deployment's new one
    rollback = handler_for("rb", RemediationAction(type="ecs_rollback"), _ecs_deployment(new=arns[1]))
    assert arns[0] in rollback.plan().calls[0]
    rollback.execute(repo)
    assert _service()["taskDefinition"] == arns[0]
    assert rollback.plan().noop
    explicit = handler_for("rb", RemediationAction(type="ecs_rollback"), _ecs_deployment(stable=arns[0]))
    assert explicit.plan().noop


def test_actions_refuse_the_wrong_kind_of_target() -> None:
    with pytest.raises(NotApplicableError):
        handler_for("x", RemediationAction(type="ecs_scale", desired_count=1), _lambda_deployment()).plan()
    with pytest.raises(NotApplicableError):
        handler_for("x", RemediationAction(type="lambda_rollback"), _ecs_deployment()).plan()
    with pytest.raises(NotApplicableError, match="not driven by CodeDeploy"):
        handler_for("x", RemediationAction(type="codedeploy_stop"), _lambda_deployment()).plan()


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Stubber]:
    """Stubbed codedeploy and lambda clients (calls moto does not implement)."""
    made = {name: boto3.client(name, region_name="us-east-1") for name in ("codedeploy", "lambda")}
    stubbers = {name: Stubber(c) for name, c in made.items()}
    for s in stubbers.values():
        s.activate()
    monkeypatch.setattr(clients, "client", lambda service: made[service])
    return stubbers


@pytest.fixture
def codedeploy_stops(repo: Any) -> Any:
    """A running CodeDeploy deployment on moto, with the StopDeployment call moto lacks served locally."""
    from deployguard_local.codedeploy import HookLedger, _set_state, create_lambda_deployment, install_hook_status_api

    ledger = HookLedger()
    undo = install_hook_status_api(ledger)
    target = _lambda_deployment().target
    assert isinstance(target, LambdaTarget)
    deployment_id = create_lambda_deployment(target, "checkout-api", "live")
    _set_state(deployment_id, "InProgress")
    yield deployment_id, ledger
    undo()


def test_stop_codedeploy_with_rollback(repo: Any, codedeploy_stops: Any) -> None:
    deployment_id, ledger = codedeploy_stops
    handler = handler_for(
        "stop", RemediationAction(type="codedeploy_stop"), _lambda_deployment(codedeploy_deployment_id=deployment_id)
    )
    assert handler.plan().calls == [f"codedeploy:StopDeployment deploymentId={deployment_id} autoRollbackEnabled=true"]
    assert "stopping with rollback (Pending)" in handler.execute(repo)
    assert handler.plan().noop  # stopped: running it again does nothing
    assert [(s.accepted, s.auto_rollback) for s in ledger.stops_of(deployment_id)] == [(True, True)]
    assert clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"] == (
        "Stopped"
    )


def test_provisioned_concurrency(repo: Any, stubbed: dict[str, Stubber]) -> None:
    lam = stubbed["lambda"]
    lam.add_client_error(
        "get_provisioned_concurrency_config", "ProvisionedConcurrencyConfigNotFoundException", http_status_code=404
    )
    lam.add_response(
        "put_provisioned_concurrency_config",
        {"RequestedProvisionedConcurrentExecutions": 10, "Status": "IN_PROGRESS"},
        {"FunctionName": "checkout-api", "Qualifier": "live", "ProvisionedConcurrentExecutions": 10},
    )
    lam.add_response("get_provisioned_concurrency_config", {"RequestedProvisionedConcurrentExecutions": 10})
    handler = handler_for(
        "warm",
        RemediationAction(type="lambda_provisioned_concurrency", provisioned_concurrency=10),
        _lambda_deployment(),
    )
    assert "ProvisionedConcurrentExecutions=10" in handler.plan().calls[0]
    assert "IN_PROGRESS" in handler.execute(repo)
    assert handler.plan().noop


def test_aws_failures_become_remediation_errors(repo: Any, codedeploy_stops: Any) -> None:
    deployment_id, ledger = codedeploy_stops
    handler = handler_for(
        "stop", RemediationAction(type="codedeploy_stop"), _lambda_deployment(codedeploy_deployment_id=deployment_id)
    )
    handler.execute(repo)
    with pytest.raises(RemediationError, match="DeploymentAlreadyCompletedException"):
        handler.execute(repo)  # CodeDeploy refuses to stop a stopped deployment
    assert [s.accepted for s in ledger.stops_of(deployment_id)] == [True, False]
    with pytest.raises(RemediationError, match="DeploymentDoesNotExistException"):
        handler_for(
            "stop", RemediationAction(type="codedeploy_stop"), _lambda_deployment(codedeploy_deployment_id="d-NONE")
        ).plan()
