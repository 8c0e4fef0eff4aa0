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
