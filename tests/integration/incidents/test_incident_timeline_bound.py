"""An open incident that alerts keep joining: its record stays under DynamoDB's item size, its timeline bounded
(the first entries, "N entries omitted", the newest), as the CLI and the console show it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deployguard import clock
from deployguard.alerts.models import Alert
from deployguard.alerts.settings import AlertingSettings
from deployguard.incidents.models import TIMELINE_FIRST, TIMELINE_OMITTED
from deployguard.incidents.repository import IncidentRepository
from deployguard.incidents.service import IncidentService
from deployguard.models import Severity
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import cli

JOINS = 60
MESSAGE = "canary-issue: errors: canary 8.1% against baseline 0.4%; " + "latency p99 812 ms against 240 ms; " * 220


def _alert(at: Any) -> Alert:
    return Alert(
        rule="canary-issue", group="canary", grouping_key="canary#orders-api#production", severity=Severity.CRITICAL,
        source="assessment", deployment_id="dep-1", service="orders-api", environment="production", version="7",
        title="Canary issue", message=MESSAGE, expression="canary.error_rate > baseline.error_rate",
        auto_resolve=False, at=at,
    )  # fmt: skip


def _stored_size(incident_id: str) -> int:
    item = DeploymentRepository().table.get_item(Key={"pk": f"INCIDENT#{incident_id}", "sk": "META"})["Item"]
    return len(json.dumps(item, default=str).encode())


def test_an_incident_joined_by_many_large_alerts_stays_storable_and_says_what_it_left_out(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    service = IncidentService(AlertingSettings(), IncidentRepository(DeploymentRepository()))
    # ~8 KB a joined alert: unbounded, the 50th join passed DynamoDB's 400 KB and every later alert of the key failed
    first_alert = _alert(clock.now())
    incident, _ = service.open_or_join(first_alert)
    for _ in range(JOINS):
        embedded.clock.advance(300)  # the group's cooldown: one join every 5 minutes
        incident, _ = service.open_or_join(_alert(clock.now()))
    stored = IncidentRepository(DeploymentRepository()).get(incident.incident_id)
    assert stored.alert_count == JOINS + 1
    assert _stored_size(incident.incident_id) < 200_000
    actions = [t.action for t in stored.timeline]
    assert actions[0] == "opened" and stored.timeline[0].details["alert_id"] == first_alert.alert_id
    [omitted] = [t for t in stored.timeline if t.action == TIMELINE_OMITTED]
    assert actions.index(TIMELINE_OMITTED) == TIMELINE_FIRST
    kept_joins = actions.count("alert_joined")
    assert omitted.details["omitted"] + kept_joins == JOINS  # every join: kept, or counted as left out
    assert omitted.notes == f"{omitted.details['omitted']} entries omitted"
    assert stored.timeline[-1].at == clock.now()  # the newest kept
    assert [t.at for t in stored.timeline] == sorted(t.at for t in stored.timeline)

    code = cli.main(["incidents", "show", incident.incident_id, "--table", embedded.ref("DeploymentsTable")])
    out = capsys.readouterr().out
    assert code == 0 and f"{omitted.details['omitted']} entries omitted" in out
