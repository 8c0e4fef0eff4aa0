"""What a fired rule produces: an :class:`Alert`."""

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from deployguard.models import Model, Severity, new_id, utcnow


class AlertStatus(StrEnum):
    FIRED = "fired"  # announced, and opened or joined an incident
    SUPPRESSED_COOLDOWN = "suppressed_cooldown"  # the same group alerted within the rule's cooldown
    SUPPRESSED_RATE_LIMIT = "suppressed_rate_limit"  # the rule hit its rate limit


def derived_alert_id(source_id: str, rule: str) -> str:
    """The id of the alert ``rule`` raises on the event or assessment ``source_id``: the same on every
    evaluation of it (see :func:`deployguard.alerts.evaluator.alert_id_of`)."""
    return "al-" + hashlib.sha256(f"{source_id}#{rule}".encode()).hexdigest()[:24]


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
    # when it was raised (the evaluation's time); a retry of the alert engine raising the same alert
    # (derived id) takes the first raise's, from its stored record (IncidentRepository.add_alert)
    at: datetime = Field(default_factory=utcnow)

    @property
    def derived(self) -> bool:
        """Whether its id comes from its source, an event or an assessment: every evaluation of that source
        raises this very alert, so whatever is written of it is written once (its record, audit entry
        and event). False for the tick's deployment-only rules (a new id on every tick)."""
        source = self.event_id if self.event_id is not None else self.assessment_id
        return source is not None and self.alert_id == derived_alert_id(source, self.rule)
