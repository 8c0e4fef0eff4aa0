"""The console's incident verbs (acknowledge, resolve, escalate) go through the alert engine as the CLI's do: the
incident's issues are commented and closed, and a person's escalation page is counted (``IncidentPages``) and
commented. The trackers are local servers on 127.0.0.1 that check the real APIs' request shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from incident_support_it import FUNCTION, canary_in_flight, failing_assessment
from tracker_servers import GITHUB_TOKEN, FakeApi, tracker_servers

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.console import OperationsConsole


@pytest.fixture
def github() -> Iterator[FakeApi]:
    with tracker_servers() as (gh, _jira):
        yield gh


def _console(github: FakeApi) -> tuple[OperationsConsole, AlertEngine, list[tuple[str, int]]]:
    clients.client("secretsmanager").create_secret(
        Name="deployguard/github", SecretString=json.dumps({"token": GITHUB_TOKEN})
    )
    settings = AlertingSettings.model_validate(
        {
            "issue_trackers": {
                "github": {"type": "github", "repository": "acme/shop", "api_url": github.url,
                           "token_secret": "deployguard/github#token", "allowed_hosts": ["127.0.0.1"]},
            },
            "remediation": {"plans": []},  # no rollback: the incident stays open and paged
        }
    )  # fmt: skip
    engine = AlertEngine(
        settings, DeploymentRepository(), EventPublisher(), allowlist=TargetAllowlist([], [FUNCTION]), local_mode=True
    )
    counted: list[tuple[str, int]] = []
    engine.count = lambda name, value: counted.append((name, value))
    return OperationsConsole(reader=None, control=None, alerts=engine), engine, counted  # type: ignore[arg-type]


def test_console_ack_and_resolve_comment_and_close_the_issue(embedded: Any, github: FakeApi) -> None:
    deployment, _ = canary_in_flight(embedded)
    console, engine, _ = _console(github)
    engine.on_assessment(deployment, failing_assessment(deployment))
    canary = next(i for i in engine.incident_store.open_incidents() if i.group == "canary")
    number = canary.issues["github"]["key"]

    console.acknowledge(canary.incident_id, "alice@console", "looking")
    assert github.comments[number][-1] == "Acknowledged by alice@console: looking"
    console.resolve(canary.incident_id, "alice@console", "fixed in 43")

    assert github.issues[number]["state"] == "closed"
    assert engine.incident_store.get(canary.incident_id).status.value == "resolved"


def test_console_escalate_counts_its_page_and_comments_it(embedded: Any, github: FakeApi) -> None:
    deployment, _ = canary_in_flight(embedded)
    console, engine, counted = _console(github)
    engine.on_assessment(deployment, failing_assessment(deployment))  # page 1 of each incident at once
    canary = next(i for i in engine.incident_store.open_incidents() if i.group == "canary")
    number = canary.issues["github"]["key"]
    first_pages = sum(v for name, v in counted if name == "IncidentPages")

    outcome = console.escalate(canary.incident_id, "alice@console", "nobody answers")

    assert outcome.page is not None and outcome.page.page_number == 2
    assert sum(v for name, v in counted if name == "IncidentPages") == first_pages + 1
    assert any("Escalated: page 2" in c for c in github.comments[number])
    trail = [e.action for e in DeploymentRepository().audit_trail(deployment.deployment_id)]
    assert "incident_escalated" in trail
