"""The embedded AWS configured like the demo, with an ``alerting:`` section of the test's own, and a
regressing CodeDeploy canary driven by CodeDeploy's own schedule of hooks (the assessor's schedule fires
every simulated minute: its failing verdicts raise ``canary-issue``, whose automatic rollback stops it)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from alert_rules_support import service_config

from deployguard.aws import clients
from deployguard.models import LambdaTarget
from deployguard_local.codedeploy import LEDGER, RolloutResult, create_lambda_deployment, simulate_embedded_rollout
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import LocalReceivers, local_receivers
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


@contextmanager
def alerting_stack(
    services: dict[str, Any], alerting: dict[str, Any] | None = None, shop: list[str] | None = None
) -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    """The demo's configuration with these services (and ``shop`` ones with the Shop metrics) and this
    ``alerting:`` section; notifications to local receivers on 127.0.0.1."""
    config = yaml.safe_load((REPO_ROOT / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["services"] = {name: service_config(name) for name in shop or []} | services
    if alerting is not None:
        config["alerting"] = alerting
    with tempfile.TemporaryDirectory() as tmp, local_receivers(echo=None) as receivers:
        path = Path(tmp) / "deployguard.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=path) as aws:
            yield aws, receivers


def failed_validation(aws: EmbeddedAws, name: str) -> str:
    """A CodeDeploy deployment of ``name`` whose pre-traffic validation fails (the new version answers 503):
    the real LifecycleHookFunction raises ``canary-issue`` on its ``validation.failed``."""

    def broken(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 503, "body": "{}"}

    versions = aws.deploy_sample_function(name, "live", broken)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, name, "live")
    payload, _ = aws.invoke(
        "LifecycleHookFunction",
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": LEDGER.issue(deployment_id)},
    )
    assert payload["status"] == "Failed", payload
    aws.invoker.drain()
    return deployment_id


def regressing_rollout(aws: EmbeddedAws, name: str, error_rate: float = 0.1) -> tuple[RolloutResult, LambdaTarget]:
    """A CodeDeploy canary (10% for 5 minutes, then 100%) of a new version failing ``error_rate`` of requests
    from its first minute, 3,000 requests a minute."""
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    traffic = LambdaTrafficSource(
        name, "live", 3000,
        {versions[0]: VersionBehaviour(), versions[1]: VersionBehaviour(regress_at=0, regressed_error_rate=error_rate)},
        seed=31,
    )  # fmt: skip
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    try:
        result = simulate_embedded_rollout(aws, target, application=name)
    finally:
        traffic.active = False
    aws.invoker.drain()
    return result, target


def alias_version(name: str) -> str:
    return str(clients.client("lambda").get_alias(FunctionName=name, Name="live")["FunctionVersion"])
