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

import difflib
import json
import logging
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployguard.alerts.settings import AlertingSettings
from deployguard.analysis.settings import HealthSettings, JudgeSettings
from deployguard.exceptions import ConfigError, Problem, problems_error
from deployguard.hooks.settings import HookSettings
from deployguard.inbound import TooLarge, check_bounds
from deployguard.notification.settings import NotificationSettings

logger = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024 * 1024  # an SSM advanced parameter holds 8 KiB; a file this size is a mistake
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_VALUES = 100_000  # counts every expansion of a YAML alias (no "billion laughs")
_INNER_FIELD = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w-]+)*): (.+)$", re.DOTALL)
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StrictModel(BaseModel):
    # the schema is built when a configuration is first validated, not when a function imports this module
    model_config = ConfigDict(extra="forbid", defer_build=True)


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

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        """A field validator, so that it runs (and reports every bad step) even when another field fails."""
        if not steps:
            raise ValueError("at least one canary step is needed")
        problems: list[Problem] = []
        for i, weight in enumerate(steps):
            if not 0 < weight < 100:
                problems.append(((i,), f"weight {weight} must be between 0 and 100 (exclusive)"))
            elif i and weight <= steps[i - 1]:
                problems.append(((i,), f"weights must increase ({steps[i - 1]} then {weight})"))
        if problems:
            raise problems_error("CanaryPlan.steps", problems)
        return steps

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
    approval_before_full_traffic: bool = Field(
        default=False, description="a canary waits for a person (Step Functions task token) before 100%"
    )

    @model_validator(mode="after")
    def _judge_horizon(self) -> ServiceConfig:
        """The judge spreads its false-alarm budget over the canary's planned run: every step baked,
        in assessment periods (unless ``judge.horizon_periods`` is given); a run extended while it
        waits for evidence pays more as it goes. Derived, not given: the field stays out of the
        judge's fields set, so a copy with another plan, or a replay of a recording, sets its own."""
        seconds = len(self.canary.steps) * self.canary.step_duration_seconds
        self.judge = self.judge.for_run(-(-seconds // self.canary.assessment_interval_seconds))
        return self


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


def interpolate(value: Any, source: str, path: str = "", unset: list[ConfigProblem] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded document.

    An unset variable without a default raises :class:`ConfigError`, or, given a list
    ``unset``, is collected there (every one at once) and left as written.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, source, f"{path}.{k}" if path else str(k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, source, f"{path}.{i}", unset) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            message = f"environment variable {name} is not set (give it a value or write ${{{name}:-default}})"
            if unset is None:
                raise ConfigError(message, source=source, field=path or None)
            unset.append(ConfigProblem(source=source, field=path or None, message=message))
            return match.group(0)

        return _ENV_PATTERN.sub(repl, value)
    return value


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file: where (file, line, field) and what is expected."""

    source: str
    message: str
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every mapping key and list item in a YAML or JSON document, by its path."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value))
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                here = (*path, str(i))
                lines[here] = item.start_mark.line + 1
                walk(item, here)

    if root is not None:
        walk(root, ())
    return lines


def _line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _model_fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The field names the model at ``loc`` (a path into DeployGuardConfig) accepts."""
    current: Any = DeployGuardConfig
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part)) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return []
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted({f.alias or name for name, f in current.model_fields.items()})
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Optional[X]`` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation


def _problem_from_error(error: Any, source: str, lines: dict[tuple[str, ...], int]) -> ConfigProblem:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    inner = _INNER_FIELD.match(message) if error["type"] == "value_error" else None
    if inner:  # a model validator that names the field inside its model: "steps.1: weights must increase"
        loc = (*loc, *inner.group(1).split("."))
        message = inner.group(2)
    if error["type"] == "extra_forbidden":
        known = _model_fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        message = f"unknown key {loc[-1]!r}" + (f": did you mean {close[0]!r}?" if close else "")
        if known and not close:
            message += f" (expected one of: {', '.join(known)})"
    elif error["type"] not in ("value_error", "assertion_error") and "input" in error:
        shown = repr(error["input"])
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return ConfigProblem(
        source=source,
        field=_field_path(loc) or None,
        line=_line_of(lines, tuple(str(p) for p in loc)),
        message=message,
    )


def check_config(
    text: str, source: str, *, checks: Sequence[Callable[[DeployGuardConfig, str], list[ConfigProblem]]] = ()
) -> tuple[DeployGuardConfig | None, list[ConfigProblem]]:
    """Every problem of a configuration file at once (file, line, field, what is expected), and
    the configuration when there are none.

    ``checks``: more checks of a valid configuration, each problem placed on its line (``deployguard
    config validate`` adds the notification router's start-up check of its channels, so that a file
    it accepts is a file every function accepts).
    """
    is_json = source.endswith(".json")
    if len(text) > MAX_CONFIG_BYTES:
        too_long = f"{len(text)} characters, at most {MAX_CONFIG_BYTES} are read"
        return None, [ConfigProblem(source=source, message=too_long)]
    try:
        document = json.loads(text) if is_json else yaml.safe_load(text)
    except RecursionError:
        return None, [ConfigProblem(source=source, message=f"nested more than {MAX_CONFIG_DEPTH} deep")]
    except json.JSONDecodeError as exc:
        return None, [ConfigProblem(source=source, line=exc.lineno, message=f"not valid JSON: {exc.msg}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [
            ConfigProblem(source=source, line=mark.line + 1 if mark else None, message=f"not valid YAML: {problem}")
        ]
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return None, [ConfigProblem(source=source, line=1, message="the top level must be a mapping")]
    try:
        check_bounds(document, max_depth=MAX_CONFIG_DEPTH, max_nodes=MAX_CONFIG_VALUES)
    except TooLarge as exc:
        return None, [ConfigProblem(source=source, message=str(exc))]
    lines = _key_lines(text)
    problems: list[ConfigProblem] = []
    document = interpolate(document, source, unset=problems)
    problems = [
        ConfigProblem(source=p.source, field=p.field, line=_line_of(lines, tuple((p.field or "").split("."))),
                      message=p.message)
        for p in problems
    ]  # fmt: skip
    try:
        config = DeployGuardConfig.model_validate(document)
    except ValidationError as exc:
        found = [_problem_from_error(error, source, lines) for error in exc.errors()]
        problems.extend(p for p in found if not _inherited(p, found))
        return None, problems
    for check in checks:
        problems += [_located(p, lines) for p in check(config, source)]
    return (None if problems else config), problems


def _located(problem: ConfigProblem, lines: dict[tuple[str, ...], int]) -> ConfigProblem:
    line = _line_of(lines, tuple((problem.field or "").split(".")))
    return ConfigProblem(source=problem.source, field=problem.field, line=line, message=problem.message)


def _route_targets(config: DeployGuardConfig) -> set[str]:
    """What an alert or escalation route may name: a notification route, role or channel."""
    notifications = config.notifications
    return {r.name for r in notifications.routes if r.name} | set(notifications.roles) | set(notifications.channels)


def _alert_routes(config: DeployGuardConfig) -> list[tuple[str, str, bool]]:
    """(field, name, written in the file) of every route the ``alerting`` section names."""
    alerting = config.alerting
    found = [
        (f"alerting.rules.{i}.routes.{j}", name, True)
        for i, rule in enumerate(alerting.rules)
        for j, name in enumerate(rule.routes)
    ]
    found += [(f"alerting.default_routes.{j}", name, True) for j, name in enumerate(alerting.default_routes)]
    written = "policies" in alerting.escalation.model_fields_set
    found += [
        (f"alerting.escalation.policies.{policy}.steps.{s}.routes.{j}", name, written)
        for policy, settings in alerting.escalation.policies.items()
        for s, step in enumerate(settings.steps)
        for j, name in enumerate(step.routes)
    ]
    breaker = alerting.remediation.circuit_breaker
    found += [
        (f"alerting.remediation.circuit_breaker.page_routes.{j}", name, "page_routes" in breaker.model_fields_set)
        for j, name in enumerate(breaker.page_routes)
    ]
    return found


def route_problems(config: DeployGuardConfig, source: str) -> list[ConfigProblem]:
    """Routes written in the ``alerting`` section that name no notification route, role or channel:
    the alerts and pages sent to them would reach no one."""
    known = _route_targets(config)
    hint = f"known: {', '.join(sorted(known))}" if known else "the notifications section names none"
    problems = []
    for field, name, written in _alert_routes(config):
        if written and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            message = f"unknown route {name!r}: no notification route, role or channel of that name"
            problems.append(
                ConfigProblem(
                    source=source,
                    field=field,
                    message=message + (f"; did you mean {close[0]!r}?" if close else f" ({hint})"),
                )
            )
    return problems


def default_route_warnings(config: DeployGuardConfig) -> list[str]:
    """The built-in escalation policies and circuit breaker page roles the file does not define: a warning,
    not an error (a file without notifications is valid), as those pages would reach no one."""
    known = _route_targets(config)
    missing: dict[str, list[str]] = {}
    for field, name, written in _alert_routes(config):
        if not written and name not in known:
            missing.setdefault(name, []).append(field.rsplit(".routes", 1)[0].rsplit(".page_routes", 1)[0])
    warnings = [
        f"alerting: {name!r}, paged by the default {', '.join(sorted(set(where)))}, names no notification "
        f"route, role or channel: those pages reach no one (define notifications.roles.{name})"
        for name, where in missing.items()
    ]
    guard = config.notifications.guard_alarms
    if guard.enabled and "routes" not in guard.model_fields_set and known and not set(guard.routes) & known:
        warnings.append(
            f"notifications.guard_alarms: the default route {', '.join(map(repr, guard.routes))} names no notification "
            "route, role or channel: the guard's own alarms reach only the routes that match alerts of service "
            f"{guard.service!r} (define notifications.roles.{guard.routes[0]} or set notifications.guard_alarms.routes)"
        )
    return warnings


def _inherited(problem: ConfigProblem, problems: list[ConfigProblem]) -> bool:
    """A service's copy of a problem it only inherits from ``defaults`` (reported once, under defaults)."""
    parts = (problem.field or "").split(".")
    if len(parts) < 3 or parts[0] != "services":
        return False
    in_defaults = ".".join(["defaults", *parts[2:]])
    return any(p.field == in_defaults and p.message == problem.message for p in problems)


def parse_config(text: str, source: str) -> DeployGuardConfig:
    """The configuration in ``text``; the first problem raises :class:`ConfigError` (naming how many more).

    A route of the ``alerting`` section that names nothing known (:func:`route_problems`) is an error to
    ``deployguard config validate`` but only a warning here: a function refusing its whole configuration
    for a page that would reach no one would stop guarding every deployment (the router logs the
    unknown target again when an alert names it)."""
    config, problems = check_config(text, source)
    if config is not None:
        for problem in route_problems(config, source):
            logger.warning("configuration: %s: %s", problem.field, problem.message, extra={"source": source})
        return config
    first = problems[0]
    more = f" ({len(problems) - 1} more; run: deployguard config validate {source})" if len(problems) > 1 else ""
    line = f" (line {first.line})" if first.line else ""
    raise ConfigError(first.message + line + more, source=source, field=first.field)


def read_config_text(path: str | os.PathLike[str]) -> str:
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(file)) from exc


def load_config(path: str | os.PathLike[str] | None = None) -> DeployGuardConfig:
    if path is None:
        path = os.environ.get("DEPLOYGUARD_CONFIG_FILE") or None
    if path is not None:
        return parse_config(read_config_text(path), str(Path(path)))
    parameter = os.environ.get("DEPLOYGUARD_CONFIG_PARAMETER")
    if parameter:
        from aws_lambda_powertools.utilities import parameters

        text = parameters.get_parameter(parameter, max_age=300, decrypt=True)
        return parse_config(str(text), f"ssm:{parameter}")
    return DeployGuardConfig()
