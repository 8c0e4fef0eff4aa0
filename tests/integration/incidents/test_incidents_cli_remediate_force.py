"""`deployguard incidents remediate` on the embedded AWS (`--table`, `--config`) refuses to roll back a release
that superseded the incident's deployment (exit 1, saying why and naming --force); `--force` runs it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from incident_support_it import failing_assessment

from deployguard import clock
from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentStatus, EcsTarget
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import cli
from deployguard_local.ecs import create_ecs_service

CONFIG = "examples/deployguard.yaml"  # services.checkout-web.ecs_service: shop/checkout-web


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _deployment(deployment_id: str, old: str, new: str) -> Deployment:
    target = EcsTarget(cluster="shop", service="checkout-web", stable_task_definition=old, new_task_definition=new)
    return Deployment(deployment_id=deployment_id, service="checkout-web", environment="production", version=new[-1:],
                      target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)  # fmt: skip


def test_remediate_refuses_to_undo_a_newer_release_unless_forced(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    old, new = stack.task_definitions
    ecs = clients.client("ecs")
    ecs.update_service(cluster="shop", service="checkout-web", taskDefinition=new)
    repository = DeploymentRepository()
    first = _deployment("dg-ecs-1", old, new)
    repository.create_deployment(first)
    unguarded = AlertEngine(AlertingSettings(), repository, None, allowlist=TargetAllowlist())  # no rollback now
    unguarded.on_assessment(first, failing_assessment(first))
    [canary] = [i for i in unguarded.incident_store.open_incidents() if i.group == "canary"]

    def ended(d: Deployment) -> None:
        d.status, d.ended_at = DeploymentStatus.SUCCEEDED, clock.now()

    repository.update_deployment("dg-ecs-1", ended)  # promoted after all
    embedded.clock.advance(60)
    repository.create_deployment(_deployment("dg-ecs-2", new, new))  # a newer release of the service started since
    where = ["--table", embedded.ref("DeploymentsTable"), "--config", CONFIG]

    code, out, err = _run(capsys, "incidents", "remediate", canary.incident_id, "--by", "bob", *where, "--json")

    assert code == 1, err
    [refused] = json.loads(out)
    assert refused["outcome"] == "refused" and "dg-ecs-2" in refused["message"] and "--force" in refused["message"]
    service = ecs.describe_services(cluster="shop", services=["checkout-web"])["services"][0]
    assert service["taskDefinition"] == new  # nothing undone
    assert "stale_remediation_refused" in [e.action for e in repository.audit_trail("dg-ecs-2")]

    code, out, err = _run(capsys, "incidents", "remediate", canary.incident_id, "--by", "bob", "--force", *where)

    assert code == 0, err
    assert "succeeded" in out
    service = ecs.describe_services(cluster="shop", services=["checkout-web"])["services"][0]
    assert service["taskDefinition"] == old
