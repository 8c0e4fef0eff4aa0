"""Metric-rule incidents a canary opened (``system-overload``, ``business-impact``) clear once the problem
is gone after promotion: the post-deployment looks carry the rules' field readings (the latest periods
since the promotion against the periods before the deployment), the rules evaluate false, and the
incidents resolve after the clear window instead of paging on. The real path: the Shop metrics in the
embedded CloudWatch, the canary state machine, the AssessorFunction's minute schedule."""

from __future__ import annotations

import json
from typing import Any

from alert_rules_support import ShopBehaviour, ShopTrafficSource, service_config
from metric_history import write_lambda_history
from suppression_support import alerting_stack

from deployguard import clock
from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import REPO_ROOT, sample_handler
from deployguard_local.traffic import VersionBehaviour

TICKS = 14  # minutes after the promotion: the first looks with readings, then the 5-minute clear window
SCHEDULE = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
# saturated and taking half the revenue per order: system-overload and business-impact during the canary
TROUBLED = ShopBehaviour(cpu=96.0, memory=97.5, revenue_per_conversion=20.0)
RULES = ("system-overload", "business-impact")


def _canary_then_fixed(aws: Any, name: str, shop: ShopBehaviour) -> str:
    """The stable version's 3 hours of AWS/Lambda history (what the post-deployment looks judge against),
    10 minutes of it alone with the Shop metrics, then a canary whose new version shows ``shop``'s problem,
    which goes away after the promotion (traffic goes on)."""
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = ShopTrafficSource(
        name, "live", 3000, {versions[0]: VersionBehaviour(), versions[1]: VersionBehaviour()}, seed=5,
        shop={versions[0]: ShopBehaviour(), versions[1]: shop},
    )  # fmt: skip
    write_lambda_history(name, versions[0], clock.now(), 3 * 60, errors_per_1000=5)
    aws.clock.advance(3 * 3600)
    aws.clock.listeners.append(traffic.on_clock)
    aws.clock.advance(10 * 60)
    deployment_id = f"dep-{name}"
    aws.run_state_machine(
        "CanaryStateMachine",
        {"deployment": {"deployment_id": deployment_id, "service": name, "version": versions[1],
                        "target": target.model_dump()}},
    )  # fmt: skip
    aws.invoker.drain()
    traffic.shop[versions[1]] = ShopBehaviour()
    return deployment_id


def _incidents(deployment_id: str, rule: str) -> list[Any]:
    return [
        i for i in IncidentRepository(DeploymentRepository()).recent()
        if i.deployment_id == deployment_id and rule in i.rules
    ]  # fmt: skip


def _tolerant(name: str) -> dict[str, Any]:
    """A service whose judge tolerates these gauges (CPU, revenue) far beyond what the rules page on, and whose
    rules ask for no remediation: the canary is promoted with the incidents open (a judge failing them would
    end it first)."""
    config = service_config(name)
    config["judge"]["min_effect"] = {"gauge_relative": 2.0}
    return config


def test_canary_metric_incidents_resolve_once_the_condition_is_gone_after_promotion() -> None:
    alerting = {"incidents": {"auto_resolve_after_seconds": 300}, "remediation": {"plans": []}}
    with alerting_stack({"shop-api": _tolerant("shop-api")}, alerting) as (aws, _):
        deployment_id = _canary_then_fixed(aws, "shop-api", TROUBLED)
        repository = DeploymentRepository()
        assert repository.get_deployment(deployment_id).phase == Phase.MONITORING  # promoted
        for rule in RULES:
            [incident] = _incidents(deployment_id, rule)
            assert incident.is_open  # opened during the canary

        for _ in range(TICKS):
            aws.clock.advance(60)
            payload, errored = aws.invoke("AssessorFunction", SCHEDULE)
            assert not errored, payload
        aws.invoker.drain()

        for rule in RULES:
            [incident] = _incidents(deployment_id, rule)
            assert incident.status == IncidentStatus.RESOLVED and incident.auto_resolved, (rule, incident.timeline)
        looks = [a for a in repository.assessments(deployment_id) if a.details.get("kind") == "post_deployment"]
        readings = looks[-1].details["fields"]
        assert readings["canary"]["cpu_utilization"] < 90 and readings["baseline"]["revenue_per_minute"]
