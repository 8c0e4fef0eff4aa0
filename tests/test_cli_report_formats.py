"""`report --json` is `--format json`: refused with any other format given (md and markdown too, not only html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_control import local, run

from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import local_state
from deployguard_local.emulator import EmbeddedAws


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report-formats")
    with EmbeddedAws(storage_only=True) as aws:
        target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
        DeploymentRepository(aws.ref("DeploymentsTable")).create_deployment(
            Deployment(deployment_id="dg-report", service="orders", version="2", environment="production",
                       target=target, status=DeploymentStatus.SUCCEEDED, decision="promote")
        )  # fmt: skip
        local_state.save(aws, directory)
    return directory


@pytest.mark.parametrize("fmt", ["md", "markdown", "html"])
def test_json_with_another_format_is_refused_naming_both(state: Path, fmt: str, capsys) -> None:
    code, out, err = run(capsys, "report", "dg-report", *local(state), "--format", fmt, "--json")
    assert code == 4 and out == ""  # README: report errors exit 4
    assert f"--json and --format {fmt} ask for two formats" in err


def test_json_alone_or_with_format_json_is_the_json_export(state: Path, capsys) -> None:
    for extra in (["--json"], ["--format", "json"], ["--format", "json", "--json"]):
        code, out, err = run(capsys, "report", "dg-report", *local(state), *extra)
        assert code == 0, err
        assert json.loads(out)["deployment"]["deployment_id"] == "dg-report"


def test_no_format_is_markdown(state: Path, capsys) -> None:
    code, out, err = run(capsys, "report", "dg-report", *local(state))
    assert code == 0, err
    assert out.startswith("#") and "dg-report" in out
