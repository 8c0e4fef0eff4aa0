"""Settings of the CodeDeploy lifecycle hooks: the checks, their budgets, the post-traffic window.

A validation that could outlast CodeDeploy's one-hour hook limit is refused when the
configuration loads, naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# CodeDeploy fails a hook after one hour; DeployGuard keeps well inside it
MAX_HOOK_SECONDS = 3000.0


class CheckSettings(BaseModel):
    """One pre-traffic check."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    type: Literal["lambda_invoke", "http", "tcp", "alarms", "baseline"]
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    critical: bool = True
    # lambda_invoke: the new version is invoked with this payload
    payload: dict[str, Any] = Field(default_factory=dict)
    expect_status_code: int | None = Field(default=200, description="statusCode the response must carry, if any")
    expect_fields: dict[str, Any] = Field(default_factory=dict, description="fields the (JSON) body must hold")
    # http
    url: str | None = None
    expect_status: int = 200
    max_response_ms: float | None = Field(default=None, gt=0)
    wait_until_healthy_seconds: float = Field(default=0.0, ge=0, le=1800)
    allowed_hosts: list[str] = Field(default_factory=list)
    # tcp
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # alarms: none of these may be in ALARM
    alarm_names: list[str] = Field(default_factory=list)
    alarm_prefix: str | None = None
    # baseline: the stable version's recent metrics, stored for later comparison
    baseline_minutes: int = Field(default=15, ge=1, le=180)

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
    def worst_case_seconds(self) -> float:
        attempts = self.retries + 1
        backoff = sum(self.backoff_seconds * 2**i for i in range(self.retries))
        return attempts * self.timeout_seconds + backoff + self.wait_until_healthy_seconds


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


class HookSettings(BaseModel):
    """The ``hooks:`` section of a service."""

    model_config = ConfigDict(extra="forbid")

    pre_traffic: list[CheckSettings] = Field(default_factory=_default_checks)
    post_traffic_window_seconds: int = Field(default=600, ge=60, le=3600)
    fail_post_traffic_on_inconclusive: bool = False
    report_margin_seconds: float = Field(default=15.0, ge=1, le=300, description="kept to answer CodeDeploy")

    @model_validator(mode="after")
    def _inside_the_hook_limit(self) -> HookSettings:
        names = [c.name for c in self.pre_traffic]
        if len(set(names)) != len(names):
            raise ValueError("pre_traffic: check names must be unique")
        total = sum(c.worst_case_seconds for c in self.pre_traffic) + self.report_margin_seconds
        if total > MAX_HOOK_SECONDS:
            raise ValueError(
                f"pre_traffic: the checks could take {total:.0f} s (timeouts x attempts + backoff + waits), "
                f"more than the {MAX_HOOK_SECONDS:.0f} s DeployGuard allows inside CodeDeploy's one-hour hook limit"
            )
        return self
