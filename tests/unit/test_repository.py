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
