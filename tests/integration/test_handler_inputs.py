"""What the remediation approval task refuses, through its real handler on the embedded AWS: a
malformed event is an InvalidEventError naming the field (the shared bounded parser, deployguard.inbound)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / name).read_text(encoding="utf-8")))


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as embedded:
        embedded.seed_sample()
        yield embedded


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
