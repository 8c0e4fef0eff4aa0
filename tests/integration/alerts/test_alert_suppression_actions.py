"""A rule's cooldown and rate limit hold back only the alert's announcement: the incident is opened or
joined and the automatic remediation runs all the same. For a CodeDeploy canary the ``canary-issue``
alert's automatic stop is what stops it, so a held-back alert must never let CodeDeploy shift 100% to a
failing version. The real path: CodeDeploy's hooks through the LifecycleHookFunction, the assessor's
schedule every simulated minute, StopDeployment on the embedded CodeDeploy, the webhook on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alert_rules_support import alert_deliveries
from suppression_support import alerting_stack, alias_version, failed_validation, regressing_rollout

from deployguard.incidents.repository import IncidentRepository
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector

SERVICES = {
    name: {"environment": "production", "function_name": name} for name in ("broken-0", "broken-1", "payments-api")
}


def _canary_issue(**overrides: Any) -> dict[str, Any]:
    """The default ``canary-issue`` rule with ``overrides``."""
    return {
        "name": "canary-issue",
        "description": "the judge finds the canary worse than the stable version, or validation failed",
        "expression": 'decision == "failing" or event == "validation.failed"',
        "severity": "critical",
        "group": "canary",
        **overrides,
    }


def _statuses(deployment_id: str, rule: str) -> list[str]:
    return [a.status.value for a in IncidentRepository(DeploymentRepository()).alerts(deployment_id) if a.rule == rule]


def _audit(deployment_id: str) -> list[str]:
    return [e.action for e in DeploymentRepository().audit_trail(deployment_id)]


def test_other_deployments_alerts_do_not_use_up_the_canary_stop() -> None:
    """The rate limit counts per rule and grouping key: two other services' failed validations (two
    ``canary-issue`` alerts, of their own incidents) leave the regressing canary's alerts their own slots."""
    alerting = {"rules": [_canary_issue(rate_limit={"max_alerts": 2, "per_seconds": 3600})]}
    with alerting_stack(SERVICES, alerting) as (aws, receivers):
        others = [failed_validation(aws, "broken-0"), failed_validation(aws, "broken-1")]
        result, target = regressing_rollout(aws, "payments-api")
        deployment_id = result.deployment_id

        assert [s.accepted for s in result.stop_calls][:1] == [True]
        assert result.final_state != "SUCCESS"
        assert alias_version("payments-api") == target.stable_version
        assert _statuses(deployment_id, "canary-issue")[0] == "fired"
        deliveries = alert_deliveries(receivers)
        assert "canary-issue" in deliveries[deployment_id]
        assert all("canary-issue" in deliveries[other] for other in others)


def test_rate_limited_alert_still_joins_its_incident_and_stops_the_canary() -> None:
    """canary-issue grouped per environment and limited to one announcement an hour: a failed validation of
    another service takes it; the regressing canary's alerts are rate-limited (not announced: nothing at the
    webhook), yet they join the incident and its automatic rollback stops the canary. The cooldown each one
    claimed is given back when the rate limit refuses it (never ``suppressed_cooldown``)."""
    rule = _canary_issue(
        grouping_key=["environment", "group"], cooldown_seconds=60, rate_limit={"max_alerts": 1, "per_seconds": 3600}
    )
    with alerting_stack(SERVICES, {"rules": [rule]}) as (aws, receivers):
        first = failed_validation(aws, "broken-0")
        assert aws.clock is not None
        aws.clock.advance(120)  # the first alert's cooldown is over: only the rate limit holds the next
        result, target = regressing_rollout(aws, "payments-api")
        deployment_id = result.deployment_id

        assert [s.accepted for s in result.stop_calls][:1] == [True]
        assert result.final_state != "SUCCESS"
        assert alias_version("payments-api") == target.stable_version
        statuses = _statuses(deployment_id, "canary-issue")
        assert statuses and set(statuses) == {"suppressed_rate_limit"}
        incidents = IncidentRepository(DeploymentRepository())
        canary = [i for i in incidents.recent() if i.group == "canary" and i.deployment_id == first]
        assert len(canary) == 1 and canary[0].latest_deployment_id == deployment_id
        trail = _audit(deployment_id)
        assert "alert_rate_limited" in trail and "remediation_succeeded" in trail
        assert "canary-issue" not in alert_deliveries(receivers).get(deployment_id, set())  # held back
        assert "canary-issue" in alert_deliveries(receivers)[first]


def test_failed_automatic_stop_is_tried_again_at_the_next_failing_verdict() -> None:
    """StopDeployment answers 5xx for 90 s: the first failing verdict's stop fails (reported as missed);
    the next failing verdict, a minute later and cooldown-suppressed, tries it again once CodeDeploy
    recovered: the stop lands then, not when the rule's 5-minute cooldown is over (by then CodeDeploy
    had shifted 100% to the failing version)."""
    with alerting_stack({"payments-api": SERVICES["payments-api"]}) as (aws, _receivers):
        assert aws.clock is not None
        with FaultInjector(aws.clock) as faults:
            outage = faults.at("codedeploy", "5xx", 90, "StopDeployment")
            recovered = outage.start + timedelta(seconds=90)
            result, target = regressing_rollout(aws, "payments-api")
        deployment_id = result.deployment_id

        trail = DeploymentRepository().audit_trail(deployment_id)
        failed = [e.at for e in trail if e.action == "remediation_failed"]
        succeeded = [e.at for e in trail if e.action == "remediation_succeeded"]
        assert failed and failed[0] < recovered  # the first stop met the outage
        assert len(succeeded) == 1 and recovered < succeeded[0] <= recovered + timedelta(seconds=75)
        assert [s.accepted for s in result.stop_calls] == [True]
        assert [h for h, _ in result.hooks] == ["BeforeAllowTraffic"]  # stopped at 10%: never 100%
        assert alias_version("payments-api") == target.stable_version
        assert _statuses(deployment_id, "canary-issue")[:2] == ["fired", "suppressed_cooldown"]
