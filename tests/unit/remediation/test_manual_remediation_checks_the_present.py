"""A person's ``deployguard incidents remediate`` (AlertEngine.remediate) gets the checks an approved action
gets: never on a resolved incident, never rolling back a newer release, unless forced; it acts on the incident's
latest deployment. The real engine and executor on moto, the simulated clock."""

from __future__ import annotations

from typing import Any

from grouped_support import alias, audit, deployment, end, high_errors, per_deployment_engine, set_alias
from remediation_support import make_function

from deployguard.models import DeploymentStatus


def _superseded(repo: Any, publisher: Any, sim_clock: Any) -> tuple[list[str], Any, str]:
    """dg-1's incident (high errors on v2), then dg-1 promoted and dg-2 (v2 -> v3) promoted to 100%."""
    v1, v2, v3 = make_function("checkout-api", versions=3)
    set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = per_deployment_engine(repo, publisher)
    high_errors(engine, d1)
    [incident] = engine.incident_store.open_incidents()
    set_alias(v2)
    end(repo, "dg-1", DeploymentStatus.SUCCEEDED)
    sim_clock.advance(3600)
    deployment(repo, "dg-2", v2, v3)
    set_alias(v3)
    end(repo, "dg-2", DeploymentStatus.SUCCEEDED)
    sim_clock.advance(600)
    return [v1, v2, v3], engine, incident.incident_id


def test_remediating_an_incident_a_newer_release_superseded_is_refused(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    (_, _, v3), engine, incident_id = _superseded(repo, publisher, sim_clock)

    [result] = engine.remediate(incident_id, "alice")

    assert result.outcome.value == "refused"
    assert "dg-2 (version 3)" in result.message and "--force" in result.message
    assert alias() == (v3, {}), "dg-2's release stays live"
    assert "stale_remediation_refused" in audit(repo, "dg-2")
    assert "remediation_refused" in audit(repo, "dg-1")


def test_forced_it_runs(repo: Any, publisher: Any, sim_clock: Any) -> None:
    (v1, _, _), engine, incident_id = _superseded(repo, publisher, sim_clock)

    [result] = engine.remediate(incident_id, "alice", force=True)

    assert result.outcome.value == "succeeded", result.message
    assert alias() == (v1, {})


def test_remediating_a_resolved_incident_is_refused(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = per_deployment_engine(repo, publisher)
    high_errors(engine, d1)
    [incident] = engine.incident_store.open_incidents()
    engine.resolve(incident.incident_id, "alice", "a false alarm")

    [result] = engine.remediate(incident.incident_id, "bob")

    assert result.outcome.value == "refused" and "is resolved" in result.message
    assert alias() == (v1, {v2: 0.25})
