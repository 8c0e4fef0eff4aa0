"""The DeployGuard configuration file: YAML or JSON, with ``${ENV_VAR}`` interpolation.

Every error names the file and the field (``services.checkout.canary.steps.1``), so
a bad configuration is fixed from the message alone.

Where the file comes from, first match wins:
1. an explicit path;
2. ``DEPLOYGUARD_CONFIG_FILE`` (a path inside the function package or the layer);
3. ``DEPLOYGUARD_CONFIG_PARAMETER`` (an SSM parameter holding the file, read with
   Powertools Parameters and cached);
4. the defaults built into the package (every field has one).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deployguard.alerts.settings import AlertingSettings
from deployguard.analysis.health import HealthSettings
from deployguard.analysis.judge import JudgeSettings
from deployguard.exceptions import ConfigError
from deployguard.hooks.settings import HookSettings
from deployguard.notification.settings import NotificationSettings

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CanaryPlan(StrictModel):
    """How traffic moves to the new version and how long each step bakes."""

    steps: list[float] = Field(
        default_factory=lambda: [10.0, 25.0, 50.0],
        description="canary weights in percent, increasing, each below 100; then promotion to 100",
    )
    step_duration_seconds: int = Field(default=300, ge=60, le=3600, description="bake time of each step")
    assessment_interval_seconds: int = Field(default=60, ge=10, le=900)
    validation_budget_seconds: int = Field(
        default=300, ge=10, le=300, description="Validate runs the pre-traffic checks within this time"
    )

    @model_validator(mode="after")
    def _increasing(self) -> CanaryPlan:
        if not self.steps:
            raise ValueError("steps: at least one canary step is needed")
        for i, weight in enumerate(self.steps):
            if not 0 < weight < 100:
                raise ValueError(f"steps.{i}: weight {weight} must be between 0 and 100 (exclusive)")
            if i and weight <= self.steps[i - 1]:
                raise ValueError(f"steps.{i}: weights must increase ({self.steps[i - 1]} then {weight})")
        return self

    def total_seconds(self, max_inconclusive_periods: int) -> int:
        """Upper bound of a canary run: every step baked and waited out for evidence."""
        per_step = self.step_duration_seconds + max_inconclusive_periods * self.assessment_interval_seconds
        return per_step * len(self.steps)


class ServiceConfig(StrictModel):
    """What DeployGuard knows of one service it guards."""

    environment: str = "production"
    function_name: str | None = None
    alias: str = "live"
    ecs_service: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,255}/[A-Za-z0-9_-]{1,255}$",
        description="cluster/service of the ECS service deployed as this service (remediation may act on it)",
    )
    canary: CanaryPlan = Field(default_factory=CanaryPlan)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    hooks: HookSettings = Field(default_factory=HookSettings)
    expected_duration_seconds: int | None = Field(default=None, ge=60)


class DeployGuardConfig(StrictModel):
    environment: str = "production"
    retention_days: int = Field(default=90, ge=1, le=3650)
    defaults: ServiceConfig = Field(default_factory=ServiceConfig)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)

    @model_validator(mode="before")
    @classmethod
    def _services_inherit_defaults(cls, data: Any) -> Any:
        """Each service section is laid over ``defaults``: a service states only what differs."""
        if isinstance(data, dict) and isinstance(data.get("services"), dict):
            defaults = data.get("defaults") or {}
            if isinstance(defaults, dict):
                data = dict(data)
                data["services"] = {
                    name: _deep_merge(defaults, section) if isinstance(section, dict) else section
                    for name, section in data["services"].items()
                }
        return data

    def service(self, name: str) -> ServiceConfig:
        return self.services.get(name) or self.defaults


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def interpolate(value: Any, source: str, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded document."""
    if isinstance(value, dict):
        return {k: interpolate(v, source, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, source, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set", source=source, field=path or None)

        return _ENV_PATTERN.sub(repl, value)
    return value


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_config(text: str, source: str) -> DeployGuardConfig:
    try:
        document = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not valid {'JSON' if source.endswith('.json') else 'YAML'}: {exc}", source=source) from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("the top level must be a mapping", source=source)
    document = interpolate(document, source)
    try:
        return DeployGuardConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            first["msg"] + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""),
            source=source,
            field=_field_path(first["loc"]),
        ) from exc


def load_config(path: str | os.PathLike[str] | None = None) -> DeployGuardConfig:
    if path is None:
        path = os.environ.get("DEPLOYGUARD_CONFIG_FILE") or None
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", source=str(file)) from exc
        return parse_config(text, str(file))
    parameter = os.environ.get("DEPLOYGUARD_CONFIG_PARAMETER")
    if parameter:
        from aws_lambda_powertools.utilities import parameters

        text = parameters.get_parameter(parameter, max_age=300, decrypt=True)
        return parse_config(str(text), f"ssm:{parameter}")
    return DeployGuardConfig()
