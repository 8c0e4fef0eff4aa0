"""A retried alert (the outbox runs the alert engine again on the same event after a run that failed
part-way) is the same alert, under the same id (``alert_id_of``): it takes its rule's rate-limit slot
once. The real engine through the outbox on the embedded AWS; the fault is DynamoDB refusing the alert's
record (9 throttles: every attempt of one call, through botocore hooks); time is the simulated clock."""

from __future__ import annotations

from typing import Any

from incident_support_it import canary_in_flight, engine

from deployguard import clock
from deployguard.alerts.models import AlertStatus
from deployguard.alerts.settings import AlertingSettings
from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.storage import outbox
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.emulator import EmbeddedAws

ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call
ONE_AN_HOUR = AlertingSettings.model_validate(
    {
        "use_default_rules": False,
        "rules": [
            {"name": "rollback-failed", "expression": 'event == "rollback.failed"', "severity": "critical",
             "cooldown_seconds": 0, "rate_limit": {"max_alerts": 1, "per_seconds": 3600}, "escalation": "none"}
        ],
    }
)  # fmt: skip


def _alert_record(request: Any) -> bool:
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
    return '"ALERT#' in body


def _audit(deployment_id: str, action: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == action]


def _rollback_failed(deployment: Any) -> DeploymentEvent:
    return DeploymentEvent.about(deployment, EventType.ROLLBACK_FAILED, "Rollback failed",
                                 "the alias could not be moved", severity=Severity.CRITICAL)  # fmt: skip


def test_a_retried_alert_takes_its_rate_limit_slot_once(embedded: EmbeddedAws, faults: FaultInjector) -> None:
    """The rule allows one alert an hour. The first run takes the slot, then DynamoDB refuses the alert's
    record: the run fails. The drain's retry raises the same alert: it is not rate limited (its slot is
    its own), it is recorded fired, once. A different alert of the rule afterwards finds the hour's one
    slot taken: the retry did not count twice, and the limit still holds."""
    deployment, _ = canary_in_flight(embedded)
    eng = engine(ONE_AN_HOUR)
    repository = DeploymentRepository()
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_alert_record)
    outbox.announce(repository, eng.publisher, _rollback_failed(deployment), alert=eng.on_event)
    assert plan.injected == 9 and len(_audit(deployment.deployment_id, "alerting_failed")) == 1

    embedded.clock.advance(61)
    outbox.drain(repository, eng.publisher, repository.outbox(clock.now()), alert=eng.on_event)
    assert _audit(deployment.deployment_id, "alert_rate_limited") == []
    [alert] = eng.incident_store.alerts(deployment.deployment_id)
    assert alert.status == AlertStatus.FIRED
    assert len(_audit(deployment.deployment_id, "alert_raised")) == 1

    embedded.clock.advance(60)
    [other] = eng.on_event(_rollback_failed(deployment), deployment)  # another event: another alert
    assert other.alert_id != alert.alert_id and other.status == AlertStatus.SUPPRESSED_RATE_LIMIT
    assert len(_audit(deployment.deployment_id, "alert_rate_limited")) == 1
