"""A verb's effect lands but its audit entry (or announcement) cannot be written (DynamoDB throttles every
attempt of that PutItem): the verb goes on the record with its effect (``CanaryControl.unreported``), so the
next request about the deployment writes the entry and the announcement, once, under the first person's name.
Faults through botocore's hooks on the embedded AWS (``FaultInjector``); the real control service."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.retries import standard
from control_support import canary_in_flight, control_service

from deployguard import clock
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, EventType
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import REPORT_GRACE, ControlRequest

THROTTLED = ["throttle"] * 20  # more than botocore's attempts: the write fails for good


def _body(request: Any) -> str:
    body = getattr(request, "body", b"") or b""
    return body.decode() if isinstance(body, bytes) else str(body)


def _trail(deployment_id: str) -> list[tuple[str, str, Any]]:
    entries = DeploymentRepository().audit_trail(deployment_id)
    return [(e.action, e.actor, e.details.get("outcome")) for e in entries if e.action.startswith(("control_", "rol"))]


def _events(deployment_id: str) -> list[tuple[str, str]]:
    return [(e.event_type.value, e.title) for e in DeploymentRepository().events(deployment_id)]


@pytest.mark.parametrize(
    ("verb", "audited"),
    [("skip_analysis", "control_skip_analysis"), ("abort", "rolled_back"), ("pause", "control_pause")],
)
def test_a_lost_audit_write_is_finished_by_the_next_request(
    embedded: Any, faults: Any, verb: str, audited: str
) -> None:
    name = f"{verb.replace('_', '-')}-api"
    target = canary_in_flight(embedded, name)
    did = f"dep-{name}"
    plan = faults.on(
        "dynamodb", "PutItem", THROTTLED, when=lambda r: f'"{audited}"' in _body(r) and "AUDIT#" in _body(r)
    )
    with pytest.raises(ClientError, match="Throttling"):
        control_service(embedded).apply(did, ControlRequest(verb=verb, actor="alice", reason="first"))  # type: ignore[arg-type]
    assert plan.injected > 1
    faults.clear()
    record = DeploymentRepository().get_deployment(did)
    assert (record.control.skip_analysis, record.control.paused) == (verb == "skip_analysis", verb == "pause")
    if verb == "abort":
        assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    assert _trail(did) == [] and _events(did) == []  # lost so far: the first request failed

    again = control_service(embedded).apply(did, ControlRequest(verb=verb, actor="bob", reason="again"))  # type: ignore[arg-type]
    assert not again.changed
    done = [("rolled_back", "alice", None)] if verb == "abort" else []
    assert _trail(did) == [*done, (f"control_{verb}", "alice", "done"), (f"control_{verb}", "bob", "unchanged")]
    title = f"Canary {verb.replace('_', ' ').title()} by alice"
    rolled = [(EventType.ROLLBACK_COMPLETED.value, "Rollback Completed")] if verb == "abort" else []
    assert sorted(_events(did)) == sorted([*rolled, (EventType.CONTROL_ACTION.value, title)])
    assert DeploymentRepository().get_deployment(did).control.unreported == []

    control_service(embedded).apply(did, ControlRequest(verb=verb, actor="carol", reason="third"))  # type: ignore[arg-type]
    assert len(_events(did)) == len(rolled) + 1  # announced once
    assert [a for a in _trail(did) if a[2] == "done"] == [(f"control_{verb}", "alice", "done")]


def test_a_lost_announcement_is_finished_by_another_verb(embedded: Any, faults: Any) -> None:
    """The audit entry was written but the announcement's outbox write failed: resume (another verb) writes the
    pause's announcement first, and the pause's entry stays single."""
    canary_in_flight(embedded, "paused-api")
    plan = faults.on(
        "dynamodb", "PutItem", THROTTLED, when=lambda r: "EVENT#" in _body(r) and "Canary Pause by alice" in _body(r)
    )
    with pytest.raises(ClientError):
        control_service(embedded).apply("dep-paused-api", ControlRequest(verb="pause", actor="alice", reason="look"))
    assert plan.injected > 1
    faults.clear()
    assert _trail("dep-paused-api") == [("control_pause", "alice", "done")] and _events("dep-paused-api") == []
    resumed = control_service(embedded).apply(
        "dep-paused-api", ControlRequest(verb="resume", actor="bob", reason="fine")
    )
    assert resumed.changed
    assert _trail("dep-paused-api") == [("control_pause", "alice", "done"), ("control_resume", "bob", "done")]
    assert [t for _, t in _events("dep-paused-api")] == ["Canary Pause by alice", "Canary Resume by bob"]
    assert DeploymentRepository().get_deployment("dep-paused-api").control.unreported == []


def _tick(embedded: Any, function: str) -> None:
    from deployguard import clock

    event = {"version": "0", "id": "tick", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": clock.now().isoformat(), "region": "us-east-1",
             "resources": [], "detail": {}}  # fmt: skip
    out, failed = embedded.invoke(function, event)
    assert not failed, out


@pytest.mark.parametrize(("verb", "audited", "function"), [
    ("pause", "control_pause", "AssessorFunction"),  # a canary in progress: the minute tick
    ("abort", "rolled_back", "TrafficCheckFunction"),  # an ended one: its traffic checks
])  # fmt: skip
def test_nobody_asks_again_and_the_schedule_writes_them(
    embedded: Any, faults: Any, verb: str, audited: str, function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore's back-off between the throttled attempts moves the simulated clock by a random amount (up to a minute
    # and more): here none, so the tick below is within the verb's minute for certain
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    canary_in_flight(embedded, "quiet-api")
    faults.on("dynamodb", "PutItem", THROTTLED, when=lambda r: f'"{audited}"' in _body(r) and "AUDIT#" in _body(r))
    with pytest.raises(ClientError):
        control_service(embedded).apply("dep-quiet-api", ControlRequest(verb=verb, actor="alice", reason="first"))  # type: ignore[arg-type]
    faults.clear()
    asked = DeploymentRepository().get_deployment("dep-quiet-api").control.unreported[0].at
    _tick(embedded, function)  # within the minute: the request might still be writing them
    assert clock.now() - asked < REPORT_GRACE
    assert _trail("dep-quiet-api") == []
    embedded.clock.advance(90)
    _tick(embedded, function)
    done = [("rolled_back", "alice", None)] if verb == "abort" else []
    assert _trail("dep-quiet-api") == [*done, (f"control_{verb}", "alice", "done")]
    assert f"Canary {verb.title()} by alice" in [t for _, t in _events("dep-quiet-api")]
    assert DeploymentRepository().get_deployment("dep-quiet-api").control.unreported == []
    _tick(embedded, function)
    assert len(_trail("dep-quiet-api")) == len(done) + 1  # once


def test_a_report_that_still_cannot_be_written_never_blocks_an_abort(embedded: Any, faults: Any) -> None:
    """The pause's announcement cannot be written for as long as the abort takes: the abort is done and reported
    all the same, and the pause's report waits on the record for the next request."""
    target = canary_in_flight(embedded, "stuck-api")
    faults.on("dynamodb", "PutItem", ["throttle"] * 40, when=lambda r: "Canary Pause by alice" in _body(r))
    with pytest.raises(ClientError):
        control_service(embedded).apply("dep-stuck-api", ControlRequest(verb="pause", actor="alice", reason="look"))
    aborted = control_service(embedded).apply("dep-stuck-api", ControlRequest(verb="abort", actor="bob", reason="bad"))
    assert aborted.changed
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    assert [r.verb for r in DeploymentRepository().get_deployment("dep-stuck-api").control.unreported] == ["pause"]
    faults.clear()
    control_service(embedded).apply("dep-stuck-api", ControlRequest(verb="abort", actor="carol", reason="again"))
    titles = [t for _, t in _events("dep-stuck-api")]
    assert sorted(titles) == ["Canary Abort by bob", "Canary Pause by alice", "Rollback Completed"]
    assert DeploymentRepository().get_deployment("dep-stuck-api").control.unreported == []
