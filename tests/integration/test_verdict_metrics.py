"""The scheduled assessor writes per-service EMF metrics for each verdict (CanaryFailing for CodeDeploy alarms);
the embedded functions print them on stderr (stdout is for the commands' answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "examples" / "deployguard.yaml"


def load_event(name: str) -> dict:
    return dict(json.loads((ROOT / "events" / name).read_text(encoding="utf-8")))


def test_assessor_writes_verdict_metrics_per_service(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed
    with EmbeddedAws(config_file=DEMO_CONFIG, quiet=False) as aws:
        aws.seed_sample()
        capsys.readouterr()
        payload, errored = aws.invoke("AssessorFunction", load_event("schedule.json"))
    assert not errored and payload["assessed"], payload
    blobs = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith('{"_aws"')]
    by_name = {b["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: b for b in blobs if "DeployedService" in b}
    decision = payload["assessed"][0]["decision"]
    # one billed metric a service (CloudWatch bills each for the hours it is written in): the one to alarm on;
    # the verdict's other figures ride in the same record as properties (Logs Insights reads them)
    assert set(by_name) == {"CanaryFailing"}
    failing = by_name["CanaryFailing"]
    assert failing["DeployedService"] == "checkout-api" and failing["Environment"] == "production"
    assert failing["CanaryFailing"] == [1.0 if decision == "failing" else 0.0]
    assert failing["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DeployGuard"
    assert failing["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["DeployedService", "Environment", "service"]]
    assert failing["Decision"] == decision and 0 <= failing["CanaryTrafficWeight"] <= 100
    assert failing["DeploymentId"] == payload["assessed"][0]["deployment_id"]
