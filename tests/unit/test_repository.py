from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from deployguard.exceptions import ConflictError, NotFoundError
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget

TARGET = LambdaTarget(function_name="fn", alias="live", stable_version="1", new_version="2")


def _deployment(deployment_id: str, service: str = "svc", environment: str = "prod") -> Deployment:
    return Deployment(
        deployment_id=deployment_id,
        service=service,
        environment=environment,
        version="2",
        target=TARGET,
        status=DeploymentStatus.IN_PROGRESS,
    )


def test_create_is_conditional(repository: Any) -> None:
    repository.create_deployment(_deployment("d-1"))
    with pytest.raises(ConflictError):
        repository.create_deployment(_deployment("d-1"))
    assert repository.get_deployment("d-1").version_counter == 1
    with pytest.raises(NotFoundError):
        repository.get_deployment("d-missing")


def test_racing_writers_do_not_lose_an_update(repository: Any) -> None:
    repository.create_deployment(_deployment("d-race"))
    first = repository.get_deployment("d-race")
    second = repository.get_deployment("d-race")
    first.canary_weight = 0.25
    repository.save_deployment(first)
    second.decision = "promoted"
    with pytest.raises(ConflictError):
        repository.save_deployment(second)  # would have overwritten the weight
    # the safe path re-reads and applies both changes
    repository.update_deployment("d-race", lambda d: setattr(d, "decision", "promoted"))
    stored = repository.get_deployment("d-race")
    assert (stored.canary_weight, stored.decision, stored.version_counter) == (0.25, "promoted", 3)


def test_active_index_is_sparse_and_service_index_is_newest_first(repository: Any, embedded: Any) -> None:
    for i in range(3):
        repository.create_deployment(_deployment(f"d-{i}"))
        embedded.clock.advance(60)
    repository.create_deployment(_deployment("other", service="other"))
    repository.update_deployment("d-1", lambda d: setattr(d, "status", DeploymentStatus.SUCCEEDED))
    assert {d.deployment_id for d in repository.active_deployments()} == {"d-0", "d-2", "other"}
    assert [d.deployment_id for d in repository.deployments_of("svc", "prod")] == ["d-2", "d-1", "d-0"]


def test_history_and_audit_keep_write_order(repository: Any) -> None:
    repository.create_deployment(_deployment("d-audit"))
    for action in ("validated", "traffic_shifted", "assessed", "promoted"):
        repository.audit("d-audit", action, "test", "same instant")
    assert [e.action for e in repository.audit_trail("d-audit")] == [
        "validated",
        "traffic_shifted",
        "assessed",
        "promoted",
    ]


def test_claim_once_until_expiry(repository: Any, embedded: Any) -> None:
    assert repository.claim_once("DEDUP", "ev-1", timedelta(minutes=5))
    assert not repository.claim_once("DEDUP", "ev-1", timedelta(minutes=5))
    embedded.clock.advance(301)
    assert repository.claim_once("DEDUP", "ev-1", timedelta(minutes=5))


# ---------------------------------------------------------------- issue 11, part 4: idempotent writes


def _assessment(deployment_id: str) -> Any:
    from deployguard.models import Assessment, Decision, HealthStatus, Verdict

    return Assessment(
        deployment_id=deployment_id,
        verdict=Verdict(decision=Decision.HEALTHY, summary="no regression"),
        health_status=HealthStatus.HEALTHY,
    )


def _cursor(embedded: Any) -> Any:
    from deployguard.models import AssessmentCursor, Decision, HealthStatus

    now = embedded.clock()
    return AssessmentCursor(kind="canary", at=now, decision=Decision.HEALTHY, health_status=HealthStatus.HEALTHY,
                            next_at=now + timedelta(minutes=1))  # fmt: skip


def test_an_assessment_transaction_written_then_answered_500_recognises_its_own_write(
    repository: Any, embedded: Any
) -> None:
    """TransactWriteItems applied by DynamoDB, answered 500: botocore's retry finds the items it wrote."""
    from deployguard.aws import clients
    from deployguard_local.chaos.faults import FaultInjector

    repository.create_deployment(_deployment("d-tx"))
    deployment = repository.get_deployment("d-tx")
    deployment.canary_weight = 0.2
    tokens: list[str] = []
    events = clients.client("dynamodb").meta.events
    event = "before-parameter-build.dynamodb.TransactWriteItems"
    events.register(event, lambda params, **_: tokens.append(params["ClientRequestToken"]), unique_id="test-tokens")
    try:
        with FaultInjector(embedded.clock) as faults:
            faults.at("dynamodb", "ambiguous", 1, "TransactWriteItems")
            repository.save_with_assessment(deployment, _assessment("d-tx"))
    finally:
        events.unregister(event, unique_id="test-tokens")
    injected = faults.injected["dynamodb:TransactWriteItems:ambiguous"]
    assert injected >= 1 and faults.calls["dynamodb:TransactWriteItems"] > injected  # retried after the 500
    stored = repository.get_deployment("d-tx")
    assert (stored.canary_weight, stored.version_counter, deployment.version_counter) == (0.2, 2, 2)
    assert len(repository.assessments("d-tx")) == 1
    assert len(tokens) == 1 and 0 < len(tokens[0]) <= 36  # one call; its token is what AWS deduplicates by


def test_an_assessment_saved_again_by_its_caller_after_an_ambiguous_answer_is_not_dropped(
    repository: Any, embedded: Any
) -> None:
    """The monitor's save_assessment: the first try landed but raised; trying the same write again
    (same deployment as read, same assessment) succeeds instead of conflicting and dropping it."""
    from deployguard.workflows.assessment import save_assessment
    from deployguard_local.chaos.faults import FaultInjector

    repository.create_deployment(_deployment("d-again"))
    deployment = repository.get_deployment("d-again")
    assessment = _assessment("d-again")
    with FaultInjector(embedded.clock) as faults:  # every attempt botocore makes lands and is answered 500
        faults.at("dynamodb", "ambiguous", 3600, "TransactWriteItems")
        with pytest.raises(Exception, match="InternalServerError"):
            repository.save_with_assessment(deployment.model_copy(), assessment)
    saved = save_assessment(repository, deployment, assessment, _cursor(embedded))
    assert saved is not None and saved.version_counter == 2
    assert repository.get_deployment("d-again").version_counter == 2
    assert [a.assessment_id for a in repository.assessments("d-again")] == [assessment.assessment_id]


def test_a_transaction_of_another_writer_still_conflicts(repository: Any) -> None:
    repository.create_deployment(_deployment("d-other"))
    first = repository.get_deployment("d-other")
    second = repository.get_deployment("d-other")
    repository.save_with_assessment(first, _assessment("d-other"))
    with pytest.raises(ConflictError):
        repository.save_with_assessment(second, _assessment("d-other"))  # another assessment, same version read
    assert len(repository.assessments("d-other")) == 1


def test_items_leave_out_null_defaults_and_read_back_the_same(repository: Any) -> None:
    """A field that is None by default and None here is not stored (DynamoDB bills its name and a NULL:
    the minute loop's records and assessments were just over 1 KB, two write units); reading gives it back."""
    from deployguard.models import Assessment, Decision, Verdict, VerdictReason

    deployment = repository.create_deployment(_deployment("d-nulls"))
    reason = VerdictReason(metric_id="errors", status="pass", message="errors: usual")
    assessment = Assessment(deployment_id="d-nulls", canary_weight=1.0,
                            verdict=Verdict(decision=Decision.HEALTHY, summary="ok", reasons=[reason]))  # fmt: skip
    repository.save_with_assessment(deployment, assessment)
    items = repository.table.scan()["Items"]

    def nulls(value: Any) -> int:
        if isinstance(value, dict):
            return sum(nulls(v) for v in value.values())
        if isinstance(value, list):
            return sum(nulls(v) for v in value)
        return value is None

    assert len(items) >= 2 and all(nulls(item) == 0 for item in items)
    assert "decision" not in next(i for i in items if i["sk"] == "META")
    stored = repository.get_deployment("d-nulls")
    assert stored.decision is None and stored.weight_changed_at is None and stored.target == TARGET
    (read,) = repository.assessments("d-nulls")
    assert read.verdict.reasons == [reason] and read.health_score is None
