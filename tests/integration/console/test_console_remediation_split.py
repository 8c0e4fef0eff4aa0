"""The remediation request routes routed as template.yaml routes them: the reads reach ConsoleReadFunction (whose
role can only read) and make no write call (a request past its expiry is shown unanswerable, ended only by an answer
or the minute tick); an answer reaches ConsoleWriteFunction. An embedded AWS of its own (no demo run): a few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from test_console_split_and_bounds import READ_VERBS, _operations_during

from deployguard.alerts.settings import PlanStep
from deployguard.aws import clients
from deployguard.incidents.models import Incident
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Severity
from deployguard.remediation.models import Outcome
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.console_server import ConsoleServer, LocalCredentials, wait_until
from deployguard_local.demo import DEMO_CONFIG
from deployguard_local.emulator import EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import local_receivers

DEP = "dg-answer-1"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ConsoleServer, EmbeddedAws, LocalCredentials, str]]:
    """checkout-api (a configured service) at 10% on version 2, and a rollback of it asked of people."""
    with (
        local_receivers(echo=None) as receivers,
        _environment({f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}),
        EmbeddedAws(config_file=DEMO_CONFIG) as aws,
    ):
        stable, new = aws.deploy_sample_function("checkout-api", "live", sample_handler)
        clients.client("lambda").update_alias(
            FunctionName="checkout-api", Name="live", RoutingConfig={"AdditionalVersionWeights": {new: 0.1}}
        )
        target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=stable, new_version=new)
        deployment = Deployment(deployment_id=DEP, service="checkout-api", environment="production", version=new,
                                target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)  # fmt: skip
        DeploymentRepository().create_deployment(deployment)
        incident = Incident(key="k", group="business", deployment_id=DEP, service="checkout-api",
                            environment="production", version=new, title="revenue down", severity=Severity.ERROR,
                            rules=["business-impact"])  # fmt: skip
        engine = runtime.alert_engine()
        result = engine.remediation.run(incident, deployment, PlanStep(action="rollback", mode="approval"))
        assert result.outcome == Outcome.PENDING_APPROVAL and result.approval_id, result
        aws.invoker.drain()  # the request's announcement delivered (SNS to the notification router) before the reads
        # and its approval state machine waiting on it: its register task (RemediationApprovalFunction, a write) runs
        # on the execution's own thread; landing during the reads it was counted as theirs (a loaded machine)
        store = engine.remediation.store
        registered = wait_until(lambda: store.approval(result.approval_id).task_token is not None, timeout=60)
        assert registered, f"approval {result.approval_id}: its state machine registered no task token"
        credentials = LocalCredentials()
        server = ConsoleServer(aws, credentials, port=0).start()
        try:
            yield server, aws, credentials, result.approval_id
        finally:
            server.stop()


def test_the_reads_reach_the_read_function_and_make_no_write_call(served: Any) -> None:
    server, aws, credentials, approval_id = served
    reads = ["/api/remediation-requests", f"/api/deployments/{DEP}/remediation-requests",
             f"/api/remediation-requests/{approval_id}"]  # fmt: skip
    before = len(aws.registry.invocations)

    def read_them() -> None:
        for path in reads:
            response = requests.get(f"{server.url}{path}", timeout=30,
                                    headers={"Authorization": f"Bearer {credentials.read_token}"})  # fmt: skip
            assert response.status_code == 200, (path, response.text[:300])
            assert approval_id in response.text

    operations = _operations_during(read_them)
    assert [name.rsplit("-", 1)[-1] for name, _ in aws.registry.invocations[before:]] == ["ConsoleReadFunction"] * 3
    made = [op for op in operations if op != "lambda:Invoke"]
    assert made and all(op.split(":", 1)[1].startswith(READ_VERBS) for op in made), made


def test_an_answer_reaches_the_write_function(served: Any) -> None:
    server, aws, credentials, approval_id = served
    before = len(aws.registry.invocations)
    response = requests.post(f"{server.url}/api/remediation-requests/{approval_id}/reject", json={"notes": "a blip"},
                             headers={"Authorization": f"Bearer {credentials.write_token}"}, timeout=30)  # fmt: skip
    assert response.status_code == 200 and response.json()["state"] == "rejected", response.text
    assert [name.rsplit("-", 1)[-1] for name, _ in aws.registry.invocations[before:]] == ["ConsoleWriteFunction"]
