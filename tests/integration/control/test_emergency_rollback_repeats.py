"""Emergency rollbacks on the embedded AWS (the real control service, faults through botocore's hooks):
an announcement whose outbox write failed is recorded by the repeat of the request, once; and a version put
live again by a later deployment hours after its first emergency rollback can be rolled back again."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from control_support import control_service, promoted

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Deployment, DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import EmergencyRollbackRequest


def _body(request: Any) -> str:
    body = getattr(request, "body", b"") or b""
    return body.decode() if isinstance(body, bytes) else str(body)


def _request(actor: str = "alice", reason: str = "bad") -> EmergencyRollbackRequest:
    return EmergencyRollbackRequest(
        service="payments-api", actor=actor, reason=reason, confirm="payments-api", from_version="2"
    )


def _emergency_events(deployment_id: str) -> list[str]:
    return [e.title for e in DeploymentRepository().events(deployment_id) if e.title == "Emergency Rollback"]


def test_a_lost_announcement_is_recorded_by_the_repeat(embedded: Any, faults: Any) -> None:
    target = promoted(embedded, "payments-api")
    plan = faults.on(
        "dynamodb",
        "PutItem",
        ["throttle"] * 20,
        when=lambda r: "EVENT#" in _body(r) and "Emergency Rollback" in _body(r),
    )
    with pytest.raises(ClientError):
        control_service(embedded).emergency_rollback(_request())
    assert plan.injected > 1
    faults.clear()
    assert LambdaTrafficShifter(target).current().function_version == "1"
    assert DeploymentRepository().get_deployment("dep-payments-api").decision == "emergency_rolled_back"
    assert _emergency_events("dep-payments-api") == []

    repeat = control_service(embedded).emergency_rollback(_request())
    assert not repeat.changed and repeat.message == "already rolled back from version 2"
    assert _emergency_events("dep-payments-api") == ["Emergency Rollback"]
    control_service(embedded).emergency_rollback(_request())
    assert _emergency_events("dep-payments-api") == ["Emergency Rollback"]  # once
    audited = [e for e in DeploymentRepository().audit_trail("dep-payments-api") if e.action == "emergency_rollback"]
    assert len(audited) == 1


def test_the_same_version_rolled_back_again_after_a_later_deployment(embedded: Any) -> None:
    target = promoted(embedded, "payments-api")
    first = control_service(embedded).emergency_rollback(_request())
    assert first.changed and first.deployment_id == "dep-payments-api"
    embedded.clock.advance(3 * 3600)
    again = Deployment(deployment_id="dep-payments-api-2", service="payments-api", environment="production",
                       version="2", target=target, status=DeploymentStatus.SUCCEEDED, decision="promoted",
                       canary_weight=1.0)  # fmt: skip
    DeploymentRepository().create_deployment(again)
    LambdaTrafficShifter(target).promote()

    second = control_service(embedded).emergency_rollback(_request("bob", "bad again"))
    assert second.changed and (second.deployment_id, second.to_version) == ("dep-payments-api-2", "1")
    assert LambdaTrafficShifter(target).current().function_version == "1"
    assert DeploymentRepository().get_deployment("dep-payments-api-2").decision == "emergency_rolled_back"
    assert _emergency_events("dep-payments-api-2") == ["Emergency Rollback"]
    assert _emergency_events("dep-payments-api") == ["Emergency Rollback"]
    repeat = control_service(embedded).emergency_rollback(_request("bob", "bad again"))
    assert not repeat.changed and repeat.deployment_id == "dep-payments-api-2"
    assert _emergency_events("dep-payments-api-2") == ["Emergency Rollback"]
