"""Two runs that overlap (a shard the next tick handed out again while the first still works on it) judge
a deployment once in a period: the run whose write meets the other's look (a conflict on the record it
read before that look landed) drops its own, and with it its announcement of a verdict change. A write
that meets another change of the record (not a look) is still stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from tick_support import seeded_loop

from deployguard import clock
from deployguard.models import Decision, Deployment, EventType
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard.workflows.assessor import run_shard
from deployguard_local.emulator import EmbeddedAws

IDS = ["bench-00000", "bench-00001", "bench-00002"]


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with seeded_loop() as aws:
        yield aws


class StaleReads(DeploymentRepository):
    """The second run's storage: its shard's records as read before the first run's writes landed."""

    def __init__(self, stale: list[Deployment]) -> None:
        super().__init__()
        self.stale = stale

    def deployments_by_id(self, deployment_ids: list[str], unreadable: list[str] | None = None) -> list[Deployment]:
        return [d.model_copy(deep=True) for d in self.stale if d.deployment_id in deployment_ids]


def _shard(ids: list[str], repository: DeploymentRepository) -> list[str]:
    run = run_shard(ids, runtime.config(), repository, runtime.publisher(), alerts=runtime.alert_engine())
    assert run.failed == {}
    return sorted(a.deployment_id for a in run.assessed)


def _recent(repository: DeploymentRepository, deployment_id: str) -> int:
    return len([a for a in repository.assessments(deployment_id) if a.at >= clock.now() - timedelta(seconds=30)])


def test_two_overlapping_runs_judge_each_deployment_once(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    stale = repository.deployments_by_id(IDS)  # what the second run reads, before the first one's writes land
    assert _shard(IDS, repository) == IDS
    assert loop.clock is not None
    loop.clock.advance(10)  # the second run, 10 s later, within the period
    assert _shard(IDS, StaleReads(stale)) == []  # its writes meet the first run's looks: dropped
    assert all(_recent(repository, i) == 1 for i in IDS)


def test_a_verdict_change_is_announced_once_by_overlapping_runs(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()

    def failing(d: Deployment) -> None:
        assert d.last_assessment is not None
        d.last_assessment.decision = Decision.FAILING  # the look changes it back to healthy: announced

    repository.update_deployment("bench-00000", failing)
    stale = repository.deployments_by_id(["bench-00000"])
    assert _shard(["bench-00000"], repository) == ["bench-00000"]
    assert loop.clock is not None
    loop.clock.advance(10)
    assert _shard(["bench-00000"], StaleReads(stale)) == []
    changes = [e for e in repository.events("bench-00000") if e.event_type == EventType.ASSESSMENT_STATUS_CHANGED]
    assert [e.title for e in changes] == ["Canary Healthy"]


def test_a_look_whose_record_changed_otherwise_is_still_stored(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    stale = repository.deployments_by_id(IDS)
    repository.update_deployment("bench-00001", lambda d: setattr(d, "decision_reason", "noted by a person"))
    assert _shard(IDS, StaleReads(stale)) == IDS  # the conflict was no look: read again, stored
    assert repository.get_deployment("bench-00001").decision_reason == "noted by a person"
    assert all(_recent(repository, i) == 1 for i in IDS)
