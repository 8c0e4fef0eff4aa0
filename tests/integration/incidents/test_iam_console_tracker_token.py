"""An incident acknowledged in the console (POST /api/incidents/{id}/acknowledge, ConsoleWriteFunction) comments
on its GitHub issue with the token kept in Secrets Manager, with IAM enforced on the embedded AWS: the console's
role may read the deployguard/* secrets (secretsmanager:GetSecretValue) as the other roles that reach trackers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from incident_support_it import canary_in_flight, failing_assessment
from tracker_servers import GITHUB_TOKEN, tracker_servers

from deployguard.alerts.engine import AlertEngine
from deployguard.aws import clients
from deployguard.workflows import runtime
from deployguard_local.console_server import LocalCredentials, http_api_event
from deployguard_local.emulator import EmbeddedAws

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


JSON = {"content-type": "application/json"}  # a write's body (415 without it)


def test_the_console_acknowledgement_comments_with_the_secret_token_under_its_role(tmp_path: Path) -> None:
    with tracker_servers() as (github, _jira):
        config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
        config["alerting"] = {"issue_trackers": {"github": {
            "type": "github", "repository": "acme/shop", "api_url": github.url,
            "token_secret": "deployguard/github#token", "allowed_hosts": ["127.0.0.1"]}}}  # fmt: skip
        path = tmp_path / "deployguard.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with EmbeddedAws(config_file=path, enforce_iam=True) as aws:
            secrets = clients.client("secretsmanager")
            secrets.create_secret(Name="deployguard/github", SecretString=json.dumps({"token": GITHUB_TOKEN}))
            deployment, _ = canary_in_flight(aws)
            # an engine of its own (the same configuration) opens the incident and its issue, as the tick would;
            # the functions' shared engine is left unmade, so ConsoleWriteFunction reads the token itself
            engine = AlertEngine.for_config(
                runtime.config(), runtime.repository(), runtime.publisher(), local_mode=True
            )
            engine.on_assessment(deployment, failing_assessment(deployment))
            incident = engine.incident_store.open_incidents()[0]
            comments_before = sum(len(c) for c in github.comments.values())
            creds = LocalCredentials()
            route = f"/api/incidents/{incident.incident_id}/acknowledge"
            body = json.dumps({"notes": "looking"}).encode()
            event = http_api_event("POST", route, JSON, body, creds.claims(creds.write_token))
            payload, errored = aws.invoke("ConsoleWriteFunction", event)
            assert not errored and payload["statusCode"] == 200, payload
            assert sum(len(c) for c in github.comments.values()) == comments_before + 1
            assert aws.iam.refused == []
