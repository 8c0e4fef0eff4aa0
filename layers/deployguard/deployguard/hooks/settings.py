"""Settings of the CodeDeploy lifecycle hooks: the checks, their budgets, the post-traffic window.

This is the ``hooks:`` section of a service (``defaults.hooks`` / ``services.<name>.hooks``).
A validation that could outlast CodeDeploy's one-hour hook limit is refused when the
configuration loads, naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployguard.notification.urlsafety import check_allowlist

# CodeDeploy fails a hook after one hour, but the hook function itself runs at most 900 s
# (its Timeout in template.yaml, Lambda's maximum): every check and the answer must fit in that
CODEDEPLOY_HOOK_LIMIT_SECONDS = 3600.0
HOOK_FUNCTION_TIMEOUT_SECONDS = 900.0
MAX_HOOK_SECONDS = HOOK_FUNCTION_TIMEOUT_SECONDS

CheckType = Literal["lambda_invoke", "http", "tcp", "alarms", "baseline"]
EcsHook = Literal["BeforeInstall", "AfterInstall", "AfterAllowTestTraffic", "BeforeAllowTraffic"]


class CheckSettings(BaseModel):
    """One pre-traffic check."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    type: CheckType
    timeout_seconds: float = Field(default=10.0, gt=0, le=600, description="budget of one attempt")
    retries: int = Field(default=2, ge=0, le=10, description="attempts after the first")
    backoff_seconds: float = Field(default=1.0, ge=0, le=60, description="pause before retry n: backoff * 2**n")
    critical: bool = Field(default=True, description="a failure fails the hook; else it is a warning")
    # lambda_invoke: the new version is invoked with this payload
    payload: dict[str, Any] = Field(default_factory=dict)
    expect_status_code: int | None = Field(default=200, description="statusCode the response must carry, if any")
    expect_fields: dict[str, Any] = Field(default_factory=dict, description="fields the (JSON) body must hold")
    # http
    url: str | None = None
    expect_status: int = Field(default=200, ge=100, le=599)
    max_response_ms: float | None = Field(default=None, gt=0)
    wait_until_healthy_seconds: float = Field(default=0.0, ge=0, le=1800, description="keep polling until healthy")
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    allowed_hosts: list[str] = Field(default_factory=list, description="allowlist of hosts for http and tcp")
    # tcp
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # alarms: none of these may be in ALARM
    alarm_names: list[str] = Field(default_factory=list)
    alarm_prefix: str | None = None
    # baseline: the stable version's recent metrics, stored for later comparison
    baseline_minutes: int = Field(default=15, ge=1, le=180)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowlist(cls, value: list[str]) -> list[str]:
        return check_allowlist(value)

    @model_validator(mode="after")
    def _needs(self) -> CheckSettings:
        if self.type == "http" and not self.url:
            raise ValueError("url: an http check needs a url")
        if self.type == "tcp" and (not self.host or not self.port):
            raise ValueError("host, port: a tcp check needs both")
        if self.type == "alarms" and not (self.alarm_names or self.alarm_prefix):
            raise ValueError("alarm_names or alarm_prefix: an alarms check needs one")
        return self

    @property
    def attempt_seconds(self) -> float:
        """The budget of one attempt (an http check may keep polling until healthy within it)."""
        return self.timeout_seconds + self.wait_until_healthy_seconds

    @property
    def worst_case_seconds(self) -> float:
        """Every attempt used to its budget plus every backoff pause."""
        backoff = sum(self.backoff_seconds * 2**i for i in range(self.retries))
        return (self.retries + 1) * self.attempt_seconds + backoff


def _default_checks() -> list[CheckSettings]:
    return [
        CheckSettings(
            name="smoke-test", description="invoke the new version and expect statusCode 200", type="lambda_invoke"
        ),
        CheckSettings(
            name="baseline",
            description="capture the stable version's recent metrics",
            type="baseline",
            critical=False,
        ),
    ]


def _default_ecs_check_hooks() -> list[EcsHook]:
    return ["AfterAllowTestTraffic"]


class HookSettings(BaseModel):
    """The ``hooks:`` section of a service."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    pre_traffic: list[CheckSettings] = Field(default_factory=_default_checks)
    post_traffic_window_seconds: int = Field(default=600, ge=60, le=3600, description="what the judge looks at")
    fail_post_traffic_on_inconclusive: bool = Field(
        default=False,
        description="AfterAllowTraffic: fail when too little traffic left the judge inconclusive; "
        "missing evidence of a guarded metric fails it whatever this says",
    )
    report_margin_seconds: float = Field(default=15.0, ge=1, le=300, description="kept to answer CodeDeploy")
    ecs_check_hooks: list[EcsHook] = Field(
        default_factory=_default_ecs_check_hooks,
        description="ECS hooks that run the pre-traffic checks; the other ECS hooks before traffic succeed",
    )
    codedeploy_applications: list[str] = Field(
        default_factory=list,
        description="CodeDeploy applications (or application/group) deployed as this service; "
        "by default a deployment belongs to the service named as its application",
    )

    @model_validator(mode="after")
    def _inside_the_hook_limit(self) -> HookSettings:
        names = [c.name for c in self.pre_traffic]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"pre_traffic: check names must be unique ({', '.join(duplicates)})")
        total = sum(c.worst_case_seconds for c in self.pre_traffic) + self.report_margin_seconds
        if total > MAX_HOOK_SECONDS:
            longest = max(self.pre_traffic, key=lambda c: c.worst_case_seconds)
            raise ValueError(
                f"pre_traffic: the checks could take {total:.0f} s (timeout_seconds x attempts + backoff + "
                f"wait_until_healthy_seconds + report_margin_seconds), more than the {MAX_HOOK_SECONDS:.0f} s "
                "the hook function may run (its timeout, inside CodeDeploy's one-hour hook limit); the longest is "
                f"pre_traffic.{self.pre_traffic.index(longest)} ({longest.name!r}, {longest.worst_case_seconds:.0f} s)"
            )
        return self

    @property
    def worst_case_seconds(self) -> float:
        return sum(c.worst_case_seconds for c in self.pre_traffic) + self.report_margin_seconds
