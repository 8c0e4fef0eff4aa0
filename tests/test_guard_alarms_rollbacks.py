"""The dashboard's deployment statistics count a CodeDeploy release stopped and rolled back by its rollback
deployment once, as rolled back, as ``deployguard summary`` does. The real path: CodeDeploy's state-change
notifications put on the embedded AWS's event bus, the template's rule invoking DeploymentRecorderFunction,
the EMF records it prints read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.readmodels import DeploymentReader, SummaryBuilder
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.codedeploy import create_lambda_deployment, put_state_change, start_rollback_deployment
from deployguard_local.emulator import EmbeddedAws, sample_handler

STATISTICS = ("DeploymentsStarted", "DeploymentsSucceeded", "DeploymentsRolledBack", "DeploymentsFailed",
              "DeploymentsStopped", "DeploymentsEnded")  # fmt: skip


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedAws]:
    config = tmp_path / "deployguard.yaml"
    services = {"orders-api": {"environment": "production", "function_name": "orders-api"}}
    config.write_text(yaml.safe_dump({"services": services}), encoding="utf-8")
    runtime.metrics.clear_metrics()  # what earlier tests' functions added while metrics were disabled
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: the recorder prints its EMF
    with EmbeddedAws(config_file=config, quiet=False) as stack:
        yield stack


def _put(aws: EmbeddedAws, deployment_id: str, *states: str) -> None:
    for state in states:
        put_state_change(deployment_id, "orders-api", "live", state)
        aws.invoker.drain()
    assert not aws.invoker.failed


def _statistics(output: str) -> list[dict[str, Any]]:
    """(metric -> value, environment, strategy) of every deployment-statistics EMF record printed."""
    out = []
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        names = {m["Name"] for d in record["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
        if names & set(STATISTICS):
            out.append({n: record[n] for n in names & set(STATISTICS)} | {
                "environment": record.get("environment"), "strategy": record.get("strategy")})  # fmt: skip
    return out


def test_a_release_rolled_back_by_its_rollback_deployment_is_counted_once_as_rolled_back(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "orders-api", "live")
    capsys.readouterr()
    _put(aws, deployment_id, "START")
    LambdaTrafficShifter(target).shift(0.1)
    DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
    rollback_id = start_rollback_deployment(deployment_id)  # CodeDeploy's automatic rollback
    _put(aws, deployment_id, "STOP")
    stopped = _statistics(capsys.readouterr().out)
    assert [list(s) for s in stopped] == [["DeploymentsStarted", "environment", "strategy"]]  # the stop: not yet
    LambdaTrafficShifter(target).rollback()
    _put(aws, rollback_id, "START", "SUCCESS", "SUCCESS")  # a redelivery counts nothing more
    (ended,) = _statistics(capsys.readouterr().out)
    assert ended["DeploymentsRolledBack"] == [1.0] and ended["DeploymentsEnded"] == [1.0]
    assert "DeploymentsStopped" not in ended and "DeploymentsStarted" not in ended
    assert (ended["environment"], ended["strategy"]) == ("production", "canary")
    # the widget's figures match the summary's
    rollback = DeploymentRepository().get_deployment(rollback_id)
    start, end = rollback.started_at - timedelta(days=1), rollback.started_at + timedelta(days=1)
    figures = SummaryBuilder(DeploymentReader(DeploymentRepository())).build(start, end, "2d").current
    assert (figures.deployments, figures.rolled_back, figures.succeeded) == (1, 1, 0)
    assert DeploymentRepository().get_deployment(deployment_id).status == DeploymentStatus.ROLLED_BACK


def test_a_release_whose_rollback_deployment_fails_is_counted_as_it_ended(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "orders-api", "live")
    _put(aws, deployment_id, "START")
    LambdaTrafficShifter(target).shift(0.1)
    DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
    rollback_id = start_rollback_deployment(deployment_id)
    _put(aws, deployment_id, "STOP")
    capsys.readouterr()
    _put(aws, rollback_id, "START", "FAILURE")
    (ended,) = _statistics(capsys.readouterr().out)
    assert ended["DeploymentsStopped"] == [1.0] and ended["DeploymentsEnded"] == [1.0]
    assert "DeploymentsRolledBack" not in ended


def test_a_release_stopped_before_its_rollback_deployment_exists_is_counted_once_as_rolled_back(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    """StopDeployment with autoRollbackEnabled (as DeployGuard's remediation sends it): CodeDeploy reports
    STOP with its rollbackInfo before the rollback deployment exists; the release is counted when that ends."""
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "orders-api", "live")
    _put(aws, deployment_id, "START")
    LambdaTrafficShifter(target).shift(0.1)
    DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
    capsys.readouterr()
    CodeDeployGateway().stop(deployment_id, auto_rollback=True)
    _put(aws, deployment_id, "STOP")  # no rollback deployment yet
    assert _statistics(capsys.readouterr().out) == []
    rollback_id = start_rollback_deployment(deployment_id)
    LambdaTrafficShifter(target).rollback()
    _put(aws, rollback_id, "START", "SUCCESS")
    (ended,) = _statistics(capsys.readouterr().out)
    assert ended["DeploymentsRolledBack"] == [1.0] and ended["DeploymentsEnded"] == [1.0]
    assert "DeploymentsStopped" not in ended
