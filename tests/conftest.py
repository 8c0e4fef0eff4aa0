"""Shared test setup: never reach real AWS; the embedded AWS (moto) on demand."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# before anything imports boto3: fake credentials, a region, quiet Powertools
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "deployguard",
        "POWERTOOLS_METRICS_NAMESPACE": "DeployGuard",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "DEPLOYGUARD_ENDPOINT_URL", "DEPLOYGUARD_CONFIG_FILE"):
    os.environ.pop(_var, None)

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO_ROOT / "events"
DEMO_CONFIG = REPO_ROOT / "examples" / "deployguard.yaml"


def load_event(name: str) -> Any:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture
def embedded() -> Iterator[Any]:
    """The whole stack on the embedded AWS, configured like the demo, with the sample app seeded."""
    from deployguard_local.emulator import EmbeddedAws

    with EmbeddedAws(config_file=DEMO_CONFIG) as aws:
        yield aws


@pytest.fixture
def repository(embedded: Any) -> Any:
    from deployguard.storage.repository import DeploymentRepository

    return DeploymentRepository()


@pytest.fixture
def atomic_dynamodb() -> Iterator[None]:
    """moto's DynamoDB made atomic between threads, as the embedded AWS has it (for bare mock_aws tests)."""
    from deployguard_local.emulator import atomic_dynamodb as serialise

    undo = serialise()
    yield
    undo()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The built-in demo, run once per session: its output and the local state it saves."""
    import io

    from demo_support import DemoRun

    from deployguard_local import demo

    state_dir = tmp_path_factory.mktemp("local-state")
    out = io.StringIO()
    code = demo.main(out=out, state_dir=state_dir)
    return DemoRun(code, out.getvalue(), state_dir)
