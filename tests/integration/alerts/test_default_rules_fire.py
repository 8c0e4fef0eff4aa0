"""Every default metric rule fires through the real path, and stays quiet on a healthy release.

Metrics go into the embedded CloudWatch (Lambda's own and custom Shop metrics, per version),
the canary state machine reads and judges them, the assessment's fields are filled from
what each metric is, the alert engine evaluates the default rules, opens incidents, and
the alerts reach the local webhook receiver on 127.0.0.1 (and Slack, Teams, PagerDuty).
"""

from __future__ import annotations

from typing import Any

import pytest
from alert_rules_support import ShopBehaviour, alert_deliveries, run_canary, shop_stack

from deployguard.alerts.fields import METRIC_FIELDS
from deployguard.alerts.settings import AlertingSettings
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.traffic import VersionBehaviour

HEALTHY = VersionBehaviour()
# two regressing releases between them trip every default metric rule; a third is healthy
RUNS: dict[str, tuple[VersionBehaviour, ShopBehaviour]] = {
    "shop-app": (VersionBehaviour(regress_at=0, regressed_error_rate=0.10, regressed_p99_ms=3000), ShopBehaviour()),
    "shop-infra": (HEALTHY, ShopBehaviour(cpu=96.0, memory=97.5, conversion_rate=0.02, violations=3,
                                          failed_login_rate=0.05)),
    "shop-healthy": (HEALTHY, ShopBehaviour()),
}  # fmt: skip
RULE_RUNS = {
    "canary-issue": "shop-app",
    "high-error-rate": "shop-app",
    "performance-degradation": "shop-app",
    "critical-health-score": "shop-app",
    "minimum-health-score": "shop-app",
    "deployment-failed": "shop-app",
    "system-overload": "shop-infra",
    "business-impact": "shop-infra",
    "security-signals": "shop-infra",
}


@pytest.fixture(scope="module")
def outcomes() -> Any:
    """One stack, three canaries through the state machine."""
    with shop_stack(list(RUNS)) as (aws, receivers):
        results: dict[str, Any] = {}
        repository = DeploymentRepository()
        incidents = IncidentRepository(repository)
        for name, (behaviour, shop) in RUNS.items():
            execution, _ = run_canary(aws, name, behaviour, shop)
            deployment_id = f"dep-{name}"
            results[name] = {
                "execution": execution,
                "deployment": repository.get_deployment(deployment_id),
                "alerts": {a.rule for a in incidents.alerts(deployment_id)},
                "incidents": [i for i in incidents.recent() if i.deployment_id == deployment_id],
                "assessments": repository.assessments(deployment_id),
            }
        delivered = alert_deliveries(receivers)
        for name in RUNS:
            results[name]["delivered"] = delivered.get(f"dep-{name}", set())
        yield results


@pytest.mark.parametrize(("rule", "run"), list(RULE_RUNS.items()))
def test_each_default_metric_rule_fires_through_the_real_path(outcomes: Any, rule: str, run: str) -> None:
    outcome = outcomes[run]
    assert rule in outcome["alerts"], outcome["alerts"]  # stored, audited
    assert any(rule in i.rules for i in outcome["incidents"])  # opened or joined an incident
    assert rule in outcome["delivered"]  # the alert reached the local webhook receiver


def test_the_regressions_end_as_their_remediation_plans_say(outcomes: Any) -> None:
    # canary-issue rolls back automatically; the descriptive rules ask a person (approval)
    assert outcomes["shop-app"]["deployment"].status == DeploymentStatus.ROLLED_BACK
    infra = outcomes["shop-infra"]
    assert "canary-issue" not in infra["alerts"] or infra["deployment"].status == DeploymentStatus.ROLLED_BACK


def test_a_healthy_release_is_promoted_and_no_rule_fires(outcomes: Any) -> None:
    outcome = outcomes["shop-healthy"]
    assert outcome["deployment"].decision == "promoted"
    assert outcome["alerts"] == set() and outcome["delivered"] == set() and outcome["incidents"] == []
    # quiet because every metric rule was evaluated and found clear, not because its fields were unknown
    last = outcome["assessments"][-1].details["fields"]["canary"]
    metric_rules = [r for r in AlertingSettings().effective_rules if r.compiled.fields & METRIC_FIELDS]
    read = {f for r in metric_rules for f in r.compiled.fields & METRIC_FIELDS}
    assert {f for f in read if last.get(f) is None} == set()
