"""The ``alerting:`` section of the DeployGuard configuration: rules, escalation, remediation.

Every rule is parsed and type-checked when the configuration loads; an error names
the rule, its place in the list and the column of the expression. Names used across
the section (escalation policies, remediation actions, rules in plans) are checked
too, so a typo fails at load time and not during an incident.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from deployguard.alerts.expression import Expression, Unit, parse
from deployguard.alerts.fields import BUILTIN_FIELDS, NO_BASELINE
from deployguard.exceptions import ExpressionError, Problem, problems_error
from deployguard.models import Severity
from deployguard.notification.urlsafety import check_allowlist

_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# --------------------------------------------------------------------------- rules

GroupingPart = Literal["deployment_id", "service", "environment", "group", "rule"]


class RateLimit(_Strict):
    """At most ``max_alerts`` announced alerts of one rule and grouping key (one incident) in any ``per_seconds``
    window; the alerts beyond are recorded, join their incident and run its remediation, unannounced."""

    max_alerts: int = Field(default=20, ge=1)
    per_seconds: int = Field(default=3600, ge=1)


def _default_grouping() -> list[GroupingPart]:
    return ["deployment_id", "group"]


class AlertRule(_Strict):
    name: str = Field(pattern=_NAME, max_length=64)
    description: str = ""
    expression: str = Field(min_length=1, description="a condition in the rule language (see alerts.expression)")
    severity: Severity = Severity.ERROR
    routes: list[str] = Field(default_factory=list, description="notification routes/channels of the alert")
    group: str | None = Field(default=None, pattern=_NAME, description="incident group (default: the rule name)")
    grouping_key: list[GroupingPart] = Field(
        default_factory=_default_grouping, min_length=1, description="what makes one incident"
    )
    cooldown_seconds: int = Field(default=300, ge=0, description="no repeat alert of one group within this time")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    environments: list[str] = Field(default_factory=list, description="only in these environments (empty: all)")
    escalation: str | None = Field(
        default=None, description="escalation policy name, 'none' for no paging; default by severity"
    )
    auto_resolve: bool = Field(default=True, description="resolve when the condition has cleared for a while")
    enabled: bool = True

    _compiled: Expression | None = PrivateAttr(default=None)

    @property
    def incident_group(self) -> str:
        return self.group or self.name

    def compile(self, fields: dict[str, Unit] | None = None) -> Expression:
        """Parse and type-check the expression; the error names this rule and the column."""
        try:
            self._compiled = parse(self.expression, fields if fields is not None else BUILTIN_FIELDS, NO_BASELINE)
        except ExpressionError as exc:
            raise exc.for_rule(self.name) from None
        return self._compiled

    @property
    def compiled(self) -> Expression:
        return self._compiled if self._compiled is not None else self.compile()

    def applies_to(self, environment: str | None) -> bool:
        return not self.environments or environment in self.environments


def default_rules() -> list[AlertRule]:
    return [
        AlertRule(
            name="deployment-failed",
            description="a deployment ended failed or was rolled back (CodeDeploy's rollback included)",
            expression='event == "deployment.failed" or event == "rollback.completed"',
            severity=Severity.ERROR,
            group="deployment",
            # one announcement per deployment: its deployment.failed and the rollback.completed that follows
            # (minutes later, for CodeDeploy's own rollback deployment) are one failure; the second joins the
            # incident unannounced
            cooldown_seconds=86400,
            auto_resolve=False,
            escalation="none",
        ),
        AlertRule(
            name="long-running-deployment",
            description="a deployment runs 50% longer than expected",
            expression=(
                'event == "deployment.long_running" or (deployment_status == "in_progress" and duration_ratio > 1.5)'
            ),
            severity=Severity.WARNING,
            group="duration",
            cooldown_seconds=1800,
        ),
        AlertRule(
            name="rollback-failed",
            description="a rollback did not complete: the new version may still take traffic",
            expression='event == "rollback.failed"',
            severity=Severity.CRITICAL,
            group="rollback",
            auto_resolve=False,
            escalation="emergency",
        ),
        AlertRule(
            name="canary-issue",
            description="the judge finds the canary worse than the stable version, or validation failed",
            expression='decision == "failing" or event == "validation.failed"',
            severity=Severity.CRITICAL,
            group="canary",
        ),
        AlertRule(
            name="high-error-rate",
            description="more than 5% of requests fail",
            expression="error_rate > 5%",
            severity=Severity.CRITICAL,
            group="canary",
        ),
        AlertRule(
            name="performance-degradation",
            description="latency or throughput much worse than the baseline",
            expression="response_time_p99 increase > 50% vs baseline or throughput decrease > 30% vs baseline",
            severity=Severity.ERROR,
            group="performance",
        ),
        AlertRule(
            name="business-impact",
            description="conversion or revenue dropped against the baseline",
            expression="conversion_rate_drop > 15% or revenue_per_minute decrease > 20% vs baseline",
            severity=Severity.CRITICAL,
            group="business",
        ),
        AlertRule(
            name="system-overload",
            description="CPU and memory both saturated",
            expression="cpu_utilization > 90% and memory_utilization > 95%",
            severity=Severity.CRITICAL,
            group="overload",
        ),
        AlertRule(
            name="security-signals",
            description=(
                "failed authentications surge against the baseline (3 times its rate, and more than 20), or "
                "security violations are reported (custom metrics)"
            ),
            # traffic-relative: failed authentications per request, or the count against the baseline's put on
            # the canary's requests, so a busy release whose versions fail logins alike never fires; the floor
            # keeps a few stray failures from paging
            expression=(
                "security_violations > 0 or ((failed_authentication_rate increase > 200% vs baseline "
                "or failed_authentications increase > 200% vs baseline) and failed_authentications > 20)"
            ),
            severity=Severity.CRITICAL,
            group="security",
            escalation="emergency",
        ),
        AlertRule(
            name="post-deployment-anomaly",
            description="after promotion, a metric is unusual against the service's own last 24 hours",
            expression='phase == "monitoring" and failing_metrics > 0',
            severity=Severity.ERROR,
            group="post-deployment",
        ),
        AlertRule(
            name="critical-health-score",
            description="health score below 70",
            expression="health_score < 70",
            severity=Severity.CRITICAL,
            group="health",
        ),
        AlertRule(
            name="minimum-health-score",
            description="health score below the production minimum of 85",
            expression="health_score < 85",
            severity=Severity.WARNING,
            group="health",
            environments=["production"],
        ),
    ]


# --------------------------------------------------------------------------- escalation


class EscalationStep(_Strict):
    routes: list[str] = Field(min_length=1, description="who is paged at this step")
    wait_seconds: int = Field(default=300, ge=0, description="time to acknowledge before the next step")


class EscalationPolicy(_Strict):
    steps: list[EscalationStep] = Field(min_length=1)
    repeat_every_seconds: int | None = Field(
        default=900, ge=30, description="after the last step, page its routes again this often (null: stop)"
    )
    max_pages: int = Field(default=20, ge=1, description="pages of one incident at most")


def _standard_policy() -> EscalationPolicy:
    return EscalationPolicy(
        steps=[
            EscalationStep(routes=["oncall-primary"], wait_seconds=300),
            EscalationStep(routes=["oncall-secondary"], wait_seconds=600),
            EscalationStep(routes=["engineering-manager"], wait_seconds=900),
        ],
        repeat_every_seconds=1800,
    )


def _emergency_policy() -> EscalationPolicy:
    return EscalationPolicy(
        steps=[
            EscalationStep(routes=["oncall-primary", "oncall-secondary"], wait_seconds=120),
            EscalationStep(routes=["engineering-manager", "incident-commander"], wait_seconds=300),
        ],
        repeat_every_seconds=300,
    )


class EscalationSettings(_Strict):
    policies: dict[str, EscalationPolicy] = Field(
        default_factory=lambda: {"standard": _standard_policy(), "emergency": _emergency_policy()}
    )
    by_severity: dict[Severity, str] = Field(
        default_factory=lambda: {Severity.CRITICAL: "emergency", Severity.ERROR: "standard"},
        description="policy of an incident by its severity when the rule names none ('none': no paging)",
    )

    @model_validator(mode="after")
    def _known_policies(self) -> EscalationSettings:
        for name in self.policies:
            if not re.match(_NAME, name) or name == "none":
                raise ValueError(f"policies.{name}: policy names are lower-case words, and 'none' is reserved")
        for severity, policy in self.by_severity.items():
            if policy != "none" and policy not in self.policies:
                raise ValueError(f"by_severity.{severity.value}: unknown policy {policy!r}")
        return self

    def policy_for(self, rule_policy: str | None, severity: Severity) -> str | None:
        name = rule_policy or self.by_severity.get(severity)
        return None if name in (None, "none") else name


# --------------------------------------------------------------------------- incidents


class IncidentSettings(_Strict):
    auto_resolve_after_seconds: int = Field(
        default=600, ge=0, description="resolve once every condition of the incident has been clear this long"
    )
    max_alerts_kept: int = Field(default=50, ge=1, description="alert ids kept on the incident record")


# --------------------------------------------------------------------------- remediation

ActionType = Literal[
    "rollback",  # the right rollback for the target: CodeDeploy stop, Lambda alias, or ECS task definition
    "lambda_rollback",
    "codedeploy_stop",
    "lambda_reserved_concurrency",
    "lambda_provisioned_concurrency",
    "ecs_force_new_deployment",
    "ecs_scale",
    "ecs_rollback",
]


class RemediationAction(_Strict):
    type: ActionType
    max_attempts: int = Field(default=3, ge=1, le=10, description="attempts per incident")
    cooldown_seconds: int = Field(default=30, ge=0, description="between two attempts on one target")
    reserved_concurrency: int | None = Field(default=None, ge=0)
    provisioned_concurrency: int | None = Field(default=None, ge=1)
    desired_count: int | None = Field(default=None, ge=0)
    scale_factor: float | None = Field(default=None, gt=0, le=10)
    max_desired_count: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _parameters(self) -> RemediationAction:
        if self.type == "lambda_reserved_concurrency" and self.reserved_concurrency is None:
            raise ValueError("reserved_concurrency is required for lambda_reserved_concurrency")
        if self.type == "lambda_provisioned_concurrency" and self.provisioned_concurrency is None:
            raise ValueError("provisioned_concurrency is required for lambda_provisioned_concurrency")
        if self.type == "ecs_scale" and (self.desired_count is None) == (self.scale_factor is None):
            raise ValueError("ecs_scale needs exactly one of desired_count and scale_factor")
        return self


class PlanStep(_Strict):
    action: str
    mode: Literal["auto", "approval"] = "auto"


class RemediationPlan(_Strict):
    """Which actions an alert leads to. An alert matches when every given filter matches."""

    rules: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    min_severity: Severity | None = None
    environments: list[str] = Field(default_factory=list)
    target_kinds: list[Literal["lambda", "ecs"]] = Field(default_factory=list)
    actions: list[PlanStep] = Field(min_length=1)

    def matches(self, rule: str, group: str, severity: Severity, environment: str, target_kind: str) -> bool:
        return (
            (not self.rules or rule in self.rules)
            and (not self.groups or group in self.groups)
            and (self.min_severity is None or severity.rank >= self.min_severity.rank)
            and (not self.environments or environment in self.environments)
            and (not self.target_kinds or target_kind in self.target_kinds)
        )


class CircuitBreakerSettings(_Strict):
    failure_threshold: int = Field(default=3, ge=1, description="consecutive failed attempts that open it")
    reset_after_seconds: int = Field(default=1800, ge=60, description="automation resumes after this long")
    scope: Literal["target", "global"] = "target"
    page_routes: list[str] = Field(default_factory=lambda: ["oncall-primary"], min_length=1)


def _default_actions() -> dict[str, RemediationAction]:
    return {
        "rollback": RemediationAction(type="rollback", max_attempts=3, cooldown_seconds=10),
        "stop-codedeploy": RemediationAction(type="codedeploy_stop"),
        "shed-load": RemediationAction(type="lambda_reserved_concurrency", reserved_concurrency=50),
        "add-provisioned-concurrency": RemediationAction(
            type="lambda_provisioned_concurrency", provisioned_concurrency=10
        ),
        "ecs-restart": RemediationAction(type="ecs_force_new_deployment"),
        "ecs-scale-out": RemediationAction(type="ecs_scale", scale_factor=1.5),
        "ecs-rollback": RemediationAction(type="ecs_rollback"),
    }


def _default_plans() -> list[RemediationPlan]:
    return [
        # automatic only on the judge's verdict, which is statistically sound; descriptive
        # health readings page people and propose the rollback for approval
        RemediationPlan(rules=["canary-issue"], actions=[PlanStep(action="rollback", mode="auto")]),
        RemediationPlan(
            rules=["high-error-rate", "critical-health-score", "business-impact"],
            actions=[PlanStep(action="rollback", mode="approval")],
        ),
        RemediationPlan(
            rules=["performance-degradation", "post-deployment-anomaly"],
            actions=[PlanStep(action="rollback", mode="approval")],
        ),
        RemediationPlan(
            rules=["system-overload"], target_kinds=["lambda"], actions=[PlanStep(action="shed-load", mode="approval")]
        ),
        RemediationPlan(
            rules=["system-overload"], target_kinds=["ecs"], actions=[PlanStep(action="ecs-scale-out", mode="approval")]
        ),
    ]


class RemediationSettings(_Strict):
    enabled: bool = True
    dry_run: bool = Field(default=False, description="plan and audit actions, never call AWS")
    allowed_targets: list[str] = Field(
        default_factory=list,
        description="targets DeployGuard may change, as globs: 'lambda:checkout-*', 'ecs:prod/checkout' "
        "(the functions of the configured services are always allowed)",
    )
    lock_ttl_seconds: int = Field(default=120, ge=5, le=3600)
    approval_ttl_seconds: int = Field(default=3600, ge=60)
    emergency_deadline_seconds: float = Field(default=30.0, gt=0, description="rollback budget from the decision")
    actions: dict[str, RemediationAction] = Field(default_factory=_default_actions)
    plans: list[RemediationPlan] = Field(default_factory=_default_plans)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)

    @field_validator("allowed_targets")
    @classmethod
    def _target_patterns(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            if not pattern.startswith(("lambda:", "ecs:")):
                raise ValueError(f"allowed_targets.{i}: {pattern!r} must start with 'lambda:' or 'ecs:'")
        return patterns

    @model_validator(mode="after")
    def _known_actions(self) -> RemediationSettings:
        problems: list[Problem] = [
            (("actions", name), "action names are lower-case words")
            for name in self.actions
            if not re.match(_NAME, name)
        ]
        known = ", ".join(sorted(self.actions))
        for i, plan in enumerate(self.plans):
            for j, step in enumerate(plan.actions):
                if step.action not in self.actions:
                    problems.append((("plans", i, "actions", j), f"unknown action {step.action!r} (known: {known})"))
        if problems:
            raise problems_error("RemediationSettings", problems)
        return self


# --------------------------------------------------------------------------- issue trackers


class IssueTrackerSettings(_Strict):
    """An issue tracker every incident opens one issue in (GitHub REST API or Jira Cloud REST API v3)."""

    type: Literal["github", "jira"]
    repository: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$", description="GitHub: owner/name")
    api_url: str = Field(default="https://api.github.com", description="GitHub: the REST API root")
    base_url: str | None = Field(default=None, description="Jira: https://your-site.atlassian.net")
    project_key: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]+$", description="Jira: project")
    issue_type: str = Field(default="Task", description="Jira: issue type of new issues")
    email: str | None = Field(default=None, description="Jira: the account the API token belongs to")
    done_transition: str | None = Field(
        default=None, description="Jira: transition that closes an issue (default: the first into a done status)"
    )
    token_secret: str | None = Field(
        default=None, description="Secrets Manager secret of the API token ('name' or 'name#json_key')"
    )
    token: str | None = Field(default=None, description="a literal token: local mode (DEPLOYGUARD_LOCAL=1) only")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="hosts it may call (default: api.github.com, *.atlassian.net)"
    )
    labels: list[str] = Field(default_factory=lambda: ["deployguard"])
    min_severity: Severity = Field(default=Severity.ERROR, description="incidents below this open no issue")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowlist(cls, value: list[str]) -> list[str]:
        return check_allowlist(value)

    @model_validator(mode="after")
    def _complete(self) -> IssueTrackerSettings:
        needed = ["repository"] if self.type == "github" else ["base_url", "project_key", "email"]
        for name in needed:
            if not getattr(self, name):
                raise ValueError(f"{name} is required for a {self.type} tracker")
        if (self.token_secret is None) == (self.token is None):
            raise ValueError("exactly one of token_secret and token is required")
        return self

    @property
    def url(self) -> str:
        return (self.api_url if self.type == "github" else str(self.base_url)).rstrip("/")

    @property
    def hosts(self) -> list[str]:
        return self.allowed_hosts or (["api.github.com"] if self.type == "github" else ["*.atlassian.net"])


# --------------------------------------------------------------------------- the section


class AlertingSettings(_Strict):
    """The ``alerting:`` section. ``AlertingSettings()`` is the built-in default."""

    enabled: bool = True
    use_default_rules: bool = Field(default=True, description="start from the built-in rules")
    # before rules: the rules' field validator compiles their expressions with these fields
    custom_fields: dict[str, Unit] = Field(
        default_factory=dict, description="metric names rules may use besides the built-in fields, with their unit"
    )
    rules: list[AlertRule] = Field(default_factory=list, description="added to the defaults; same name replaces")
    disabled_rules: list[str] = Field(default_factory=list)
    default_routes: list[str] = Field(default_factory=list, description="routes of rules that name none")
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    remediation: RemediationSettings = Field(default_factory=RemediationSettings)
    issue_trackers: dict[str, IssueTrackerSettings] = Field(
        default_factory=dict, description="GitHub or Jira: one issue per incident, comments, closed on resolve"
    )

    @field_validator("custom_fields")
    @classmethod
    def _field_names(cls, fields: dict[str, Unit]) -> dict[str, Unit]:
        for name in fields:
            if not re.match(r"^[a-z_][a-z0-9_]*$", name):
                raise ValueError(f"custom_fields.{name}: field names are lower-case identifiers")
        return fields

    @field_validator("rules")
    @classmethod
    def _compile_rules(cls, rules: list[AlertRule], info: ValidationInfo) -> list[AlertRule]:
        """Every rule's expression, parsed and type-checked (a field validator: it runs, and reports every
        bad rule, even when another part of the section fails)."""
        if "custom_fields" not in info.data:  # they failed (reported): the expressions are checked once fixed
            return rules
        fields = {**BUILTIN_FIELDS, **info.data["custom_fields"]}
        problems: list[Problem] = []
        names: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.name in names:
                problems.append(((i,), f"rule {rule.name!r} is defined twice"))
                continue
            names.add(rule.name)
            try:
                rule.compile(fields)
            except ExpressionError as exc:
                problems.append(((i, "expression"), str(exc)))
        if problems:
            raise problems_error("AlertingSettings.rules", problems)
        return rules

    @model_validator(mode="wrap")
    @classmethod
    def _compile(cls, data: Any, handler: ModelWrapValidatorHandler[AlertingSettings]) -> AlertingSettings:
        """The names used across the section, every unknown one at once. When another part of the
        section fails, the rules named by remediation plans are still checked (on the input)."""
        try:
            settings = handler(data)
        except ValidationError as exc:
            extra = _plan_rule_problems(data, {_field_path(e["loc"]) for e in exc.errors()})
            if not extra:
                raise
            raise _with_problems(exc, extra) from None
        problems = settings._reference_problems()
        if problems:
            raise problems_error(cls.__name__, problems)
        return settings

    def _reference_problems(self) -> list[Problem]:
        fields = self.fields
        problems: list[Problem] = []
        names = {r.name for r in self.rules}
        rules = self.effective_rules
        for rule in rules:
            if rule.name not in names:
                try:
                    rule.compile(fields)
                except ExpressionError as exc:  # a custom field redefined a built-in one's unit
                    problems.append(((), f"default rule: {exc}"))
        known = {r.name for r in rules} | {r.name for r in default_rules()}
        for i, name in enumerate(self.disabled_rules):
            if name not in known:
                problems.append((("disabled_rules", i), f"unknown rule {name!r}"))
        for rule in rules:
            if rule.escalation not in (None, "none") and rule.escalation not in self.escalation.policies:
                problems.append(((), f"rule {rule.name!r}: unknown escalation policy {rule.escalation!r}"))
        for i, plan in enumerate(self.remediation.plans):
            for name in plan.rules:
                if name not in known:
                    problems.append((("remediation", "plans", i, "rules"), f"unknown rule {name!r}"))
        return problems

    @property
    def fields(self) -> dict[str, Unit]:
        return {**BUILTIN_FIELDS, **self.custom_fields}

    @cached_property
    def effective_rules(self) -> list[AlertRule]:
        """The defaults (when used), replaced or extended by ``rules``, minus ``disabled_rules``."""
        by_name: dict[str, AlertRule] = {}
        if self.use_default_rules:
            by_name.update({r.name: r for r in default_rules()})
        by_name.update({r.name: r for r in self.rules})
        return [r for r in by_name.values() if r.enabled and r.name not in self.disabled_rules]

    def rule(self, name: str) -> AlertRule | None:
        return next((r for r in self.effective_rules if r.name == name), None)


# --------------------------------------------------------------------------- every problem at once


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def _plan_rule_problems(data: Any, reported: set[str]) -> list[Problem]:
    """Unknown rules named by remediation plans, read from the section's input (it failed elsewhere)."""
    rules = _get(data, "rules")
    plans = _get(_get(data, "remediation"), "plans")
    if not isinstance(plans, list):
        return []
    known = {r.name for r in default_rules()}
    known |= (
        {n for n in (_get(r, "name") for r in rules if r is not None) if isinstance(n, str)}
        if isinstance(rules, list)
        else set()
    )
    problems: list[Problem] = []
    for i, plan in enumerate(plans):
        names = _get(plan, "rules") if plan is not None else None
        loc: tuple[int | str, ...] = ("remediation", "plans", i, "rules")
        if not isinstance(names, list) or any(p.startswith(_field_path(loc)) for p in reported):
            continue
        problems += [(loc, f"unknown rule {n!r}") for n in names if isinstance(n, str) and n not in known]
    return problems


def _with_problems(error: ValidationError, problems: list[Problem]) -> ValidationError:
    """``error`` with ``problems`` added (each error keeps its type, place and message)."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(e["type"], "{message}", {"message": e["msg"]}), loc=e["loc"], input=e.get("input")
        )
        for e in error.errors()
    ]
    details += [
        InitErrorDetails(type=PydanticCustomError("value_error", "{message}", {"message": m}), loc=loc, input=None)
        for loc, m in problems
    ]
    return ValidationError.from_exception_data(error.title, details)
