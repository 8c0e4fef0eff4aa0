"""moto (DynamoDB, Lambda without docker, CodeDeploy with the local hook status call, CloudWatch)
and a sample Lambda function with two versions behind alias ``live``."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto_table import RecordingPublisher, create_table

from deployguard import clock
from deployguard.aws import clients
from deployguard.models import LambdaTarget
from deployguard_local.codedeploy import HookLedger, install_hook_status_api
from deployguard_local.ecs import TargetStore, install_deployment_target_api

os.environ.update(
    {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "DeployGuard",
        "POWERTOOLS_SERVICE_NAME": "deployguard",
    }
)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {'statusCode': 200}\n")
    return buffer.getvalue()


def make_function(name: str = "orders", alias: str = "live") -> LambdaTarget:
    role = clients.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}'
    )["Role"]["Arn"]
    lam = clients.client("lambda")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                        Code={"ZipFile": _zip()})  # fmt: skip
    versions = []
    for i in range(2):
        lam.update_function_configuration(FunctionName=name, Description=f"release {i + 1}")
        versions.append(lam.publish_version(FunctionName=name)["Version"])
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=versions[0])
    return LambdaTarget(function_name=name, alias=alias, stable_version=versions[0], new_version=versions[1])


@pytest.fixture
def sim_clock() -> Iterator[clock.SimulatedClock]:
    sim = clock.SimulatedClock()
    clock.install(sim)
    yield sim
    clock.reset()


@pytest.fixture
def ledger() -> HookLedger:
    return HookLedger()


@pytest.fixture
def targets() -> TargetStore:
    return TargetStore()


@pytest.fixture
def cd_aws(
    sim_clock: clock.SimulatedClock, atomic_dynamodb: None, ledger: HookLedger, targets: TargetStore
) -> Iterator[None]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        clients.reset()
        create_table()
        undo_status = install_hook_status_api(ledger)
        undo_targets = install_deployment_target_api(targets)
        yield
        undo_targets()
        undo_status()
    clients.reset()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def target(cd_aws: None) -> LambdaTarget:
    return make_function()


def audit_actions(repository: Any, deployment_id: str) -> list[str]:
    return [e.action for e in repository.audit_trail(deployment_id)]
