from __future__ import annotations

import threading
from typing import Any

import pytest
from remediation_support import make_function

from deployguard.alerts.settings import PlanStep, RemediationSettings
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import TrafficShiftError
from deployguard.incidents.models import Incident
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Severity
from deployguard.remediation import actions
from deployguard.remediation.executor import RemediationExecutor
from deployguard.remediation.models import ApprovalStatus, Outcome
from deployguard.remediation.targets import TargetAllowlist


@pytest.fixture
def deployment(repo: Any) -> Deployment:
    versions = make_function("checkout-api")
    d = Deployment(
        deployment_id="dg-1",
        service="checkout-api",
        environment="production",
        version=versions[1],
        target=LambdaTarget(
            function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
        ),
        status=DeploymentStatus.IN_PROGRESS,
    )
    repo.create_deployment(d)
    return d


def _incident(deployment: Deployment, incident_id: str = "inc-1") -> Incident:
    return Incident(
        incident_id=incident_id,
        key=f"{deployment.deployment_id}#canary",
        group="canary",
        deployment_id=deployment.deployment_id,
        service=deployment.service,
        environment=deployment.environment,
        version=deployment.version,
        title="t",
        severity=Severity.CRITICAL,
    )


def _executor(repo: Any, publisher: Any, **settings: Any) -> RemediationExecutor:
    return RemediationExecutor(
        RemediationSettings.model_validate(settings), repo, publisher, TargetAllowlist(["lambda:checkout-*"])
    )


def _alias(deployment: Deployment) -> Any:
    assert isinstance(deployment.target, LambdaTarget)
    return LambdaTrafficShifter(deployment.target).current()


ROLLBACK = PlanStep(action="rollback", mode="auto")


def test_rollback_puts_the_alias_at_100_percent_stable_once(repo: Any, publisher: Any, deployment: Deployment) -> None:
    executor = _executor(repo, publisher)
    result = executor.run(_incident(deployment), deployment, ROLLBACK)
    assert result.outcome == Outcome.SUCCEEDED, result.message
    assert _alias(deployment).weight_of(deployment.target.stable_version) == 1.0  # type: ignore[union-attr]
    assert repo.get_deployment("dg-1").status == DeploymentStatus.ROLLED_BACK
    again = executor.run(_incident(deployment), deployment, ROLLBACK)
    assert again.outcome == Outcome.NOOP
    other_incident = executor.run(_incident(deployment, "inc-2"), deployment, ROLLBACK)
    assert other_incident.outcome in (Outcome.NOOP, Outcome.COOLDOWN)
    actions_ = [e.action for e in repo.audit_trail("dg-1")]
    assert actions_.count("remediation_attempt") == 1 and actions_.count("remediation_succeeded") == 1


def test_dry_run_changes_nothing_and_shows_the_calls(repo: Any, publisher: Any, deployment: Deployment) -> None:
    result = _executor(repo, publisher).run(_incident(deployment), deployment, ROLLBACK, dry_run=True)
    assert result.outcome == Outcome.DRY_RUN
    assert result.plan is not None and result.plan.calls[0].startswith("lambda:UpdateAlias checkout-api:live")
    assert _alias(deployment).additional_weights  # still routing to the canary
    assert [e.action for e in repo.audit_trail("dg-1")] == ["remediation_dry_run"]


def test_targets_outside_the_allowlist_are_never_touched(repo: Any, publisher: Any, deployment: Deployment) -> None:
    executor = RemediationExecutor(RemediationSettings(), repo, publisher, TargetAllowlist(["lambda:payments-*"]))
    result = executor.run(_incident(deployment), deployment, ROLLBACK)
    assert result.outcome == Outcome.REFUSED and "not one DeployGuard is configured for" in result.message
    assert _alias(deployment).additional_weights


def test_concurrent_remediations_of_one_target_run_exactly_once(
    repo: Any, publisher: Any, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = _executor(repo, publisher)
    executions: list[str] = []
    others_done = threading.Event()
    original = actions.LambdaRollback.execute

    def slow_execute(self: actions.LambdaRollback, repository: Any) -> str:
        executions.append(threading.current_thread().name)
        others_done.wait(20)  # hold the lock until every other racer has given up
        return original(self, repository)

    monkeypatch.setattr(actions.LambdaRollback, "execute", slow_execute)
    racers = 8
    barrier = threading.Barrier(racers)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        barrier.wait()
        result = executor.run(_incident(deployment, f"inc-{i}"), deployment, ROLLBACK)
        with lock:
            outcomes.append(result.outcome)
            if sum(1 for o in outcomes if o != Outcome.SUCCEEDED) == racers - 1:
                others_done.set()

    threads = [threading.Thread(target=race, args=(i,), name=f"racer-{i}") for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(executions) == 1
    assert outcomes.count(Outcome.SUCCEEDED) == 1
    assert outcomes.count(Outcome.BUSY) == racers - 1
    assert _alias(deployment).weight_of(deployment.target.stable_version) == 1.0  # type: ignore[union-attr]
    # the lock was released: a later remediation of the target may run (and finds nothing to do)
    assert executor.run(_incident(deployment, "inc-late"), deployment, PlanStep(action="rollback")).outcome in (
        Outcome.NOOP,
        Outcome.COOLDOWN,
    )


def test_three_failures_open_the_breaker_and_page_a_person(
    repo: Any, publisher: Any, deployment: Deployment, sim_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LambdaTrafficShifter) -> Any:
        raise TrafficShiftError("checkout-api:live: ThrottlingException: Rate exceeded")

    monkeypatch.setattr(LambdaTrafficShifter, "rollback", broken)
    executor = _executor(repo, publisher)
    incident = _incident(deployment)
    outcomes = []
    for _ in range(3):
        outcomes.append(executor.run(incident, deployment, ROLLBACK))
        sim_clock.advance(11)  # past the 10 s cooldown
    assert [r.outcome for r in outcomes] == [Outcome.FAILED] * 3
    assert [r.attempt for r in outcomes] == [1, 2, 3]
    assert [r.details["breaker_opened"] for r in outcomes] == [False, False, True]
    pages = [e for e in publisher.events if e.details.get("kind") == "circuit_breaker_open"]
    assert len(pages) == 1 and pages[0].severity == Severity.CRITICAL
    assert pages[0].details["routes"] == ["oncall-primary"] and pages[0].details["failures"] == 3
    trail = repo.audit_trail("dg-1")
    attempts = [e for e in trail if e.action == "remediation_attempt"]
    failures = [e for e in trail if e.action == "remediation_failed"]
    assert [e.details["attempt"] for e in attempts] == [1, 2, 3]
    assert [e.details["attempt"] for e in failures] == [1, 2, 3]
    assert all("ThrottlingException" in e.reason for e in failures)
    assert [e.action for e in trail].count("circuit_breaker_opened") == 1
    # automation has stopped: another incident on the same target is blocked, not attempted
    blocked = executor.run(_incident(deployment, "inc-2"), deployment, ROLLBACK)
    assert blocked.outcome == Outcome.BLOCKED
    assert executor.breaker_open("lambda:checkout-api")
    # a person may still act; and after the reset period automation may try again
    sim_clock.advance(1801)
    assert not executor.breaker_open("lambda:checkout-api")
    assert _alias(deployment).additional_weights  # nothing changed the alias


def test_max_attempts_per_incident(
    repo: Any, publisher: Any, deployment: Deployment, sim_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LambdaTrafficShifter) -> Any:
        raise TrafficShiftError("boom")

    monkeypatch.setattr(LambdaTrafficShifter, "rollback", broken)
    executor = _executor(repo, publisher, circuit_breaker={"failure_threshold": 10})
    incident = _incident(deployment)
    for _ in range(3):
        executor.run(incident, deployment, ROLLBACK)
        sim_clock.advance(11)
    assert executor.run(incident, deployment, ROLLBACK).outcome == Outcome.EXHAUSTED


def test_cooldown_between_attempts_on_a_target(
    repo: Any, publisher: Any, deployment: Deployment, sim_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LambdaTrafficShifter) -> Any:
        raise TrafficShiftError("boom")

    monkeypatch.setattr(LambdaTrafficShifter, "rollback", broken)
    executor = _executor(repo, publisher)
    incident = _incident(deployment)
    assert executor.run(incident, deployment, ROLLBACK).outcome == Outcome.FAILED
    assert executor.run(incident, deployment, ROLLBACK).outcome == Outcome.COOLDOWN
    sim_clock.advance(11)
    assert executor.run(incident, deployment, ROLLBACK).outcome == Outcome.FAILED


def test_approval_mode_waits_for_a_person(repo: Any, publisher: Any, deployment: Deployment) -> None:
    executor = _executor(repo, publisher)
    incident = _incident(deployment)
    step = PlanStep(action="rollback", mode="approval")
    pending = executor.run(incident, deployment, step)
    assert pending.outcome == Outcome.PENDING_APPROVAL and pending.approval_id
    assert executor.run(incident, deployment, step).message == "an approval is already pending"
    assert _alias(deployment).additional_weights
    assert [e.details["kind"] for e in publisher.events] == ["approval_requested"]
    approval = executor.decide(pending.approval_id, "alice", approve=True, notes="go")
    assert approval.status == ApprovalStatus.APPROVED
    with pytest.raises(Exception, match="not pending"):
        executor.decide(pending.approval_id, "bob", approve=False)
    results = executor.run_approved({incident.incident_id: incident})
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED]
    assert executor.store.approval(pending.approval_id).status == ApprovalStatus.EXECUTED
    assert _alias(deployment).weight_of(deployment.target.stable_version) == 1.0  # type: ignore[union-attr]
    trail = [e.action for e in repo.audit_trail("dg-1")]
    assert trail.index("remediation_pending_approval") < trail.index("remediation_approved")
    assert trail.index("remediation_approved") < trail.index("remediation_succeeded")


def test_rejected_and_expired_approvals_never_run(
    repo: Any, publisher: Any, deployment: Deployment, sim_clock: Any
) -> None:
    executor = _executor(repo, publisher)
    step = PlanStep(action="rollback", mode="approval")
    first = executor.run(_incident(deployment), deployment, step)
    executor.decide(first.approval_id or "", "alice", approve=False, notes="false alarm")
    second = executor.run(_incident(deployment, "inc-2"), deployment, step)
    sim_clock.advance(3601)
    assert executor.run_approved({}) == []
    assert executor.store.approval(second.approval_id or "").status == ApprovalStatus.EXPIRED
    assert _alias(deployment).additional_weights
