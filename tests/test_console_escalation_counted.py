"""A page a person asks for (the console's escalate, through the console write function's HTTP API) is
counted in IncidentPages like the pages the alert engine sends on its own: the EMF records the functions
print, summed as CloudWatch would, equal the pages the incident records; the page reaches the receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployguard.alerts.models import Alert
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import Severity
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws
from deployguard_local.receivers import LocalReceivers, local_receivers


def _incident_pages(output: str) -> float:
    """IncidentPages summed over the EMF records printed (namespace DeployGuard, dimension service)."""
    total = 0.0
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == "IncidentPages" for m in directive["Metrics"]):
                assert directive["Dimensions"] == [["service"]], directive
                value = record["IncidentPages"]
                total += sum(value) if isinstance(value, list) else value
    return total


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    with local_receivers(echo=None) as receivers:
        pagerduty = {"type": "pagerduty", "url": receivers.urls["pagerduty"], "routing_key": "rk"}
        notifications = {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {"ops-pagerduty": pagerduty, "ops-slack": {"type": "slack", "url": receivers.urls["slack"]}},
            "roles": {
                name: {"channels": ["ops-pagerduty", "ops-slack"]}
                for name in ("oncall-primary", "oncall-secondary", "engineering-manager")
            },
        }
        config = tmp_path / "deployguard.yaml"
        config.write_text(yaml.safe_dump({"environment": "production", "notifications": notifications}), "utf-8")
        with EmbeddedAws(config_file=config) as aws:
            yield aws, receivers


def _escalate(incident_id: str) -> dict[str, Any]:
    """The console's escalate as API Gateway sends it to the console write function (a writer's token)."""
    event = json.loads((REPO_ROOT / "events" / "console_api_pause.json").read_text(encoding="utf-8"))
    path = f"/api/incidents/{incident_id}/escalate"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["body"] = json.dumps({"notes": "the database team, now"})
    return event


def test_a_page_a_person_asks_for_is_counted_like_the_automatic_ones(
    stack: tuple[EmbeddedAws, LocalReceivers], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, receivers = stack
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: the functions print their EMF
    alert = Alert(rule="canary-issue", group="canary", grouping_key="dg-1#canary", severity=Severity.CRITICAL,
                  source="assessment", deployment_id="dg-1", service="checkout-api", environment="production",
                  version="2", title="canary failing", message="errors 4x baseline", expression="verdict == fail",
                  escalation_policy="standard")  # fmt: skip
    engine = runtime.alert_engine()
    incident, opened = engine.incidents.open_or_join(alert)
    assert opened
    capsys.readouterr()
    engine.on_tick(deployments=[])  # the minute tick: the first step is due, paged on its own
    automatic = _incident_pages(capsys.readouterr().out)
    payload, errored = aws.invoke("ConsoleWriteFunction", _escalate(incident.incident_id))
    manual = _incident_pages(capsys.readouterr().out)
    assert not errored and payload["statusCode"] == 200, payload
    body = json.loads(payload["body"])
    assert body["page"]["page_number"] == 2 and body["incident"]["escalation"]["pages"] == 2
    assert (automatic, manual) == (1, 1)  # the person's page counted too, once
    aws.invoker.drain()
    stored = IncidentRepository(DeploymentRepository()).get(incident.incident_id)
    assert stored.escalation.pages == automatic + manual
    assert [r.json()["event_action"] for r in receivers.received("pagerduty")] == ["trigger", "trigger"]
