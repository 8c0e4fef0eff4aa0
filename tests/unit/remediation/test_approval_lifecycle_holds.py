"""Approval requests and locks end only what is theirs, an approved action is never left waiting on a
state machine nothing answers, and an approval that ends undone is audited and told.

The real alert engine (rules on assessments) and executor on moto, faults through botocore's event hooks,
the simulated clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from grouped_support import (
    alias,
    audit,
    deployment,
    failing_verdict,
    high_errors,
    pages,
    per_deployment_engine,
    slow,
    tick_remediations,
)
from remediation_support import make_function

from deployguard import clock
from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.remediation.models import ApprovalStatus
from deployguard.remediation.store import APPROVAL_REQUEST, LOCK


def _canary(repo: Any, publisher: Any) -> tuple[str, str, Any, Any]:
    """checkout-api's canary dg-1 (versions v1 -> v2) and the alert engine, incidents per deployment."""
    v1, v2 = make_function("checkout-api")
    return v1, v2, deployment(repo, "dg-1", v1, v2), per_deployment_engine(repo, publisher)


def test_an_approval_decided_before_its_state_machine_registers_still_runs(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, _v2, d1, engine = _canary(repo, publisher)
    high_errors(engine, d1)
    [approval] = engine.remediation.store.open_approvals()
    engine.decide(approval.approval_id, "bob", approve=True)  # nothing waits on a token yet: nothing to answer
    # the state machine's register lands afterwards (a cold start); answering it fails here (no such token)
    registered = engine.remediation.register_task_token(approval.approval_id, "tok-late")
    assert registered.status.value == "approved" and registered.task_token is None  # not kept: the tick runs it

    sim_clock.advance(60)
    [result] = tick_remediations(engine)

    assert result.outcome.value == "succeeded", result.message
    assert alias() == (v1, {})
    assert engine.remediation.store.approval(approval.approval_id).status.value == "executed"


def test_an_approved_action_whose_state_machine_never_runs_it_is_given_up_and_paged(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, d1, engine = _canary(repo, publisher)
    high_errors(engine, d1)
    [approval] = engine.remediation.store.open_approvals()
    engine.remediation.register_task_token(approval.approval_id, "tok-1")  # its state machine waits
    stored = engine.remediation.store.approval(approval.approval_id)
    assert stored.task_token == "tok-1"
    # approved and answered (as the CLI does when SendTaskSuccess lands), but the execution died before its run
    stored.status, stored.decided_by, stored.decided_at = ApprovalStatus.APPROVED, "bob", clock.now()
    engine.remediation.store.save_approval(stored)

    sim_clock.advance(120)
    assert tick_remediations(engine) == [] and pages(publisher) == []  # its state machine's, for now
    sim_clock.advance(engine.settings.remediation.approval_ttl_seconds)
    tick_remediations(engine)

    after = engine.remediation.store.approval(approval.approval_id)
    assert after.status.value == "executed" and "not done by" in (after.result or "")
    [page] = pages(publisher)
    assert page.details["approval_id"] == approval.approval_id
    assert "approved_remediation_failed" in audit(repo, "dg-1")
    assert alias() == (v1, {v2: 0.25})  # nothing ran past its approval's time


def test_an_old_request_expiring_never_frees_the_newer_requests_marker(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    _v1, _v2, d1, engine = _canary(repo, publisher)
    high_errors(engine, d1)
    [old] = engine.remediation.store.open_approvals()
    sim_clock.advance(engine.settings.remediation.approval_ttl_seconds + 1)  # its marker expired, it is not ended
    high_errors(engine, d1)  # asked again: a new request takes the marker
    [new] = [a for a in engine.remediation.store.open_approvals() if a.approval_id != old.approval_id]

    tick_remediations(engine)  # the old one ends (expired)

    assert engine.remediation.store.approval(old.approval_id).status.value == "expired"
    marker = repo.find_claim(APPROVAL_REQUEST, f"{new.incident_id}#{new.deployment_id}#{new.action}")
    assert marker is not None and marker["approval_id"] == new.approval_id
    sim_clock.advance(400)  # past the rule's cooldown
    high_errors(engine, d1)
    assert [a.approval_id for a in engine.remediation.store.open_approvals()] == [new.approval_id]
    asked = [e.details["approval_id"] for e in publisher.events if e.details.get("kind") == "approval_requested"]
    assert asked == [old.approval_id, new.approval_id]


def test_a_slow_rollback_never_deletes_the_lock_another_holder_took(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, _v2, d1, engine = _canary(repo, publisher)
    lock_ttl = engine.settings.remediation.lock_ttl_seconds
    taken: list[bool] = []

    def slow_update(**_: Any) -> None:  # UpdateAlias takes longer than the lock's expiry; someone takes it
        sim_clock.advance(lock_ttl + 10)
        taken.append(repo.claim_once(LOCK, "lambda:checkout-api", timedelta(seconds=lock_ttl), holder="inc-other#x"))

    lam = clients.client("lambda")
    lam.meta.events.register("before-call.lambda.UpdateAlias", slow_update)
    try:
        failing_verdict(engine, d1)  # canary-issue: an automatic rollback
    finally:
        lam.meta.events.unregister("before-call.lambda.UpdateAlias", slow_update)

    assert taken == [True] and alias() == (v1, {})
    lock = repo.find_claim(LOCK, "lambda:checkout-api")
    assert lock is not None and lock["holder"] == "inc-other#x", "the other holder's lock stands"
    assert not repo.claim_once(LOCK, "lambda:checkout-api", timedelta(seconds=lock_ttl), holder="third")


def test_expired_and_dropped_approvals_are_audited_and_the_approved_one_is_told(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, d1, engine = _canary(repo, publisher)
    high_errors(engine, d1)  # the canary incident asks for a rollback
    slow(engine, d1)  # the performance incident asks too
    requests = {a.incident_id: a for a in engine.remediation.store.open_approvals()}
    incidents = {i.group: i for i in engine.incident_store.open_incidents()}
    errors, perf = requests[incidents["canary"].incident_id], requests[incidents["performance"].incident_id]
    engine.decide(errors.approval_id, "bob", approve=True)
    engine.resolve(incidents["canary"].incident_id, "alice", "looks fine now")  # before the tick runs it
    sim_clock.advance(engine.settings.remediation.approval_ttl_seconds + 100)  # the other is never answered

    engine.on_tick()

    dropped = engine.remediation.store.approval(errors.approval_id)
    expired = engine.remediation.store.approval(perf.approval_id)
    assert dropped.status.value == "expired" and "incident was resolved" in (dropped.result or "")
    assert expired.status.value == "expired" and "not answered" in (expired.result or "")
    trail = audit(repo, "dg-1")
    assert "approved_remediation_failed" in trail and "remediation_approval_expired" in trail
    [page] = pages(publisher)  # bob's approved rollback will not run: the routes are told
    assert page.details["approval_id"] == errors.approval_id and page.details["routes"]
    assert "bob" in page.message
    assert alias() == (v1, {v2: 0.25})


def test_an_answer_after_the_request_expired_is_refused_and_the_expiry_audited(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, d1, engine = _canary(repo, publisher)
    high_errors(engine, d1)
    [approval] = engine.remediation.store.open_approvals()
    sim_clock.advance(engine.settings.remediation.approval_ttl_seconds + 1)

    with pytest.raises(DeployGuardError, match="expired at"):
        engine.decide(approval.approval_id, "bob", approve=True)

    assert engine.remediation.store.approval(approval.approval_id).status.value == "expired"
    [entry] = [e for e in repo.audit_trail("dg-1") if e.action == "remediation_approval_expired"]
    assert entry.actor == "bob" and "nothing was done" in entry.reason
    assert tick_remediations(engine) == [] and alias() == (v1, {v2: 0.25})
