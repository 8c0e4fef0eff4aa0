"""The sample application the events/ files refer to: function ``checkout-api`` with its versions,
deployments, a CodeDeploy deployment with an issued hook execution, an ECS service, an approval."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from deployguard.aws import clients
from deployguard_local.emulator.environment import REPO_ROOT
from deployguard_local.emulator.lambda_runtime import zip_text
from deployguard_local.emulator.stack import StackResources


class SampleApplication(StackResources):
    """Application functions and the sample deployments on the embedded AWS."""

    def deploy_sample_function(
        self, name: str, alias: str, handler: Callable[[Any, Any], Any], versions: int = 2
    ) -> list[str]:
        """Create an application function with published versions and an alias at version 1."""
        lambda_client = clients.client("lambda")
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role_arn,
            Handler="app.handler",
            Code={"ZipFile": zip_text("app.py", "def handler(event, context):\n    return {'statusCode': 200}\n")},
        )
        published = []
        for i in range(versions):
            lambda_client.update_function_configuration(FunctionName=name, Description=f"release {i + 1}")
            published.append(lambda_client.publish_version(FunctionName=name)["Version"])
        lambda_client.create_alias(FunctionName=name, Name=alias, FunctionVersion=published[0])
        self.registry.register_handler(name, handler)
        return published

    def seed_sample(self) -> list[str]:
        """The sample application the events/ files refer to.

        Function ``checkout-api`` with versions 1 and 2 and alias ``live`` at version 1;
        deployment ``dg-sample-0001`` (a canary driven by the state machine) and
        ``dg-sample-0003`` (a CodeDeploy-driven one the scheduled assessor judges).
        """
        from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
        from deployguard.storage.repository import DeploymentRepository

        versions = self.deploy_sample_function("checkout-api", "live", sample_handler)
        target = LambdaTarget(
            function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
        )
        repository = DeploymentRepository()
        for deployment_id, driver in (("dg-sample-0001", "stepfunctions"), ("dg-sample-0003", "codedeploy")):
            repository.create_deployment(
                Deployment(
                    deployment_id=deployment_id,
                    service="checkout-api",
                    environment="production",
                    version=versions[1],
                    target=target,
                    status=DeploymentStatus.IN_PROGRESS,
                    driver=driver,
                )
            )
        self._seed_codedeploy(target)
        self._seed_ecs_codedeploy()
        self._seed_approval()
        return versions

    @staticmethod
    def _seed_approval() -> None:
        """A pending remediation approval ``ap-sample00001`` (the approval function's sample event), of the
        CodeDeploy-driven ``dg-sample-0003`` (``canary_promote.json`` promotes ``dg-sample-0001``)."""
        from datetime import timedelta

        from deployguard import clock
        from deployguard.remediation.models import Approval
        from deployguard.remediation.store import RemediationStore
        from deployguard.storage.repository import DeploymentRepository

        RemediationStore(DeploymentRepository()).request_approval(
            Approval(
                approval_id="ap-sample00001",
                incident_id="inc-sample00001",
                deployment_id="dg-sample-0003",
                action="rollback",
                target="lambda:checkout-api",
                description="roll checkout-api:live back to 1",
                expires_at_time=clock.now() + timedelta(hours=1),
            ),
            timedelta(hours=1),
        )

    @staticmethod
    def _seed_codedeploy(target: Any) -> None:
        """CodeDeploy deployment d-SAMPLE0001 of the sample function, with one issued hook execution.

        moto names deployments with UUIDs; the sample keeps the id the events/ files use.
        """
        from moto.codedeploy.models import codedeploy_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        from deployguard_local.codedeploy import LEDGER, create_lambda_deployment

        created = create_lambda_deployment(target, "checkout-api", "checkout-api-live")
        backend = codedeploy_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        info = backend.deployments.pop(created)
        info.deployment_id = "d-SAMPLE0001"
        backend.deployments["d-SAMPLE0001"] = info
        hook_event = json.loads((REPO_ROOT / "events" / "codedeploy_lifecycle_hook.json").read_text(encoding="utf-8"))
        LEDGER.issued[hook_event["LifecycleEventHookExecutionId"]] = "d-SAMPLE0001"

    @staticmethod
    def _seed_ecs_codedeploy() -> None:
        """ECS service ``shop/checkout-web`` behind a load balancer, and CodeDeploy blue/green deployment
        d-SAMPLEECS1 of it at AfterAllowTestTraffic, with the ECS hook event's execution issued."""
        from moto.codedeploy.models import codedeploy_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        from deployguard_local.codedeploy import LEDGER
        from deployguard_local.ecs import TARGETS, create_ecs_deployment, create_ecs_service

        stack = create_ecs_service("shop", "checkout-web")
        created = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg")
        backend = codedeploy_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        info = backend.deployments.pop(created)
        info.deployment_id = "d-SAMPLEECS1"
        info.status = "InProgress"
        backend.deployments["d-SAMPLEECS1"] = info
        with TARGETS.lock:
            target = TARGETS.targets.pop(created)
            target["ecsTarget"]["deploymentId"] = "d-SAMPLEECS1"
            TARGETS.targets["d-SAMPLEECS1"] = target
        TARGETS.enter("d-SAMPLEECS1", "AfterAllowTestTraffic")
        event = json.loads((REPO_ROOT / "events" / "codedeploy_lifecycle_hook_ecs.json").read_text(encoding="utf-8"))
        LEDGER.issued[event["LifecycleEventHookExecutionId"]] = "d-SAMPLEECS1"


def sample_handler(event: Any, context: Any) -> dict[str, Any]:
    """The sample application's handler: answers like a healthy API."""
    return {"statusCode": 200, "body": json.dumps({"ok": True, "echo": event})}
