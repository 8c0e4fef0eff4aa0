"""An approved remediation is checked against the present before it acts, is tried again when it
fails, and pages when it cannot be done; acknowledgement does not stop automation; ``dry_run`` wins.

Real alert engine and executor on moto (Lambda alias, DynamoDB table), faults through botocore's
hooks (``deployguard_local.chaos.faults``), the simulated clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from grouped_support import deployment
from remediation_support import make_function

from deployguard import clock
from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.models import Alert
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentEvent, DeploymentStatus, EventType, Severity
from deployguard.remediation.models import Approval, ApprovalStatus, Outcome
from deployguard.remediation.store import LOCK
from deployguard.remediation.targets import TargetAllowlist
from deployguard_local.chaos.faults import FaultInjector

EMERGENCY_FIRST_STEP = ["oncall-primary", "oncall-secondary"]  # the default emergency policy's first routes


def _engine(repo: Any, publisher: Any, **remediation: Any) -> AlertEngine:
    settings = AlertingSettings.model_validate({"remediation": remediation} if remediation else {})
    return AlertEngine(settings, repo, publisher, allowlist=TargetAllowlist(["lambda:checkout-*"]))


def _alert(d: Deployment, rule: str, group: str = "canary") -> Alert:
    return Alert(
        rule=rule, group=group, grouping_key=f"{d.deployment_id}#{group}", severity=Severity.CRITICAL,
        source="assessment", deployment_id=d.deployment_id, service=d.service, environment=d.environment,
        version=d.version, title=f"{rule} on {d.version}", message=rule, expression="x", escalation_policy="emergency",
    )  # fmt: skip


def _alias() -> tuple[str, dict[str, float]]:
    a = clients.client("lambda").get_alias(FunctionName="checkout-api", Name="live")
    return a["FunctionVersion"], a.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})


def _set_alias(version: str, weights: dict[str, float] | None = None) -> None:
    clients.client("lambda").update_alias(
        FunctionName="checkout-api", Name="live", FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": weights or {}},
    )  # fmt: skip


def _ask_rollback(engine: AlertEngine, d: Deployment) -> Approval:
    """high-error-rate: the default plan asks a person to approve a rollback."""
    engine._raise(_alert(d, "high-error-rate"), d, time.monotonic(), clock.now())
    [approval] = engine.remediation.store.open_approvals()
    assert approval.action == "rollback" and approval.routing is not None
    return approval


def _approved(repo: Any, publisher: Any, **remediation: Any) -> tuple[str, str, AlertEngine, Approval]:
    """checkout-api's canary dg-1 (25% on version 2) whose rollback bob approved; not run yet."""
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher, **remediation)
    approval = _ask_rollback(engine, d1)
    engine.decide(approval.approval_id, "bob", approve=True)
    return v1, v2, engine, approval


def _end(repo: Any, deployment_id: str, status: DeploymentStatus) -> None:
    def change(d: Deployment) -> None:
        d.status, d.ended_at = status, clock.now()

    repo.update_deployment(deployment_id, change)


def _audit(repo: Any, deployment_id: str) -> list[Any]:
    return repo.audit_trail(deployment_id)


def _approved_tick(engine: AlertEngine) -> list[Any]:
    """The approved-actions part of the minute tick (AlertEngine.on_tick: open incidents, run_approved)."""
    return engine.remediation.run_approved({i.incident_id: i for i in engine.incident_store.open_incidents()})


@contextmanager
def _lambda_faults(sim_clock: Any) -> Iterator[FaultInjector]:
    """Faults answering Lambda's calls through botocore's hooks (only Lambda's clients: cheap)."""
    faults = FaultInjector(sim_clock)
    faults.install(["lambda"])
    try:
        yield faults
    finally:
        faults.uninstall()


def _pages(publisher: Any) -> list[Any]:
    return [e for e in publisher.events if e.details.get("kind") == "approved_remediation_failed"]


# --- 1. an approval is checked against the present


def test_an_old_approval_never_rolls_back_a_newer_release(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2, v3 = make_function("checkout-api", versions=3)
    _set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, d1)
    # dg-1 is promoted after all; dg-2 (v2 -> v3) starts later and is promoted to 100% v3
    _set_alias(v2)
    _end(repo, "dg-1", DeploymentStatus.SUCCEEDED)
    sim_clock.advance(60)
    deployment(repo, "dg-2", v2, v3)
    _set_alias(v3)
    _end(repo, "dg-2", DeploymentStatus.SUCCEEDED)
    sim_clock.advance(1800)
    engine.decide(approval.approval_id, "bob", approve=True, notes="go")

    [result] = engine.on_tick().remediations

    assert _alias() == (v3, {}), "production stays on dg-2's version"
    assert result.outcome == Outcome.REFUSED and "dg-2" in result.message
    stored = engine.remediation.store.approval(approval.approval_id)
    assert stored.status == ApprovalStatus.EXPIRED and stored.result and "dg-2" in stored.result
    refused = [e for e in _audit(repo, "dg-1") if e.action == "remediation_refused"]
    assert refused and refused[-1].details["approval_id"] == approval.approval_id
    assert [e.action for e in _audit(repo, "dg-2")].count("stale_remediation_refused") == 1
    assert repo.find_deployment("dg-1").status == DeploymentStatus.SUCCEEDED
    assert engine.remediation.store.open_approvals() == []  # nothing left to run at a later tick
    assert engine.on_tick().remediations == []


def test_an_approval_of_a_deployment_that_ended_since_is_refused(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """The state machine path (the approval function's run task) makes the same check."""
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, d1)
    _end(repo, "dg-1", DeploymentStatus.SUCCEEDED)  # promoted: 100% v2
    _set_alias(v2)
    engine.decide(approval.approval_id, "bob", approve=True)
    incidents = {i.incident_id: i for i in engine.incident_store.open_incidents()}

    result = engine.remediation.run_one_approved(approval.approval_id, incidents)

    assert result is not None and result.outcome == Outcome.REFUSED
    assert "ended (succeeded)" in result.message
    assert _alias() == (v2, {})
    [page] = _pages(publisher)  # the person who approved it is told it will not be done
    assert "refused" in page.message and "ended (succeeded)" in page.message
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXPIRED


def test_an_approval_is_refused_when_the_alias_no_longer_routes_what_was_approved(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, v3 = make_function("checkout-api", versions=3)
    _set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, d1)
    _set_alias(v1, {v3: 0.1})  # someone moved the alias by hand since
    engine.decide(approval.approval_id, "bob", approve=True)

    [result] = engine.on_tick().remediations

    assert result.outcome == Outcome.REFUSED
    assert f"then version {v1} + version {v2} at 0.25, now version {v1} + version {v3} at 0.1" in result.message
    assert _alias() == (v1, {v3: 0.1})
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXPIRED


def test_an_approval_still_runs_when_the_canary_stepped_up_since(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """The canary moved from 25% to 50% of the same versions while the approval waited: rolling it back is
    what was approved, and more urgent now, not stale."""
    v1, v2 = make_function("checkout-api")
    _set_alias(v1, {v2: 0.25})
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, d1)
    _set_alias(v1, {v2: 0.5})  # the canary's next step
    engine.decide(approval.approval_id, "bob", approve=True)

    [result] = engine.on_tick().remediations

    assert result.outcome == Outcome.SUCCEEDED, result.message
    assert _alias() == (v1, {})
    assert repo.find_deployment("dg-1").status == DeploymentStatus.ROLLED_BACK


def test_an_approval_still_runs_when_nothing_changed(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, d1)
    sim_clock.advance(300)
    engine.decide(approval.approval_id, "bob", approve=True)

    [result] = engine.on_tick().remediations

    assert result.outcome == Outcome.SUCCEEDED, result.message
    assert _alias() == (v1, {})
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXECUTED
    assert repo.find_deployment("dg-1").status == DeploymentStatus.ROLLED_BACK


# --- 2. a failed approved action is retried, then pages


def test_an_approved_rollback_that_fails_once_is_retried_at_the_next_tick(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2, engine, approval = _approved(repo, publisher)
    with _lambda_faults(sim_clock) as faults:
        plan = faults.on("lambda", "UpdateAlias", [], then="throttle")  # every botocore attempt of one call
        [first] = _approved_tick(engine)
        faults.clear()  # Lambda answers again
        assert plan.injected > 1, "botocore's own retries were spent"
        assert first.outcome == Outcome.FAILED and "UpdateAlias" in first.message
        stored = engine.remediation.store.approval(approval.approval_id)
        assert stored.status == ApprovalStatus.APPROVED and "attempt 1/3" in (stored.result or "")
        assert _alias() == (v1, {v2: 0.25}) and _pages(publisher) == []
        sim_clock.advance(60)
        [second] = _approved_tick(engine)

    assert second.outcome == Outcome.SUCCEEDED and second.attempt == 2
    assert _alias() == (v1, {})
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXECUTED
    assert _pages(publisher) == []


def test_an_approved_rollback_that_keeps_failing_pages_when_its_attempts_are_spent(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    _, _, engine, approval = _approved(repo, publisher)
    with _lambda_faults(sim_clock) as faults:
        faults.on("lambda", "UpdateAlias", [], then="throttle")
        outcomes, calls = [], []
        for _ in range(4):
            outcomes += [r.outcome for r in _approved_tick(engine)]
            calls.append(faults.calls["lambda:UpdateAlias"])
            sim_clock.advance(60)

    assert outcomes == [Outcome.FAILED] * 3, "three attempts (the action's max_attempts), then no more"
    per_call = calls[0]  # botocore's own attempts of one UpdateAlias
    assert per_call > 1 and calls == [per_call, 2 * per_call, 3 * per_call, 3 * per_call]
    stored = engine.remediation.store.approval(approval.approval_id)
    assert stored.status == ApprovalStatus.EXECUTED and (stored.result or "").startswith("failed")
    [page] = _pages(publisher)
    assert page.severity == Severity.CRITICAL and page.details["routes"] == EMERGENCY_FIRST_STEP
    assert page.details["approval_id"] == approval.approval_id
    assert [e.action for e in _audit(repo, "dg-1")].count("approved_remediation_failed") == 1


def test_an_approved_action_not_done_by_its_deadline_pages(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2, engine, approval = _approved(repo, publisher, approval_ttl_seconds=120)
    assert repo.claim_once(LOCK, "lambda:checkout-api", timedelta(hours=1), holder="someone-else")

    assert engine.on_tick().remediations == []  # busy: tried again at the next tick
    assert _pages(publisher) == []
    sim_clock.advance(121)
    engine.on_tick()

    [page] = _pages(publisher)
    assert "not done by" in page.message and page.details["routes"] == EMERGENCY_FIRST_STEP
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXECUTED
    assert _alias() == (v1, {v2: 0.25})


def test_a_give_up_page_that_cannot_be_recorded_is_sent_by_the_next_tick(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    """The page first, then the approval ended: a page whose record fails (DynamoDB throttled for good) leaves
    the approval approved and the tick running; the next tick gives up again and pages, once."""
    _, _, engine, approval = _approved(repo, publisher, approval_ttl_seconds=120)
    assert repo.claim_once(LOCK, "lambda:checkout-api", timedelta(hours=1), holder="someone-else")
    sim_clock.advance(121)
    faults = FaultInjector(sim_clock)
    faults.install(["dynamodb"])
    try:
        faults.on(
            "dynamodb", None, [], then="throttle", when=lambda r: b"approved_remediation_failed" in (r.body or b"")
        )
        engine.on_tick()  # does not raise: the approval's failure is its own
    finally:
        faults.uninstall()
    assert _pages(publisher) == []
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.APPROVED

    sim_clock.advance(60)
    engine.on_tick()
    engine.on_tick()
    [page] = _pages(publisher)
    assert "not done by" in page.message
    assert engine.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXECUTED


def test_an_approved_action_that_automation_may_no_longer_run_pages(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """Remediation was switched off between the approval and the tick: what a person approved is not done, and a
    person is told at once (it used to end "executed: disabled" without a word)."""
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    approval = _ask_rollback(_engine(repo, publisher), d1)
    switched_off = _engine(repo, publisher, enabled=False)
    switched_off.decide(approval.approval_id, "bob", approve=True)

    switched_off.on_tick()

    [page] = _pages(publisher)
    assert "disabled" in page.message and page.details["approval_id"] == approval.approval_id
    assert switched_off.remediation.store.approval(approval.approval_id).status == ApprovalStatus.EXECUTED
    assert _alias() == (v1, {v2: 0.25})


# --- 3. acknowledgement keeps automation on


@pytest.mark.parametrize("acknowledged", [False, True], ids=["control", "acknowledged"])
def test_a_later_canary_issue_rolls_back_an_acknowledged_incident_too(
    repo: Any, publisher: Any, sim_clock: Any, acknowledged: bool
) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)
    engine._raise(_alert(d1, "high-error-rate"), d1, time.monotonic(), clock.now())  # approval asked
    [incident] = engine.incident_store.open_incidents()
    if acknowledged:
        engine.acknowledge(incident.incident_id, "alice", "looking")
    sim_clock.advance(60)
    failed = DeploymentEvent(
        event_type=EventType.VALIDATION_FAILED, deployment_id="dg-1", service=d1.service, version=d1.version,
        environment=d1.environment, severity=Severity.ERROR, title="canary judged bad", message="v",
    )  # fmt: skip

    alerts = engine.on_event(failed, d1)

    assert [a.incident_id for a in alerts if a.rule == "canary-issue"] == [incident.incident_id]
    assert _alias() == (v1, {}), "the judge's verdict rolls back automatically"
    succeeded = [e for e in _audit(repo, "dg-1") if e.action == "remediation_succeeded"]
    assert len(succeeded) == 1 and succeeded[0].details["incident_id"] == incident.incident_id


# --- 4. remediation.dry_run wins


def test_a_manual_remediate_honours_the_dry_run_setting(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher, dry_run=True)
    engine._raise(_alert(d1, "high-error-rate"), d1, time.monotonic(), clock.now())
    [incident] = engine.incident_store.open_incidents()

    results = engine.remediate(incident.incident_id, "alice")  # the CLI without --dry-run
    asked_wet = engine.remediation.run(incident, d1, engine.plan_steps(incident, d1)[0], manual=True, dry_run=False)

    assert [r.outcome for r in results] == [Outcome.DRY_RUN] and asked_wet.outcome == Outcome.DRY_RUN
    assert results[0].plan is not None and results[0].plan.calls  # what it would call, shown
    assert _alias() == (v1, {v2: 0.25})
    assert "remediation_attempt" not in [e.action for e in _audit(repo, "dg-1")]


def test_the_cli_dry_run_only_makes_it_drier(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = _engine(repo, publisher)  # dry_run: false
    engine._raise(_alert(d1, "high-error-rate"), d1, time.monotonic(), clock.now())
    [incident] = engine.incident_store.open_incidents()

    assert [r.outcome for r in engine.remediate(incident.incident_id, "alice", dry_run=True)] == [Outcome.DRY_RUN]
    assert _alias() == (v1, {v2: 0.25})
    assert [r.outcome for r in engine.remediate(incident.incident_id, "alice")] == [Outcome.SUCCEEDED]
    assert _alias() == (v1, {})
