"""The minute loop's work per deployment does not grow with its age, two ticks never overlap, a
tick out of time leaves the rest for the next one (and still runs the alert tick), and more due
deployments than one invocation takes are handed out in shards through the assessment queue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from tick_support import minute_tick

from deployguard import clock
from deployguard.analysis.judge import state_fits
from deployguard.aws.shards import send_shards
from deployguard.models import Decision
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard.workflows.assessor import RUN_LOCK, run_tick
from deployguard_local.bench_scale import counting, seed_loop
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)) as aws:
        seed_loop(deployments=4, age_minutes=5, monitored=0)
        assert aws.clock is not None
        aws.clock.advance(60)
        yield aws


def _tick(aws: EmbeddedAws) -> dict[str, Any]:
    return minute_tick(aws)


def test_a_cycle_reads_no_history_writes_once_per_deployment_and_never_asks_lambda(loop: EmbeddedAws) -> None:
    queries: list[dict[str, Any]] = []
    with counting() as counter:

        def note(params: Any = None, **_: Any) -> None:
            queries.append(dict(params))

        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb.Query", note, unique_id="t-q")
        first = _tick(loop)
        assert loop.clock is not None
        loop.clock.advance(60)
        second = _tick(loop)
        boto3.DEFAULT_SESSION.events.unregister("before-parameter-build.dynamodb.Query", unique_id="t-q")
    assert len(first["assessed"]) == len(second["assessed"]) == 4
    calls = counter.guard_calls()
    assert calls[("dynamodb", "TransactWriteItems")] == 8  # assessment and record together, once each
    assert not any(service == "lambda" for service, _ in calls)  # weights come from CodeDeploy's targets
    assert calls[("cloudwatch", "GetMetricData")] == 2  # 40 queries a cycle: one call
    assert all("IndexName" in q for q in queries), "no history Query on the hot path"
    # a fixed number a cycle, whatever the number of deployments (the reconciler's ended and outbox reads included)
    assert calls[("dynamodb", "Query")] <= 2 * 10
    record = DeploymentRepository().get_deployment("bench-00000")
    assert record.last_assessment is not None and record.last_assessment.kind == "canary"
    assert record.last_assessment.decision in tuple(Decision)
    assert record.last_assessment.next_at > clock.now()
    assert record.last_assessment.judge_state is not None  # the judge's state, folded forward at the next look


def test_a_tick_is_refused_while_another_holds_the_run_lock(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    assert repository.claim_once(RUN_LOCK, "tick", timedelta(seconds=120))
    payload = _tick(loop)
    assert payload["overlapping"] is True and payload["assessed"] == []
    repository.release(RUN_LOCK, "tick")
    assert len(_tick(loop)["assessed"]) == 4


def test_out_of_time_the_rest_waits_for_the_next_tick_and_the_alert_tick_still_runs(loop: EmbeddedAws) -> None:
    repository = DeploymentRepository()
    args = (runtime.config(), repository, runtime.publisher())
    starved = run_tick(*args, alerts=runtime.alert_engine(), remaining_ms=lambda: 25_000)
    assert starved.assessed == [] and sorted(starved.deferred) == [f"bench-{n:05d}" for n in range(4)]
    assert starved.tick is not None  # escalation, auto-resolution and approved actions were not starved
    assert run_tick(*args, alerts=runtime.alert_engine()).overlapping  # its lease runs until the next minute
    assert loop.clock is not None
    loop.clock.advance(55)
    assert len(run_tick(*args, alerts=runtime.alert_engine()).assessed) == 4
    assert run_tick(*args, alerts=runtime.alert_engine(), lock=False).assessed == []  # not due again this minute


def test_more_due_than_one_invocation_takes_go_out_in_shards_to_the_shard_function(loop: EmbeddedAws) -> None:
    queue_url = loop.ref("AssessmentQueue")
    repository = DeploymentRepository()
    run = run_tick(
        runtime.config(), repository, runtime.publisher(), alerts=runtime.alert_engine(),
        send_shards=lambda shards: send_shards(queue_url, shards, clock.now()), shard_size=3, inline_limit=2,
    )  # fmt: skip
    assert run.shards == 2 and run.assessed == []
    answers = loop.deliver_queue("AssessorShardFunction")
    assert [errored for _, errored in answers] == [False, False]
    assert sum(len(payload["assessed"]) for payload, _ in answers) == 4
    assert all(payload["deferred"] == [] for payload, _ in answers)
    assert all(repository.get_deployment(f"bench-{n:05d}").last_assessment is not None for n in range(4))
    assert loop.deliver_queue("AssessorShardFunction") == []  # every shard was deleted once done


def test_a_judge_state_built_with_other_settings_is_read_again_whole_in_the_batched_read(loop: EmbeddedAws) -> None:
    """Changed judge settings: the stored state does not fit, and the look plans a whole-window read
    (decided once, before the read) that goes out with the others: no read of its own per canary."""
    repository = DeploymentRepository()
    config = runtime.config()
    run_tick(config, repository, runtime.publisher(), lock=False)  # every canary keeps a judge state
    assert loop.clock is not None
    for _ in range(4):  # states that have folded periods, so the next look reads only a tail
        loop.clock.advance(60)
        run_tick(config, repository, runtime.publisher(), lock=False)
    starts: list[datetime] = []
    with counting() as counter:

        def note(params: Any = None, **_: Any) -> None:
            starts.append(params["StartTime"])

        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build.cloudwatch.GetMetricData", note, unique_id="t-s")
        loop.clock.advance(60)
        tail = run_tick(config, repository, runtime.publisher(), lock=False)
        changed = config.model_copy(deep=True)
        changed.defaults.judge.min_periods += 1
        loop.clock.advance(60)
        again = run_tick(changed, repository, runtime.publisher(), lock=False)
        boto3.DEFAULT_SESSION.events.unregister("before-parameter-build.cloudwatch.GetMetricData", unique_id="t-s")
    assert len(tail.assessed) == len(again.assessed) == 4
    assert counter.guard_calls()[("cloudwatch", "GetMetricData")] == 2  # one batched read a cycle
    started = repository.get_deployment("bench-00000").started_at
    assert starts[0] > started + timedelta(minutes=2)  # the tail
    assert starts[1] <= started  # the whole window, in the same one call
    record = repository.get_deployment("bench-00000")
    assert record.last_assessment is not None and record.last_assessment.judge_state is not None
    judge = changed.defaults.judge
    assert state_fits(record.last_assessment.judge_state["state"], judge, judge.metrics)


def test_codedeploy_is_asked_for_the_weight_when_the_invocation_split_moves(loop: EmbeddedAws) -> None:
    """A steady canary's weight is not asked again for WEIGHT_RECHECK (its split agrees with it); a
    canary whose traffic CodeDeploy moves shows it in its per-version invocations, and the next look
    asks CodeDeploy and keeps the new weight (with the time it was seen, which starts the judge's grace)."""
    from deployguard.aws.cloudwatch import version_dimensions
    from deployguard.models import LambdaTarget
    from deployguard_local.bench_scale import _write_metrics
    from deployguard_local.ecs import TARGETS

    assert loop.clock is not None
    seeded_until = clock.now() + timedelta(minutes=4)
    _write_metrics(seeded_until, seeded_until + timedelta(minutes=25), seed=8, functions=4)
    repository = DeploymentRepository()
    args = (runtime.config(), repository, runtime.publisher())
    with counting() as steady:
        for _ in range(5):  # each was checked 0.5 to 4.5 minutes before: every 5 minutes would ask for all four
            assert len(run_tick(*args, lock=False).assessed) == 4
            loop.clock.advance(60)
    assert steady.guard_calls()[("codedeploy", "GetDeploymentTarget")] == 0  # the split fits the weight

    moved = repository.get_deployment("bench-00001")
    assert moved.canary_weight == 0.1 and moved.codedeploy_deployment_id is not None
    target = moved.target
    assert isinstance(target, LambdaTarget)
    TARGETS.weigh_lambda(moved.codedeploy_deployment_id, 50.0)
    specs = runtime.config().service(moved.service).judge.metrics
    invocations = next(spec for spec in specs if spec.id == "invocations")
    dims = version_dimensions(invocations, target, "2")
    shifted = clock.now().replace(second=0, microsecond=0)
    boto3.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Timestamp": shifted + timedelta(minutes=m, seconds=30), "Value": 800.0,
         "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dims.items())], "Unit": "Count"}
        for m in range(8)
    ])  # fmt: skip
    looks = 0
    with counting() as shift:
        while repository.get_deployment("bench-00001").canary_weight != 0.5 and looks < 6:
            run_tick(*args, lock=False)
            loop.clock.advance(60)
            looks += 1
    assert repository.get_deployment("bench-00001").canary_weight == 0.5
    assert looks <= 5, looks  # the split is read from settled periods: two to four minutes after the shift
    assert shift.guard_calls()[("codedeploy", "GetDeploymentTarget")] <= 2  # the moved canary's alone


def test_a_split_that_never_fits_the_weight_asks_codedeploy_only_every_few_minutes(loop: EmbeddedAws) -> None:
    """The new version is also invoked directly (not through the alias): its invocations never fit
    CodeDeploy's weight. CodeDeploy, asked once, says the weight did not move; from then on the
    split no longer asks every look, only every UNSPLIT_RECHECK (as when it cannot tell)."""
    from deployguard.aws.cloudwatch import version_dimensions
    from deployguard.models import LambdaTarget
    from deployguard.workflows.assessor import UNSPLIT_RECHECK
    from deployguard_local.bench_scale import _write_metrics

    assert loop.clock is not None
    seeded_until = clock.now() + timedelta(minutes=4)
    _write_metrics(seeded_until, seeded_until + timedelta(minutes=25), seed=8, functions=4)
    repository = DeploymentRepository()
    direct = repository.get_deployment("bench-00002")
    target = direct.target
    assert isinstance(target, LambdaTarget) and direct.canary_weight == 0.1
    specs = runtime.config().service(direct.service).judge.metrics
    dims = version_dimensions(next(spec for spec in specs if spec.id == "invocations"), target, "2")
    now = clock.now().replace(second=0, microsecond=0)
    boto3.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Timestamp": now + timedelta(minutes=m, seconds=30), "Value": 800.0,
         "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dims.items())], "Unit": "Count"}
        for m in range(-6, 16)
    ])  # fmt: skip
    args = (runtime.config(), repository, runtime.publisher())
    looks = 14
    asked: list[str] = []
    with counting():

        def note(params: Any = None, **_: Any) -> None:
            asked.append(params["deploymentId"])

        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register("before-parameter-build.codedeploy.GetDeploymentTarget", note, unique_id="t-asked")
        for _ in range(looks):
            run_tick(*args, lock=False)
            loop.clock.advance(60)
        events.unregister("before-parameter-build.codedeploy.GetDeploymentTarget", unique_id="t-asked")
    record = repository.get_deployment("bench-00002")
    assert record.canary_weight == 0.1 and record.split_disagrees
    times = asked.count(str(record.codedeploy_deployment_id))
    every = UNSPLIT_RECHECK.total_seconds() / 60
    assert 1 <= times <= 1 + looks // every, asked  # the first ask, then every UNSPLIT_RECHECK (not every look)
