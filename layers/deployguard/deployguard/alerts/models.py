"""What a fired rule produces: an :class:`Alert`."""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from deployguard.models import Model, Severity, new_id, utcnow


class AlertStatus(StrEnum):
    FIRED = "fired"  # announced, and opened or joined an incident
    SUPPRESSED_COOLDOWN = "suppressed_cooldown"  # the same group alerted within the rule's cooldown
    SUPPRESSED_RATE_LIMIT = "suppressed_rate_limit"  # the rule hit its rate limit


class Alert(Model):
    alert_id: str = Field(default_factory=lambda: new_id("al"))
    rule: str
    group: str
    grouping_key: str
    severity: Severity
    status: AlertStatus = AlertStatus.FIRED
    source: Literal["assessment", "event"]
    deployment_id: str
    service: str
    environment: str
    version: str
    stable_version: str | None = Field(default=None, description="what the new version is compared with")
    title: str
    message: str
    expression: str
    values: dict[str, float | str | None] = Field(default_factory=dict, description="the fields the rule read")
    baseline: dict[str, float | None] = Field(default_factory=dict)
    routes: list[str] = Field(default_factory=list)
    escalation_policy: str | None = None
    auto_resolve: bool = True
    assessment_id: str | None = None
    event_id: str | None = None
    incident_id: str | None = None
    at: datetime = Field(default_factory=utcnow)
