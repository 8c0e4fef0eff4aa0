"""`deployguard incidents` on the embedded AWS as on a deployed stack (`--table`, `--config`): what it may remediate
is what the configuration guards, its ECS services as well as its functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from incident_support_it import failing_assessment

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


def _ecs_incident(embedded: Any) -> tuple[str, str]:
    """An open incident of an ECS deployment of checkout-web (its service runs the new revision); its automatic
    remediation is refused here (an engine guarding nothing), so the service is left as the CLI finds it; and the
    revision it ran before."""
    stack = create_ecs_service("shop", "checkout-web")
    old, new = stack.task_definitions
    clients.client("ecs").update_service(cluster="shop", service="checkout-web", taskDefinition=new)
    target = EcsTarget(cluster="shop", service="checkout-web", stable_task_definition=old, new_task_definition=new)
    deployment = Deployment(deployment_id="dg-ecs-1", service="checkout-web", environment="production", version="2",
                            target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)  # fmt: skip
    repository = DeploymentRepository()
    repository.create_deployment(deployment)
    unguarded = AlertEngine(AlertingSettings(), repository, None, allowlist=TargetAllowlist())
    unguarded.on_assessment(deployment, failing_assessment(deployment))
    [canary] = [i for i in unguarded.incident_store.open_incidents() if i.group == "canary"]
    return canary.incident_id, old


def test_remediate_acts_on_the_ecs_services_the_configuration_guards(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    incident_id, old = _ecs_incident(embedded)
    where = ["--table", embedded.ref("DeploymentsTable"), "--config", CONFIG]
    code, out, err = _run(capsys, "incidents", "remediate", incident_id, "--by", "bob", "--dry-run", *where, "--json")
    assert code == 0, err
    [planned] = json.loads(out)
    assert (planned["target"], planned["outcome"]) == ("ecs:shop/checkout-web", "dry_run"), planned
    update = f"ecs:UpdateService shop/checkout-web taskDefinition={old} forceNewDeployment=true"
    assert planned["plan"]["calls"] == [update]

    code, out, err = _run(capsys, "incidents", "remediate", incident_id[:10], "--by", "bob", *where)
    assert code == 0, err
    assert "ecs:shop/checkout-web  succeeded" in out
    service = clients.client("ecs").describe_services(cluster="shop", services=["checkout-web"])["services"][0]
    assert service["taskDefinition"] == old
