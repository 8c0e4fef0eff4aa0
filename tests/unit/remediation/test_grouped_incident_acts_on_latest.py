"""An incident grouped without the deployment (service, environment, group) acts and records on its latest
alert's deployment (``latest_deployment_id``), not the first one's: the second bad release is rolled back
automatically, its approved rollback runs, its clear assessments resolve the incident, and the audit entries are
in its own trail.

The real alert engine (rules evaluated on assessments) and executor on moto, the simulated clock."""

from __future__ import annotations

from typing import Any

from grouped_support import (
    alias,
    audit,
    deployment,
    end,
    failing_verdict,
    fine,
    grouped_engine,
    high_errors,
    set_alias,
    slow,
)
from remediation_support import make_function

from deployguard.models import DeploymentStatus


def test_the_second_release_joining_the_incident_is_rolled_back_automatically(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, v3 = make_function("checkout-api", versions=3)
    set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = grouped_engine(repo, publisher)
    failing_verdict(engine, d1)
    assert alias() == (v1, {})  # dg-1's canary rolled back
    end(repo, "dg-1", DeploymentStatus.ROLLED_BACK)
    sim_clock.advance(600)
    d2 = deployment(repo, "dg-2", v1, v3)
    set_alias(v1, {v3: 0.25})

    [alert] = failing_verdict(engine, d2)

    [incident] = engine.incident_store.open_incidents()
    assert alert.incident_id == incident.incident_id
    assert (incident.deployment_id, incident.latest_deployment_id) == ("dg-1", "dg-2")
    assert alias() == (v1, {}), "dg-2's canary is rolled back too: dg-1's rollback does not make it 'done'"
    dg2 = audit(repo, "dg-2")
    assert {"alert_joined_incident", "remediation_attempt", "remediation_succeeded"} <= set(dg2)
    assert audit(repo, "dg-1").count("remediation_succeeded") == 1  # dg-1's own, not dg-2's


def test_an_approved_rollback_of_the_second_release_runs(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2, v3 = make_function("checkout-api", versions=3)
    set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = grouped_engine(repo, publisher)
    high_errors(engine, d1)
    [first] = engine.remediation.store.open_approvals()
    engine.decide(first.approval_id, "bob", approve=False)
    set_alias(v1)
    end(repo, "dg-1", DeploymentStatus.ROLLED_BACK)
    sim_clock.advance(600)
    d2 = deployment(repo, "dg-2", v1, v3)
    set_alias(v1, {v3: 0.25})
    high_errors(engine, d2)

    [second] = engine.remediation.store.open_approvals()
    assert second.deployment_id == "dg-2" and second.incident_id == first.incident_id
    engine.decide(second.approval_id, "bob", approve=True)
    [result] = engine.on_tick().remediations

    assert (result.outcome.value, result.deployment_id) == ("succeeded", "dg-2"), result.message
    assert alias() == (v1, {})
    assert engine.remediation.store.approval(second.approval_id).status.value == "executed"
    assert {"remediation_pending_approval", "remediation_approved", "remediation_succeeded"} <= set(audit(repo, "dg-2"))
    assert "stale_remediation_refused" not in audit(repo, "dg-2")


def test_the_second_release_clearing_resolves_the_incident(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2, v3 = make_function("checkout-api", versions=3)
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = grouped_engine(repo, publisher)
    slow(engine, d1)
    end(repo, "dg-1", DeploymentStatus.ROLLED_BACK)
    sim_clock.advance(600)
    d2 = deployment(repo, "dg-2", v1, v3)
    slow(engine, d2)
    [incident] = engine.incident_store.open_incidents()
    assert incident.latest_deployment_id == "dg-2"

    fine(engine, d2)  # dg-2's next assessments: every rule of the incident evaluates false
    assert engine.incident_store.get(incident.incident_id).condition_clear_since is not None
    sim_clock.advance(engine.settings.incidents.auto_resolve_after_seconds + 60)
    fine(engine, d2)
    report = engine.on_tick()

    assert report.resolved == [incident.incident_id]
    assert engine.incident_store.get(incident.incident_id).status.value == "resolved"
    dg2 = audit(repo, "dg-2")
    assert "incident_condition_cleared" in dg2 and "incident_resolved" in dg2
