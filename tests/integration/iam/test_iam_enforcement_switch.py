"""IAM enforcement on the embedded AWS is opt-in (``enforce_iam=True``, or DEPLOYGUARD_ENFORCE_IAM=1 for a whole
run), and leaves botocore and thread pools as they were when the embedded AWS is torn down."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import botocore.client
import pytest

from deployguard_local.emulator import EmbeddedAws

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


def test_off_unless_asked_and_on_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    call, submit = botocore.client.BaseClient._make_api_call, concurrent.futures.ThreadPoolExecutor.submit
    monkeypatch.delenv("DEPLOYGUARD_ENFORCE_IAM", raising=False)
    with EmbeddedAws(config_file=DEMO_CONFIG, storage_only=True) as aws:
        assert aws.iam is None
    monkeypatch.setenv("DEPLOYGUARD_ENFORCE_IAM", "1")
    with EmbeddedAws(config_file=DEMO_CONFIG, storage_only=True) as aws:
        assert aws.iam is not None and "CanaryStepFunction" in aws.iam.roles
        assert botocore.client.BaseClient._make_api_call is not call
    with EmbeddedAws(config_file=DEMO_CONFIG, storage_only=True, enforce_iam=False) as aws:
        assert aws.iam is None
    assert (botocore.client.BaseClient._make_api_call, concurrent.futures.ThreadPoolExecutor.submit) == (call, submit)
