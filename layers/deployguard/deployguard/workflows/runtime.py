"""What every DeployGuard Lambda function shares at run time.

Powertools Logger, Tracer and Metrics, the environment each function needs (one
pydantic model, validated once per container, naming any missing variable), and
the long-lived collaborators (repository, publisher, alert engine, canary controller),
created lazily and once. Nothing heavy is imported here: the alert engine and the
canary controller are imported by the first function that asks for them, and the
X-Ray SDK only when tracing is active (``_X_AMZN_TRACE_ID`` or ``AWS_XRAY_*`` set by Lambda).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployguard.exceptions import ConfigError

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    from deployguard.alerts.engine import AlertEngine
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig
    from deployguard.storage.repository import DeploymentRepository
    from deployguard.workflows.canary import CanaryController
    from deployguard.workflows.control import CanaryControlService

H = TypeVar("H", bound=Callable[..., Any])

SERVICE_NAME = "deployguard"
METRICS_NAMESPACE = "DeployGuard"


def tracing_active() -> bool:
    """Whether Lambda traces this function (active tracing sets the X-Ray daemon address)."""
    return bool(os.environ.get("AWS_XRAY_DAEMON_ADDRESS")) and os.environ.get("POWERTOOLS_TRACE_DISABLED") != "true"


class LazyTracer:
    """The Powertools Tracer, created (and the X-Ray SDK imported, most of a cold start's cost)
    only when Lambda traces the function; otherwise handlers run undecorated."""

    @functools.cached_property
    def tracer(self) -> Tracer:
        from aws_lambda_powertools import Tracer

        return Tracer(service=SERVICE_NAME)

    def capture_lambda_handler(self, handler: H) -> H:
        if not tracing_active():
            return handler
        return cast("H", self.tracer.capture_lambda_handler(handler))


logger = Logger(service=SERVICE_NAME)
tracer = LazyTracer()
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


class FunctionEnvironment(BaseModel):
    """Environment variables of the DeployGuard functions (set by template.yaml)."""

    model_config = ConfigDict(extra="ignore")

    deployments_table: str = Field(alias="DEPLOYMENTS_TABLE", min_length=1)
    events_topic_arn: str = Field(alias="EVENTS_TOPIC_ARN", min_length=1)
    notification_dlq_url: str | None = Field(default=None, alias="NOTIFICATION_DLQ_URL")
    canary_state_machine_arn: str | None = Field(default=None, alias="CANARY_STATE_MACHINE_ARN")
    assessment_queue_url: str | None = Field(default=None, alias="ASSESSMENT_QUEUE_URL")
    environment: str = Field(default="production", alias="DEPLOYGUARD_ENVIRONMENT")
    local_mode: bool = Field(default=False, alias="DEPLOYGUARD_LOCAL")


_EnvironmentT = TypeVar("_EnvironmentT", bound=BaseModel)


def read_environment(model: type[_EnvironmentT]) -> _EnvironmentT:
    """``model`` validated from the process environment; a missing or bad variable is a
    :class:`ConfigError` naming it."""
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"], source="environment", field=str(first["loc"][0])) from exc


@functools.cache
def environment() -> FunctionEnvironment:
    return read_environment(FunctionEnvironment)


@functools.cache
def config() -> DeployGuardConfig:
    from deployguard.config import load_config

    return load_config()


@functools.cache
def repository() -> DeploymentRepository:
    from deployguard.storage.repository import DeploymentRepository

    return DeploymentRepository(environment().deployments_table, retention_days=config().retention_days)


@functools.cache
def publisher() -> EventPublisher:
    from deployguard.aws.events import EventPublisher

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
    from deployguard.alerts.engine import AlertEngine

    engine = AlertEngine.for_config(config(), repository(), publisher(), local_mode=environment().local_mode)
    engine.count = count_guard_metric  # AlertsRaised, IncidentPages: where alerts fire and incidents page
    return engine


def deployment_keys(ids: Iterable[str | None]) -> dict[str, Any]:
    """The log keys that correlate a summary line with its deployments: ``deployment_ids`` (each once, in
    order), and ``deployment_id`` when there is one (the key every per-deployment line carries)."""
    unique = list(dict.fromkeys(i for i in ids if i))
    return {"deployment_ids": unique, **({"deployment_id": unique[0]} if len(unique) == 1 else {})}


def count_guard_metric(name: str, value: int) -> None:
    """One EMF record (namespace DeployGuard, dimension ``service`` only) with one count, printed at once:
    the dashboard's and alarms' metrics of the guard itself, whichever function (and whichever dimensions
    its own metrics carry: the recorder's are by environment and strategy) counts it."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    emf = EphemeralMetrics()
    emf.add_metric(name=name, unit="Count", value=value)
    emf.flush_metrics()


@functools.cache
def canary_controller() -> CanaryController:
    from deployguard.workflows.canary import CanaryController

    return CanaryController(
        config(), repository(), publisher(), alerts=alert_engine(), local_mode=environment().local_mode
    )


@functools.cache
def control_service() -> CanaryControlService:
    from deployguard.workflows.control import CanaryControlService

    return CanaryControlService(config(), repository(), publisher(), environment().canary_state_machine_arn)
