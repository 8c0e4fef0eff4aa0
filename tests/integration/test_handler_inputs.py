"""What the report writer and the remediation approval task refuse, through their real handlers on the
embedded AWS: a malformed event is an InvalidEventError naming the field (the shared bounded parser,
deployguard.inbound), a missing environment variable a ConfigError naming the variable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployguard.aws import clients
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / name).read_text(encoding="utf-8")))


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as embedded:
        embedded.seed_sample()
        yield embedded


def _reports(aws: EmbeddedAws) -> list[str]:
    listed = clients.client("s3").list_objects_v2(Bucket=aws.ref("ReportsBucket"))
    return [o["Key"] for o in listed.get("Contents", [])]


def _nested(depth: int) -> Any:
    document: Any = "deep"
    for _ in range(depth):
        document = [document]
    return document


def _with_message(change: dict[str, Any]) -> dict[str, Any]:
    event = _event("sns_deployment_event.json")
    sns = event["Records"][0]["Sns"]
    sns["Message"] = json.dumps(json.loads(sns["Message"]) | change)
    return event


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (_with_message({"event_type": "deployment.exploded"}), "Records.0.Sns.Message: field event_type"),
        (_with_message({"deployment_id": None}), "Records.0.Sns.Message: field deployment_id"),
        ({"Records": [{"Sns": {"Message": "{}"}}]}, "SNS envelope: field Records.0.EventSource"),
        ({"Records": _nested(40)}, "SNS envelope: nested more than 32 deep"),
        ({"summary": "monthly"}, "summary request: field summary"),
    ],
    ids=["event-type", "deployment-id", "envelope", "too-deep", "summary"],
)
def test_the_report_writer_refuses_a_malformed_event_naming_the_field(
    aws: EmbeddedAws, event: dict[str, Any], named: str
) -> None:
    payload, errored = aws.invoke("ReportWriterFunction", event)
    assert errored and payload["errorType"] == "InvalidEventError", payload  # not pydantic's ValidationError
    assert named in payload["errorMessage"]
    assert _reports(aws) == []


def test_the_report_writer_without_its_bucket_variable_names_it(aws: EmbeddedAws) -> None:
    with pytest.MonkeyPatch.context() as env:  # undone inside the embedded AWS, which restores its own
        env.delenv("REPORTS_BUCKET")
        for event in (_event("sns_deployment_event.json"), _event("summary_daily.json")):
            payload, errored = aws.invoke("ReportWriterFunction", event)
            assert errored and payload["errorType"] == "ConfigError", payload  # was a KeyError
            assert payload["errorMessage"] == "file environment, field REPORTS_BUCKET: Field required"
        env.setenv("REPORTS_BUCKET", "")
        payload, errored = aws.invoke("ReportWriterFunction", _event("summary_daily.json"))
        assert errored and payload["errorType"] == "ConfigError" and "field REPORTS_BUCKET" in payload["errorMessage"]
    payload, errored = aws.invoke("ReportWriterFunction", _event("sns_deployment_event.json"))
    assert not errored and len(payload["written"]) == 3 == len(_reports(aws))


def test_registering_an_approval_without_its_task_token_names_the_field(aws: EmbeddedAws) -> None:
    payload, errored = aws.invoke("RemediationApprovalFunction", {"action": "register", "approval_id": "ap-1"})
    assert errored and payload["errorType"] == "InvalidEventError", payload  # was a bare ValueError
    assert payload["errorMessage"] == (
        "approval task: field task_token: Value error, the register action needs the task token"
    )
    payload, errored = aws.invoke(
        "RemediationApprovalFunction", {"action": "register", "approval_id": "ap-1", "task_token": ""}
    )
    assert errored and "field task_token" in payload["errorMessage"]
    # with its token the task gets past validation (to the approval, which does not exist here)
    payload, errored = aws.invoke(
        "RemediationApprovalFunction", {"action": "register", "approval_id": "ap-1", "task_token": "token-1"}
    )
    assert errored and payload["errorType"] == "NotFoundError" and "ap-1" in payload["errorMessage"]
    # a run needs no token
    payload, errored = aws.invoke("RemediationApprovalFunction", _event("remediation_approval_run.json"))
    assert not errored and payload["outcome"] == "not_approved", payload
