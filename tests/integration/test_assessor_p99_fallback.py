"""The scheduled assessor reads a p99 configured without a p50 with its implicit p50 beside it (one
batched GetMetricData), judges the canary on both, and keeps a judge state that fits them, so the
next look folds forward rather than judging the whole window again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from deployguard.analysis.judge import state_fits
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard.workflows.assessor import run_tick
from deployguard_local.bench_scale import seed_loop
from deployguard_local.emulator import EmbeddedAws


@pytest.fixture
def loop() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)) as aws:
        seed_loop(deployments=1, age_minutes=5, monitored=0)
        assert aws.clock is not None
        aws.clock.advance(60)
        yield aws


def test_the_assessor_reads_and_judges_the_implicit_p50_of_a_lone_p99(loop: EmbeddedAws) -> None:
    config = runtime.config().model_copy(deep=True)
    for service in [config.defaults, *config.services.values()]:
        service.judge.metrics = [m for m in service.judge.metrics if m.id != "duration_p50"]
    judge = config.defaults.judge
    assert "duration_p50" not in [m.id for m in judge.metrics]
    assert [m.id for m in judge.read_metrics if m.id.startswith("duration")] == ["duration_p99", "duration_p50"]
    read: list[str] = []

    def note(params: Any = None, **_: Any) -> None:
        read.extend(q["MetricStat"]["Stat"] + ":" + q["MetricStat"]["Metric"]["MetricName"]
                    for q in params["MetricDataQueries"])  # fmt: skip

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.cloudwatch.GetMetricData", note, unique_id="t-p50")
    try:
        repository = DeploymentRepository()
        assert len(run_tick(config, repository, runtime.publisher(), lock=False).assessed) == 1
    finally:
        boto3.DEFAULT_SESSION.events.unregister("before-parameter-build.cloudwatch.GetMetricData", unique_id="t-p50")
    assert sorted(read) == sorted(
        [f"{stat}:{name}" for stat, name in (("Sum", "Invocations"), ("Sum", "Errors"), ("Sum", "Throttles"),
                                             ("p99", "Duration"), ("p50", "Duration")) for _ in range(2)]
    )  # fmt: skip
    record = repository.get_deployment("bench-00000")
    assert record.last_assessment is not None and record.last_assessment.judge_state is not None
    state = record.last_assessment.judge_state["state"]
    assert "duration_p50" in state["metrics"]
    assert state_fits(state, judge, judge.read_metrics) and not state_fits(state, judge, judge.metrics)
