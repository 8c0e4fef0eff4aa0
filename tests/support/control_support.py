"""What the control tests share: the control service and the canary controller on an embedded AWS, and a
hook that lets an action land while a Lambda alias moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from deployguard.aws.events import EventPublisher
from deployguard.config import load_config
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import CanaryControlService


def control_service(aws: Any) -> CanaryControlService:
    """The control verbs' service on the embedded AWS ``aws`` (its topic and canary state machine)."""
    return CanaryControlService(
        load_config(),
        DeploymentRepository(),
        EventPublisher(aws.ref("DeploymentEventsTopic")),
        canary_state_machine_arn=aws.ref("CanaryStateMachine"),
    )


def canary_controller(aws: Any) -> Any:
    """The state machine's tasks (``CanaryController``) with the same configuration, table and topic."""
    from deployguard.workflows.canary import CanaryController

    service = control_service(aws)
    return CanaryController(service.config, service.repository, service.publisher)


@contextmanager
def while_the_alias_moves_once(action: Callable[[], object]) -> Iterator[None]:
    """``action`` runs just before the next UpdateAlias goes out; that call then lands after it."""
    from deployguard.aws import clients

    done: list[object] = []

    def hook(**_: Any) -> None:
        if not done:
            done.append(True)
            action()

    events = clients.client("lambda").meta.events
    events.register("before-parameter-build.lambda.UpdateAlias", hook, unique_id="test-while-the-alias-moves")
    try:
        yield
    finally:
        events.unregister("before-parameter-build.lambda.UpdateAlias", unique_id="test-while-the-alias-moves")


def canary_in_flight(aws: Any, name: str, weight: float = 0.25, versions: int = 2) -> Any:
    """A Lambda canary of ``name`` with ``weight`` of its alias ``live`` on the new version (2 of the
    function's ``versions``), whose record (``dep-<name>``) says in progress; returns its target."""
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter
    from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
    from deployguard_local.emulator import sample_handler

    published = aws.deploy_sample_function(name, "live", sample_handler, versions=versions)
    target = LambdaTarget(function_name=name, alias="live", stable_version=published[0], new_version=published[1])
    DeploymentRepository().create_deployment(
        Deployment(deployment_id=f"dep-{name}", service=name, environment="production", version=published[1],
                   target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=weight)
    )  # fmt: skip
    LambdaTrafficShifter(target).shift(weight)
    return target


def promoted(aws: Any, name: str) -> Any:
    """A Lambda service ``name`` promoted from version 1 to 2: its record (``dep-<name>``) says so and its alias
    ``live`` routes all traffic to version 2; returns its target."""
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter
    from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
    from deployguard_local.emulator import sample_handler

    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    DeploymentRepository().create_deployment(
        Deployment(deployment_id=f"dep-{name}", service=name, environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.SUCCEEDED, decision="promoted", canary_weight=1.0)
    )  # fmt: skip
    LambdaTrafficShifter(target).promote()
    return target
