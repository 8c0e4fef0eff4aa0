"""The traffic checks of ended deployments run in a function of their own (TrafficCheckFunction),
not in the assessor's minute tick: the tick makes no Lambda control-plane call, and the checks
keep a rate budget (a burst, then paced) and a time budget; what a run does not reach stays due."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tick_support import schedule_event

from deployguard import clock
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase, TrafficCheck
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard.workflows.reconciler import run_traffic_checks
from deployguard_local.bench_scale import counting
from deployguard_local.emulator import EmbeddedAws, sample_handler

ROOT = Path(__file__).resolve().parents[2]
ENDED = 12


@pytest.fixture
def ended() -> Iterator[EmbeddedAws]:
    """Twelve rolled-back deployments of one function ended half an hour ago, each check due; the
    alias of the first is left split (its rollback did not finish)."""
    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)) as aws:
        versions = aws.deploy_sample_function("ended-fn", "live", sample_handler)
        target = LambdaTarget(function_name="ended-fn", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        repository = DeploymentRepository()
        at = clock.now() - timedelta(minutes=30)
        for n in range(ENDED):
            repository.create_deployment(Deployment(
                deployment_id=f"end-{n:02d}", service="ended-fn", environment="production", version=versions[1],
                target=target, status=DeploymentStatus.ROLLED_BACK, phase=Phase.FAILED, started_at=at,
                ended_at=at, decision="rolled_back", traffic_check=TrafficCheck(checks=3, next_at=at),
            ))  # fmt: skip
        LambdaTrafficShifter(target).shift(0.5)
        yield aws


def test_the_minute_tick_makes_no_lambda_call_and_the_traffic_check_function_repairs(ended: EmbeddedAws) -> None:
    with counting() as tick:
        payload, errored = ended.invoke("AssessorFunction", schedule_event())
    assert not errored, payload
    assert not any(service == "lambda" for service, _ in tick.guard_calls())  # no control-plane call in the tick
    with counting() as checks:
        payload, errored = ended.invoke("TrafficCheckFunction", schedule_event())
    assert not errored, payload
    assert payload["checked"] == ENDED and payload["deferred"] == 0
    assert len(payload["repaired"]) == 1  # the split alias, once (the others then find it whole)
    assert checks.guard_calls()[("lambda", "GetAlias")] >= ENDED  # one a check (and the read back of the repair)
    record = DeploymentRepository().get_deployment("end-05")
    assert record.traffic_check.checks == 4 and record.traffic_check.next_at is not None
    assert record.traffic_check.next_at > clock.now()  # the next on its schedule: not read again until then
    payload, _ = ended.invoke("TrafficCheckFunction", schedule_event())
    assert payload["overlapping"] is True  # the run lock: its lease runs until the next minute
    assert ended.clock is not None
    ended.clock.advance(60)
    payload, _ = ended.invoke("TrafficCheckFunction", schedule_event())
    assert payload["checked"] == 0


def test_the_checks_keep_their_rate_and_time_budgets(ended: EmbeddedAws) -> None:
    repository, publisher = DeploymentRepository(), runtime.publisher()
    starved = run_traffic_checks(repository, publisher, remaining_ms=lambda: 4_000, lock=False)
    assert starved.checked == 0 and starved.deferred == ENDED  # out of time: all stay due
    before = clock.now()
    with counting() as counter:
        run = run_traffic_checks(repository, publisher, lock=False, limit=10, per_second=4.0)
    assert run.checked == 10 and run.more_due  # the limit: the two others are left for the next run, and it says so
    assert (clock.now() - before).total_seconds() >= (10 - 4) / 4.0  # a burst of four, then four a second
    assert counter.guard_calls()[("lambda", "GetAlias")] <= 10 + 1  # one a check, one read back after the repair
    rest = run_traffic_checks(repository, publisher, lock=False)
    assert rest.checked == 2 and not rest.more_due
    assert all(repository.get_deployment(f"end-{n:02d}").traffic_check.checks == 4 for n in range(ENDED))


def test_an_ended_record_stored_in_the_loops_partition_is_handed_over_by_the_tick(ended: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    legacy = repository.get_deployment("end-03")
    item = repository._deployment_item(legacy)
    item[keys.GSI1_PK] = keys.LOOP  # as the records were stored before the traffic checks had their own
    repository.table.put_item(Item=item)
    assert "end-03" not in [d.deployment_id for d in repository.traffic_checks_due(clock.now())]
    payload, errored = ended.invoke("AssessorFunction", schedule_event())
    assert not errored, payload
    assert "end-03" in [d.deployment_id for d in repository.traffic_checks_due(clock.now())]
    assert repository.loop_work(clock.now()).ended == []


def _later_deployment(repository: DeploymentRepository, target: LambdaTarget, version: str) -> None:
    repository.create_deployment(Deployment(
        deployment_id="later", service="ended-fn", environment="production", version=version, target=target,
        status=DeploymentStatus.IN_PROGRESS, phase=Phase.DEPLOYMENT_ACTIVE, started_at=clock.now(),
    ))  # fmt: skip


def test_a_later_release_on_another_version_is_never_put_back(ended: EmbeddedAws) -> None:
    """end-00..11 rolled back version 2; version 3, released later, now takes all the alias's traffic
    (no record of it needed): the earlier rollbacks' checks find nothing of theirs to put back."""
    from deployguard.aws import clients

    lambda_client = clients.client("lambda")
    lambda_client.update_function_configuration(FunctionName="ended-fn", Description="release 3")
    third = lambda_client.publish_version(FunctionName="ended-fn")["Version"]
    lambda_client.update_alias(FunctionName="ended-fn", Name="live", FunctionVersion=third, RoutingConfig={})
    payload, errored = ended.invoke("TrafficCheckFunction", schedule_event())
    assert not errored, payload
    assert payload["checked"] == ENDED and payload["repaired"] == []
    assert lambda_client.get_alias(FunctionName="ended-fn", Name="live")["FunctionVersion"] == third


def test_a_later_deployment_of_the_same_version_is_never_undone(ended: EmbeddedAws) -> None:
    """A later deployment of the service, started after the earlier ones ended, shifts version 2
    again (the fixture's split alias): the earlier deployments' checks end, superseded, and leave it."""
    repository = DeploymentRepository()
    earlier = repository.get_deployment("end-00").target
    assert isinstance(earlier, LambdaTarget)
    _later_deployment(repository, earlier, earlier.new_version)
    before = LambdaTrafficShifter(earlier).current()
    payload, errored = ended.invoke("TrafficCheckFunction", schedule_event())
    assert not errored, payload
    assert payload["checked"] == ENDED and payload["repaired"] == []
    assert LambdaTrafficShifter(earlier).current() == before
    record = repository.get_deployment("end-07")
    assert record.traffic_check.reconciled_at is not None
    assert any("superseded by deployment later" in a.reason for a in repository.audit_trail("end-07"))


def test_a_run_that_cannot_list_the_due_checks_fails_the_invocation(ended: EmbeddedAws) -> None:
    """The TRAFFIC query fails (a fault injected on the real DynamoDB client): the invocation fails
    (its Errors alarm, its on-failure destination), it does not report success with nothing checked."""
    from botocore.exceptions import ClientError

    from deployguard.aws import clients

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == keys.GSI1:  # the due checks' query (the run lock is a PutItem)
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "Query")

    events = clients.resource("dynamodb").meta.client.meta.events
    events.register("provide-client-params.dynamodb.Query", refuse, unique_id="refuse-traffic-query")
    try:
        payload, errored = ended.invoke("TrafficCheckFunction", schedule_event())
    finally:
        events.unregister("provide-client-params.dynamodb.Query", unique_id="refuse-traffic-query")
    assert errored and "TrafficChecksUnavailableError" in json.dumps(payload)
    assert LambdaTrafficShifter(DeploymentRepository().get_deployment("end-00").target).current().additional_weights
