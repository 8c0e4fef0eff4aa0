"""A rollback request asked while a CodeDeploy canary ran (``business-impact``: revenue down, a rollback in approval
mode, asked by the scheduled assessor's alerts) whose deployment then ended otherwise (CodeDeploy finished it:
succeeded, nobody had answered) waits for nobody's answer: the remediation executor refuses any approval of a
request whose deployment ended after it was asked (and pages). Review: the console's "Waiting for your answer" list
offered it as answerable until the request expired an hour later (only a rollback of a deployment ended on its
stable version was moot). The console's HTTP API on 127.0.0.1 in front of the real console functions, over the
embedded AWS the rollout ran in."""

from __future__ import annotations

from typing import Any

import requests
from alert_rules_support import ShopBehaviour, ShopTrafficSource
from promotion_hold_support import REVENUE_DOWN, tolerant
from suppression_support import alerting_stack

from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.remediation.models import ApprovalStatus
from deployguard.remediation.store import RemediationStore
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import simulate_embedded_rollout
from deployguard_local.console_server import ConsoleServer, LocalCredentials
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import VersionBehaviour


def _rollout_asked_then_succeeded(aws: Any) -> str:
    versions = aws.deploy_sample_function("revenue", "live", sample_handler)
    target = LambdaTarget(function_name="revenue", alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = ShopTrafficSource(
        "revenue", "live", 3000, {v: VersionBehaviour() for v in versions}, seed=5,
        shop={versions[0]: ShopBehaviour(), versions[1]: REVENUE_DOWN},
    )  # fmt: skip
    aws.clock.listeners.append(traffic.on_clock)
    try:
        result = simulate_embedded_rollout(aws, target, application="revenue")
    finally:
        traffic.active = False
    aws.invoker.drain()
    return str(result.deployment_id)


def test_a_request_whose_codedeploy_deployment_succeeded_since_is_not_offered_and_its_approval_is_refused() -> None:
    with alerting_stack({"revenue": tolerant()}) as (aws, _receivers):
        deployment_id = _rollout_asked_then_succeeded(aws)
        repository = DeploymentRepository()
        record = repository.get_deployment(deployment_id)
        assert record.status == DeploymentStatus.SUCCEEDED, (record.status, record.decision_reason)
        asked = RemediationStore(repository).approvals_of(deployment_id)
        assert [a.status for a in asked] == [ApprovalStatus.PENDING], asked  # asked while it ran, never answered
        assert asked[0].deployment_status is not None and not DeploymentStatus(asked[0].deployment_status).is_terminal
        approval_id = asked[0].approval_id

        credentials = LocalCredentials()
        server = ConsoleServer(aws, credentials, 0).start()
        read = {"Authorization": f"Bearer {credentials.read_token}"}
        write = {"Authorization": f"Bearer {credentials.write_token}"}
        try:
            pending = requests.get(f"{server.url}/api/remediation-requests", headers=read, timeout=30)
            assert pending.status_code == 200, pending.text
            assert approval_id not in [r["approval_id"] for r in pending.json()]  # nobody is waited for
            mine = requests.get(
                f"{server.url}/api/deployments/{deployment_id}/remediation-requests", headers=read, timeout=30
            ).json()
            shown = next(r for r in mine if r["approval_id"] == approval_id)
            assert (shown["state"], shown["answerable"]) == ("pending", False), shown
            assert "ended succeeded" in shown["moot"] and "after it was asked" in shown["moot"], shown
            approve = requests.post(
                f"{server.url}/api/remediation-requests/{approval_id}/approve", json={"notes": "roll it back"},
                headers=write, timeout=30,
            )  # fmt: skip
            assert approve.status_code == 409, approve.text
            assert "would not be done" in approve.json()["message"], approve.text
        finally:
            server.stop()
        assert RemediationStore(repository).approval(approval_id).status == ApprovalStatus.PENDING  # nothing ran
