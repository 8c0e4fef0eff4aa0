"""One deployment's failed write before its look (the write that ends a post-deployment monitoring, the audit
entry of a canary's traffic weight change) costs only that deployment its look, in the minute tick
(AssessorFunction on its schedule event) and in a shard (AssessorShardFunction): it is reported failed with
the true reason and looked at again the next minute; every other deployment is assessed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from tick_support import CANARIES, function_faults, minute_tick, seeded_loop

from deployguard import clock
from deployguard.aws.shards import send_shards
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy_targets import TARGETS
from deployguard_local.emulator import EmbeddedAws

ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call (adaptive mode: 8 retries)


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with seeded_loop() as aws:
        yield aws


@pytest.fixture
def faults(loop: EmbeddedAws) -> Iterator[FaultInjector]:
    with function_faults(loop) as injector:  # the functions' calls only
        yield injector


def _when(*texts: bytes) -> Any:
    return lambda request: all(text in (request.body or b"") for text in texts)


def _monitored_past_24_hours(repository: DeploymentRepository) -> None:
    """A promoted deployment whose 24 hours of monitoring are over: the tick ends them (a write of its record)."""
    now = clock.now()
    target = LambdaTarget(function_name="bench-fn-0", alias="live", stable_version="1", new_version="2")
    repository.create_deployment(Deployment(
        deployment_id="old-mon", service="bench-fn-0", environment="production", version="2", target=target,
        status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING, driver="codedeploy",
        started_at=now - timedelta(hours=25, minutes=10), ended_at=now - timedelta(hours=25)))  # fmt: skip


def test_a_monitoring_that_cannot_be_ended_costs_only_itself(loop: EmbeddedAws, faults: FaultInjector) -> None:
    repository = DeploymentRepository()
    _monitored_past_24_hours(repository)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_when(b"old-mon", b"completed"))
    payload = minute_tick(loop)
    assert plan.injected == 9  # its write failed, past botocore's retries
    assert list(payload["failed"]) == ["old-mon"]  # the tick ran on: the canaries are not failed with it
    assert "ThrottlingException" in payload["failed"]["old-mon"]
    # the retries' back-off took the tick's lease (simulated time): the canaries wait for the next tick, as
    # any look the budget leaves (a throttled write later in the tick leaves them assessed: the shard below)
    assert sorted(payload["deferred"]) == CANARIES and payload["due"] == 3
    assert repository.get_deployment("old-mon").phase == Phase.MONITORING  # still due: the next tick ends it
    faults.clear()
    assert loop.clock is not None
    loop.clock.advance(60)
    again = minute_tick(loop)
    assert sorted(a["deployment_id"] for a in again["assessed"]) == CANARIES
    assert again["failed"] == {} and repository.get_deployment("old-mon").phase == Phase.COMPLETED


def test_a_monitoring_that_cannot_be_ended_in_a_shard_costs_only_itself(
    loop: EmbeddedAws, faults: FaultInjector
) -> None:
    repository = DeploymentRepository()
    _monitored_past_24_hours(repository)
    faults.on("dynamodb", "PutItem", ONE_CALL, when=_when(b"old-mon", b"completed"))
    send_shards(loop.ref("AssessmentQueue"), [["old-mon", *CANARIES]], clock.now())
    [(payload, errored)] = loop.deliver_queue("AssessorShardFunction")
    assert not errored, payload
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == CANARIES
    assert list(payload["failed"]) == ["old-mon"] and "ThrottlingException" in payload["failed"]["old-mon"]


def test_a_weight_change_that_cannot_be_audited_costs_only_its_canary(loop: EmbeddedAws, faults: FaultInjector) -> None:
    repository = DeploymentRepository()
    TARGETS.weigh_lambda(repository.get_deployment("bench-00000").codedeploy_deployment_id, 50.0)  # traffic moved

    def recheck(d: Deployment) -> None:
        d.weight_checked_at = None  # the last look's split asked for a recheck

    repository.update_deployment("bench-00000", recheck)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=_when(b"traffic_observed"))
    payload = minute_tick(loop)
    assert plan.injected == 9
    assert sorted(a["deployment_id"] for a in payload["assessed"]) == ["bench-00001", "bench-00002"]
    assert list(payload["failed"]) == ["bench-00000"]
    reason = payload["failed"]["bench-00000"]
    assert "ThrottlingException" in reason and "metrics not read" not in reason  # the true reason
    assert payload["unreadable"] == []  # its metrics were never the trouble
    faults.clear()
    assert loop.clock is not None
    loop.clock.advance(60)
    again = minute_tick(loop)  # the next tick asks for the weight again, audits the change and looks
    assert "bench-00000" in [a["deployment_id"] for a in again["assessed"]]
    assert repository.get_deployment("bench-00000").canary_weight == 0.5
    assert [a.action for a in repository.audit_trail("bench-00000")].count("traffic_observed") == 1
