"""A person's remediation of an incident a newer release superseded is audited on that newer deployment
(``stale_remediation_refused``) only when the run is refused: a dry run (which says it would be refused) and a
no-op (the target already as wanted) are not refusals. The real engine and executor on moto, the simulated
clock."""

from __future__ import annotations

from typing import Any

from grouped_support import alias, audit, set_alias
from test_manual_remediation_checks_the_present import _superseded


def test_a_dry_run_says_it_would_be_refused_and_audits_no_refusal(repo: Any, publisher: Any, sim_clock: Any) -> None:
    (_, _, v3), engine, incident_id = _superseded(repo, publisher, sim_clock)

    [result] = engine.remediate(incident_id, "alice", dry_run=True)

    assert result.outcome.value == "dry_run"
    assert result.message.startswith("would be refused: deployment dg-2 (version 3)") and "--force" in result.message
    assert result.plan is not None and not result.plan.noop
    assert alias() == (v3, {})
    assert "stale_remediation_refused" not in audit(repo, "dg-2")
    assert "remediation_dry_run" in audit(repo, "dg-1")


def test_a_noop_audits_no_refusal(repo: Any, publisher: Any, sim_clock: Any) -> None:
    (v1, _, _), engine, incident_id = _superseded(repo, publisher, sim_clock)
    set_alias(v1)  # already rolled back by hand: nothing for the rollback to undo

    [result] = engine.remediate(incident_id, "alice")

    assert result.outcome.value == "noop", result.message
    assert "stale_remediation_refused" not in audit(repo, "dg-2")


def test_a_refused_run_is_audited_once_on_the_newer_deployment_naming_the_action(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    (_, _, v3), engine, incident_id = _superseded(repo, publisher, sim_clock)

    [result] = engine.remediate(incident_id, "alice")

    assert result.outcome.value == "refused" and alias() == (v3, {})
    [entry] = [e for e in repo.audit_trail("dg-2") if e.action == "stale_remediation_refused"]
    assert entry.actor == "alice" and entry.details["incident_id"] == incident_id
    assert entry.details["remediation_action"] == "rollback" and "dg-1" in entry.reason
