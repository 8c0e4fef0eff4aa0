"""``deployment-failed`` is announced once per deployment: a CodeDeploy deployment that fails
(``deployment.failed``) and whose rollback deployment ends six minutes later (``rollback.completed``) is
one failure, one alert at the channels; the second event joins the same incident, unannounced. The real
path: CodeDeploy's state changes through the DeploymentRecorderFunction on the embedded AWS, the alert
engine, the signed webhook on 127.0.0.1."""

from __future__ import annotations

from collections import Counter

from alert_rules_support import shop_stack, webhook_events

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import create_lambda_deployment, put_state_change, start_rollback_deployment
from deployguard_local.emulator import sample_handler

SERVICES = {"orders-api": {"environment": "production", "function_name": "orders-api"}}


def test_one_failure_is_one_deployment_failed_alert() -> None:
    with shop_stack([], SERVICES) as (aws, receivers):
        versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
        target = LambdaTarget(
            function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1]
        )
        deployment_id = create_lambda_deployment(target, "orders-api", "live")

        def put(deployment: str, *states: str) -> None:
            for state in states:
                put_state_change(deployment, "orders-api", "live", state)
                aws.invoker.drain()
            assert not aws.invoker.failed

        put(deployment_id, "START")
        LambdaTrafficShifter(target).shift(0.1)
        DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
        rollback = start_rollback_deployment(deployment_id)
        put(deployment_id, "STOP")  # deployment.failed (stopped)
        aws.clock.advance(360)  # past the rule's old 5-minute cooldown
        LambdaTrafficShifter(target).rollback()
        put(rollback, "START", "SUCCESS")  # rollback.completed

        alerts = [
            a for a in IncidentRepository(DeploymentRepository()).alerts(deployment_id) if a.rule == "deployment-failed"
        ]
        assert sorted(a.status.value for a in alerts) == ["fired", "suppressed_cooldown"]
        delivered = Counter(
            (e.get("details") or {}).get("rule") for e in webhook_events(receivers)
            if e["deployment_id"] == deployment_id and (e.get("details") or {}).get("kind") == "alert"
        )  # fmt: skip
        assert delivered["deployment-failed"] == 1
        [incident] = [
            i for i in IncidentRepository(DeploymentRepository()).recent()
            if i.deployment_id == deployment_id and i.group == "deployment"
        ]  # fmt: skip
        assert incident.alert_count == 2  # both events are on the one incident
