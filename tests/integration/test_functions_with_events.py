"""Every function of template.yaml runs with its sample event from events/, through the real
Lambda Invoke API of the embedded AWS (what `deployguard invoke` does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    ("CanaryStepFunction", "canary_validate.json", lambda r: r["next"] == "shift"),
    ("CanaryStepFunction", "canary_shift.json", lambda r: r["next"] == "wait" and r["weight"] == 10.0),
    ("CanaryStepFunction", "canary_assess.json", lambda r: r["last_verdict"] == "inconclusive"),
    ("CanaryStepFunction", "canary_promote.json", lambda r: r["decision"] == "promoted"),
    ("CanaryStepFunction", "canary_rollback.json", lambda r: r["decision"] == "rolled_back"),
    ("CanaryStepFunction", "canary_notify.json", lambda r: r["deployment_id"] == "dg-sample-0001"),
    ("AssessorFunction", "schedule.json", lambda r: r["assessed"][0]["deployment_id"] == "dg-sample-0003"),
    ("AssessorShardFunction", "assessment_shard.json", lambda r: (r["shards"], len(r["assessed"])) == (1, 1)),
    ("TrafficCheckFunction", "schedule.json", lambda r: (r["overlapping"], r["failed"]) == (False, {})),
    ("NotificationRouterFunction", "sns_deployment_event.json", lambda r: r["malformed"] == 0),
    ("LifecycleHookFunction", "codedeploy_lifecycle_hook.json", lambda r: r["status"] == "Succeeded" and r["reported"]),
    (
        "LifecycleHookFunction",
        "codedeploy_lifecycle_hook_ecs.json",
        lambda r: (r["status"], r["lifecycle_event"], r["reported"]) == ("Succeeded", "AfterAllowTestTraffic", True),
    ),
    ("DeploymentRecorderFunction", "codedeploy_state_change.json", lambda r: r["status"] == "in_progress"),
    ("RemediationApprovalFunction", "remediation_approval_run.json", lambda r: r["outcome"] == "not_approved"),
    (
        "ReportWriterFunction",
        "sns_deployment_event.json",
        lambda r: (
            [u.rsplit("/", 1)[1] for u in r["written"]]
            == ["dg-sample-0001.md", "dg-sample-0001.html", "dg-sample-0001.json"]
        ),
    ),
    ("ReportWriterFunction", "summary_daily.json", lambda r: r["summary"] == "daily" and len(r["written"]) == 2),
    (
        "ConsoleReadFunction",
        "console_api_canaries.json",
        lambda r: (
            r["statusCode"] == 200
            and {c["deployment"]["deployment_id"] for c in json.loads(r["body"])}
            == {"dg-sample-0001", "dg-sample-0003"}
        ),
    ),
    (
        "ConsoleWriteFunction",
        "console_api_pause.json",
        lambda r: (
            r["statusCode"] == 200
            and json.loads(r["body"])["deployment"]["control"]["last_actor"]
            == "7f3c1a2e-0000-4000-8000-000000000002 (bob)"
        ),  # the token's sub (no iss in the sample), its username beside
    ),
]


@pytest.mark.parametrize(("function", "event_file", "expect"), CASES, ids=[f"{f}-{e}" for f, e, _ in CASES])
def test_function_runs_with_its_sample_event(function: str, event_file: str, expect: Any) -> None:
    event = json.loads((ROOT / "events" / event_file).read_text(encoding="utf-8"))
    with EmbeddedAws() as aws:
        aws.seed_sample()
        payload, errored = aws.invoke(function, event)
    assert not errored, payload
    assert expect(payload), payload


def test_every_function_has_a_sample_event() -> None:
    from deployguard_local.template import Stack

    functions = set(Stack.load(ROOT).of_type("AWS::Serverless::Function"))
    assert functions == {f for f, _, _ in CASES}


@pytest.mark.parametrize(
    ("function", "field"),
    [("CanaryStepFunction", "action"), ("AssessorFunction", "detail-type"), ("DeploymentRecorderFunction", "source")],
)
def test_malformed_events_are_refused_naming_the_field(function: str, field: str) -> None:
    with EmbeddedAws() as aws:
        payload, errored = aws.invoke(function, {"unexpected": True})
    assert errored
    assert payload["errorType"] == "InvalidEventError"
    assert field in payload["errorMessage"]
