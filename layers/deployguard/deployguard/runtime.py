"""What every DeployGuard Lambda function shares at run time.

Powertools Logger, Tracer and Metrics, the environment each function needs (one
pydantic model, validated once per container, naming any missing variable), and
the long-lived collaborators (repository, publisher), created lazily and once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployguard.alerts.engine import AlertEngine
from deployguard.aws.events import EventPublisher
from deployguard.canary import CanaryController
from deployguard.config import DeployGuardConfig, load_config
from deployguard.control import CanaryControlService
from deployguard.exceptions import ConfigError
from deployguard.storage.repository import DeploymentRepository

SERVICE_NAME = "deployguard"
METRICS_NAMESPACE = "DeployGuard"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


class FunctionEnvironment(BaseModel):
    """Environment variables of the DeployGuard functions (set by template.yaml)."""

    model_config = ConfigDict(extra="ignore")

    deployments_table: str = Field(alias="DEPLOYMENTS_TABLE", min_length=1)
    events_topic_arn: str = Field(alias="EVENTS_TOPIC_ARN", min_length=1)
    notification_dlq_url: str | None = Field(default=None, alias="NOTIFICATION_DLQ_URL")
    canary_state_machine_arn: str | None = Field(default=None, alias="CANARY_STATE_MACHINE_ARN")
    environment: str = Field(default="production", alias="DEPLOYGUARD_ENVIRONMENT")
    local_mode: bool = Field(default=False, alias="DEPLOYGUARD_LOCAL")


@functools.cache
def environment() -> FunctionEnvironment:
    try:
        return FunctionEnvironment.model_validate(dict(os.environ))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"], source="environment", field=str(first["loc"][0])) from exc


@functools.cache
def config() -> DeployGuardConfig:
    return load_config()


@functools.cache
def repository() -> DeploymentRepository:
    return DeploymentRepository(environment().deployments_table, retention_days=config().retention_days)


@functools.cache
def publisher() -> EventPublisher:
    return EventPublisher(environment().events_topic_arn)


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> None:
    """Register what a module caches per container, to be forgotten by :func:`reset`."""
    _reset_hooks.append(hook)


def reset() -> None:
    """Forget everything cached (a new container; the embedded AWS calls this)."""
    for cached in (environment, config, repository, publisher, alert_engine, canary_controller, control_service):
        cached.cache_clear()
    for hook in _reset_hooks:
        hook()


@functools.cache
def alert_engine() -> AlertEngine:
    return AlertEngine.for_config(config(), repository(), publisher(), local_mode=environment().local_mode)


@functools.cache
def canary_controller() -> CanaryController:
    return CanaryController(
        config(), repository(), publisher(), alerts=alert_engine(), local_mode=environment().local_mode
    )


@functools.cache
def control_service() -> CanaryControlService:
    return CanaryControlService(config(), repository(), publisher(), environment().canary_state_machine_arn)
