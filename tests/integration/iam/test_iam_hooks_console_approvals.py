"""The lifecycle hook (Lambda and ECS), the console's control actions and the approvals' token answers with IAM
enforced on the embedded AWS (``EmbeddedAws(enforce_iam=True)``): each function's calls are refused unless its
role in template.yaml allows them, as on AWS (the audit's reproductions, kept)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from control_support import canary_in_flight, control_service
from iam_support import alert_engine, guarded_canary_in_flight, healthy_assessment

from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentStatus, EcsTarget, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local import incidents_cli
from deployguard_local.codedeploy import LEDGER, _set_state, create_lambda_deployment
from deployguard_local.console_server import LocalCredentials, http_api_event
from deployguard_local.ecs import AlbTrafficSource, create_ecs_deployment, create_ecs_service, simulate_ecs_rollout
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import VersionBehaviour

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


JSON = {"content-type": "application/json"}  # a write's body (415 without it)


@pytest.fixture
def aws() -> Iterator[Any]:
    with EmbeddedAws(config_file=DEMO_CONFIG, enforce_iam=True) as embedded:
        yield embedded


def _until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("never happened")


# ------------------------------------------------------------------ the lifecycle hook


def test_the_lambda_lifecycle_hook_runs_its_checks_and_answers_under_its_role(aws: Any) -> None:
    versions = aws.deploy_sample_function("orders", "live", sample_handler)
    target = LambdaTarget(function_name="orders", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "orders", "live")
    event = {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": LEDGER.issue(deployment_id)}
    payload, errored = aws.invoke("LifecycleHookFunction", event)
    assert not errored, payload
    assert (payload["phase"], payload["status"], payload["reported"]) == ("pre_traffic", "Succeeded", True)
    assert aws.iam.refused == []


def test_an_ecs_blue_green_rollout_passes_both_hooks_under_their_roles(aws: Any) -> None:
    stack = create_ecs_service("prod", "checkout-web")
    groups = {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: VersionBehaviour()}
    aws.clock.listeners.append(AlbTrafficSource(stack.prod_listener_arn, 3000, groups, seed=21).on_clock)
    result = simulate_ecs_rollout(
        stack, application="checkout-web", group="checkout-web-bg",
        hooks_function=lambda event: aws.invoke("LifecycleHookFunction", event),
        recorder_function=lambda event: aws.invoke("DeploymentRecorderFunction", event),
        clock_advance=aws.clock.advance,
    )  # fmt: skip
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    assert result.final_state == "SUCCESS"
    assert DeploymentRepository().get_deployment(result.deployment_id).status == DeploymentStatus.SUCCEEDED
    assert aws.iam.refused == []


# ------------------------------------------------------------------ the console's control actions


def _ecs_codedeploy_record(state: str, *, ended: bool) -> str:
    stack = create_ecs_service("prod", "checkout-web")
    cd_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-prod")
    _set_state(cd_id, state, ended=ended)
    target = EcsTarget(cluster="prod", service="checkout-web", new_task_definition=stack.task_definitions[1])
    DeploymentRepository().create_deployment(Deployment(
        deployment_id="dg-ecs-1", service="checkout-web", environment="production", version="2", target=target,
        status=DeploymentStatus.IN_PROGRESS, driver="codedeploy", codedeploy_deployment_id=cd_id,
    ))  # fmt: skip
    return cd_id


def _console_abort(aws: Any) -> tuple[int, dict[str, Any]]:
    creds = LocalCredentials()
    event = http_api_event("POST", "/api/deployments/dg-ecs-1/control/abort", JSON,
                           json.dumps({"reason": "too late"}).encode(), creds.claims(creds.write_token))  # fmt: skip
    payload, errored = aws.invoke("ConsoleWriteFunction", event)
    assert not errored, payload
    return int(payload["statusCode"]), json.loads(payload["body"])


def test_the_console_aborts_an_ecs_codedeploy_deployment_under_its_role(aws: Any) -> None:
    cd_id = _ecs_codedeploy_record("InProgress", ended=False)
    status, body = _console_abort(aws)
    assert status == 200, body
    assert clients.client("codedeploy").get_deployment(deploymentId=cd_id)["deploymentInfo"]["status"] == "Stopped"
    assert aws.iam.refused == []


def test_the_console_refuses_to_abort_an_ecs_deployment_that_already_succeeded(aws: Any) -> None:
    """StopDeployment refused: CodeDeploy's status is read with GetDeployment alone (the console's role reads no
    deployment group, targets or task sets); it says the version is live, not 'had already completed'."""
    cd_id = _ecs_codedeploy_record("Succeeded", ended=True)
    status, body = _console_abort(aws)
    assert status == 409, body
    assert f"CodeDeploy deployment {cd_id} has already succeeded" in json.dumps(body)
    assert aws.iam.refused == []


# ------------------------------------------------------------------ the approvals' own token answers


@contextlib.contextmanager
def _step_functions_takes(answers: list[dict[str, Any]]) -> Iterator[None]:
    """SendTaskSuccess answered by a stand-in (the tokens are made up); after the IAM check, which is first."""
    events = clients.client("stepfunctions").meta.events

    def taken(params: dict[str, Any], **_: Any) -> Any:
        answers.append(json.loads(params["body"]))
        return SimpleNamespace(status_code=200, headers={}), {}

    events.register("before-call.states.SendTaskSuccess", taken, unique_id="iam-test-answers")
    try:
        yield
    finally:
        events.unregister("before-call.states.SendTaskSuccess", unique_id="iam-test-answers")


def test_a_retried_approval_wait_answers_its_own_token_under_the_canary_role(aws: Any) -> None:
    canary_in_flight(aws, "checkout-api")
    service = control_service(aws)
    service.wait_for_approval("dep-checkout-api", "tok-1")  # the first AwaitApproval attempt registered tok-1
    answers: list[dict[str, Any]] = []
    with _step_functions_takes(answers):
        assert service.apply("dep-checkout-api", ControlRequest(verb="approve", actor="alice", reason="ok")).changed
        task = {"action": "await_approval", "state": {"deployment_id": "dep-checkout-api"}, "task_token": "tok-2"}
        payload, errored = aws.invoke("CanaryStepFunction", task)  # the task's retry, with its own token
    assert not errored, payload
    assert [a["taskToken"] for a in answers] == ["tok-1", "tok-2"]
    assert DeploymentRepository().get_deployment("dep-checkout-api").control.promote_requested
    assert aws.iam.refused == []


def test_an_approval_decided_before_its_state_machine_registers_is_run(aws: Any) -> None:
    """A person approves before the approval state machine's register task runs (a cold start): the
    RemediationApprovalFunction answers the token itself, and the approved rollback runs."""
    gate = threading.Event()
    invoke = aws.registry.invoke
    registered_after_the_answer: list[bool] = []  # the ordering under test held (the gate opened, not timed out)

    def cold_register(name: str, arn: str, event: Any) -> Any:
        if "RemediationApprovalFunction" in name and isinstance(event, dict) and event.get("action") == "register":
            registered_after_the_answer.append(gate.wait(120))
        return invoke(name, arn, event)

    aws.registry.invoke = cold_register
    deployment, shifter = guarded_canary_in_flight(aws)
    target = deployment.target
    assert isinstance(target, LambdaTarget)
    alert_engine().on_assessment(deployment, healthy_assessment(deployment), {"response_time_p99": 900.0},
                           {"response_time_p99": 300.0})  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert incidents_cli.main(["approvals", "--json"]) == 0
    [approval] = json.loads(out.getvalue())
    with contextlib.redirect_stdout(io.StringIO()):
        assert incidents_cli.main(["approve", approval["approval_id"], "--by", "bob", "--json"]) == 0
    gate.set()
    execution = aws.ref("ApprovalStateMachine").replace(":stateMachine:", ":execution:") + f":{approval['approval_id']}"
    sfn = clients.client("stepfunctions")
    _until(lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING")
    assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"
    assert shifter.current().weight_of(target.stable_version) == 1.0  # the approved rollback ran
    assert registered_after_the_answer == [True]
    assert aws.iam.refused == []
