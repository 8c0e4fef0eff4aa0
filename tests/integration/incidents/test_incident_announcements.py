"""An incident's acknowledgement or resolution is always announced, once: a person acts from the CLI
while DynamoDB refuses the record of the announcement (every attempt of that one PutItem throttled,
injected by botocore hooks); the change stands, and the assessor's minute tick (the AssessorFunction
on the embedded AWS) records and publishes the event and writes the audit entry, each once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from incident_support_it import canary_in_flight, engine, failing_assessment
from tick_support import minute_tick

from deployguard.incidents.models import IncidentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import incidents_cli
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[3]
ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = incidents_cli.main([*argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.err


def _tick(embedded: EmbeddedAws) -> None:
    minute_tick(embedded)


def _event_record_of(kind: str) -> Any:
    """A plan's ``when``: the PutItem of the stored event (history ``EVENT#``) of this kind."""

    def matches(request: Any) -> bool:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return "EVENT#" in body and kind in body

    return matches


def _kinds(deployment_id: str, incident_id: str) -> Counter[str]:
    return Counter(
        str(e.details.get("kind"))
        for e in DeploymentRepository().events(deployment_id)
        if e.details.get("incident_id") == incident_id
    )


def _audited(deployment_id: str, incident_id: str) -> Counter[str]:
    return Counter(
        a.action
        for a in DeploymentRepository().audit_trail(deployment_id)
        if a.details.get("incident_id") == incident_id
    )


@pytest.mark.parametrize(
    ("verb", "kind", "status", "retry_error"),
    [
        ("ack", "incident_acknowledged", IncidentStatus.ACKNOWLEDGED, ""),  # the same person: idempotent
        ("resolve", "incident_resolved", IncidentStatus.RESOLVED, "already resolved"),
    ],
)
def test_an_announcement_whose_record_is_refused_is_written_by_the_minute_tick_once(
    embedded: EmbeddedAws,
    faults: FaultInjector,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    kind: str,
    status: IncidentStatus,
    retry_error: str,
) -> None:
    deployment, _ = canary_in_flight(embedded)
    engine().on_assessment(deployment, failing_assessment(deployment))
    store = engine().incident_store
    incident = next(i for i in store.open_incidents() if i.group == "canary")
    assert _kinds(deployment.deployment_id, incident.incident_id)["incident_opened"] == 1

    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_event_record_of(kind))
    args = [verb, incident.incident_id, "--by", "alice"] + (["--notes", "rolled back"] if verb == "resolve" else [])
    code, answer = _cli(capsys, *args)
    assert plan.injected == 9
    assert code == 0, answer  # the person's change is taken; its announcement is not their problem
    stored = store.get(incident.incident_id)
    assert stored.status == status and [a.kind for a in stored.announcements] == [kind]  # noted, not lost
    assert _kinds(deployment.deployment_id, incident.incident_id)[kind] == 0

    code, answer = _cli(capsys, *args)  # the person tries again: the change is done already
    if retry_error:
        assert code != 0 and retry_error in answer
    else:  # acknowledged by them already: taken again, nothing written (the note is the tick's)
        assert code == 0, answer
        assert [a.kind for a in store.get(incident.incident_id).announcements] == [kind]

    published_before = len(faults.published)
    _tick(embedded)
    assert _kinds(deployment.deployment_id, incident.incident_id)[kind] == 1
    assert store.get(incident.incident_id).announcements == []
    out = [m for m in faults.published[published_before:] if m.get("details", {}).get("kind") == kind]
    assert len(out) == 1 and out[0]["details"]["incident_id"] == incident.incident_id
    assert _audited(deployment.deployment_id, incident.incident_id)[kind] == 1

    embedded.clock.advance(60)
    _tick(embedded)  # nothing twice
    assert _kinds(deployment.deployment_id, incident.incident_id)[kind] == 1
    assert _audited(deployment.deployment_id, incident.incident_id)[kind] == 1
    if status == IncidentStatus.RESOLVED:  # announced: no longer listed for the tick
        assert incident.incident_id not in {i.incident_id for i in store.announcing()}


def test_an_opening_whose_audit_entry_is_refused_is_announced_by_the_minute_tick(
    embedded: EmbeddedAws, faults: FaultInjector
) -> None:
    """The incident is opened (its key claimed), the audit entry of the opening is refused: the alert goes
    on (remediation, paging) and the tick writes the entry and records the ``incident_opened`` event."""
    deployment, _ = canary_in_flight(embedded)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_audit_of("incident_opened"))
    engine().on_assessment(deployment, failing_assessment(deployment))
    assert plan.injected == 9
    store = engine().incident_store
    incident = next(i for i in store.open_incidents() if i.group == "canary")
    assert [a.kind for a in store.get(incident.incident_id).announcements] == ["incident_opened"]
    assert _kinds(deployment.deployment_id, incident.incident_id)["incident_opened"] == 0
    _tick(embedded)
    assert _kinds(deployment.deployment_id, incident.incident_id)["incident_opened"] == 1
    assert _audited(deployment.deployment_id, incident.incident_id)["incident_opened"] == 1
    assert store.get(incident.incident_id).announcements == []


def _audit_of(action: str) -> Any:
    def matches(request: Any) -> bool:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return "AUDIT#" in body and action in body

    return matches
