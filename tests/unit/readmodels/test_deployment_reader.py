"""Read models on moto's DynamoDB: lists through the indexes, paging, filters, history, the CI gate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deployguard import clock
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentStatus,
    LambdaTarget,
    Verdict,
    VerdictReason,
)
from deployguard.readmodels import (
    DeploymentQuery,
    DeploymentReader,
    GateOutcome,
    QueryError,
    history_json_schema,
    parse_since,
    timeline,
)
from deployguard.storage.repository import DeploymentRepository


def _deployment(service: str, env: str = "production", status: DeploymentStatus = DeploymentStatus.SUCCEEDED,
                **kw: object) -> Deployment:  # fmt: skip
    target = LambdaTarget(function_name=service, alias="live", stable_version="1", new_version="2")
    return Deployment(service=service, environment=env, version="2", target=target, status=status, **kw)


def _seed(repo: DeploymentRepository, sim_clock: clock.SimulatedClock) -> list[Deployment]:
    made = []
    plan = [
        ("checkout", "production", DeploymentStatus.SUCCEEDED),
        ("payments", "production", DeploymentStatus.ROLLED_BACK),
        ("checkout", "staging", DeploymentStatus.SUCCEEDED),
        ("search", "production", DeploymentStatus.IN_PROGRESS),
        ("checkout", "production", DeploymentStatus.ROLLED_BACK),
        ("payments", "production", DeploymentStatus.SUCCEEDED),
        ("checkout", "production", DeploymentStatus.IN_PROGRESS),
    ]
    for service, env, status in plan:
        sim_clock.advance(600)
        made.append(repo.create_deployment(_deployment(service, env, status, started_at=clock.now())))
    return made


def test_lists_every_service_newest_first_in_pages(repo: DeploymentRepository, sim_clock: clock.SimulatedClock) -> None:
    made = _seed(repo, sim_clock)
    reader = DeploymentReader(repo)
    seen, cursor = [], None
    for _ in range(5):
        page = reader.page(DeploymentQuery(limit=3, cursor=cursor))
        seen += [d.deployment_id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [d.deployment_id for d in reversed(made)]  # all seven, newest first, none twice


def test_filters_by_service_environment_status_and_since(
    repo: DeploymentRepository, sim_clock: clock.SimulatedClock
) -> None:
    made = _seed(repo, sim_clock)
    reader = DeploymentReader(repo)
    checkout = reader.page(DeploymentQuery(service="checkout")).items
    assert [d.deployment_id for d in checkout] == [made[i].deployment_id for i in (6, 4, 2, 0)]
    prod = reader.page(DeploymentQuery(service="checkout", environment="production")).items
    assert [d.deployment_id for d in prod] == [made[i].deployment_id for i in (6, 4, 0)]
    rolled = reader.page(DeploymentQuery(statuses=[DeploymentStatus.ROLLED_BACK])).items
    assert [d.deployment_id for d in rolled] == [made[4].deployment_id, made[1].deployment_id]
    running = reader.page(DeploymentQuery(statuses=[DeploymentStatus.IN_PROGRESS])).items  # the ACTIVE index
    assert [d.deployment_id for d in running] == [made[6].deployment_id, made[3].deployment_id]
    recent = reader.page(DeploymentQuery(since=parse_since("25m"))).items
    assert [d.deployment_id for d in recent] == [made[i].deployment_id for i in (6, 5, 4)]


def test_bad_filters_name_the_field(repo: DeploymentRepository) -> None:
    with pytest.raises(QueryError, match="since"):
        parse_since("last tuesday")
    with pytest.raises(QueryError, match="cursor"):
        DeploymentReader(repo).page(DeploymentQuery(cursor="not-a-cursor"))


def test_get_by_prefix_and_history_with_timeline(repo: DeploymentRepository, sim_clock: clock.SimulatedClock) -> None:
    deployment = repo.create_deployment(_deployment("checkout", status=DeploymentStatus.IN_PROGRESS))
    repo.audit(deployment.deployment_id, "traffic_shifted", "deployguard:canary", "step 1: 10% to canary", weight=10)
    sim_clock.advance(60)
    reason = VerdictReason(metric_id="errors", status="fail", baseline_value=0.01, canary_value=0.08,
                           message="errors: canary 8% vs baseline 1%")  # fmt: skip
    repo.add_assessment(
        Assessment(deployment_id=deployment.deployment_id, canary_weight=0.1, health_score=64.0,
                   verdict=Verdict(decision=Decision.FAILING, summary="canary worse", reasons=[reason]),
                   details={"health": {"business_impact": 2.5}})
    )  # fmt: skip

    def rolled_back(d: Deployment) -> None:
        d.status, d.decision, d.ended_at = DeploymentStatus.ROLLED_BACK, "rolled_back", clock.now()

    sim_clock.advance(5)
    repo.update_deployment(deployment.deployment_id, rolled_back)
    reader = DeploymentReader(repo, prefixes=True)  # the CLI's reader: ids or unique prefixes
    history = reader.history(deployment.deployment_id[:8])
    assert history.deployment.deployment_id == deployment.deployment_id
    assert history.outcome.exit_code == 1
    assert [s.weight for s in history.traffic] == [0.0, 0.1, 0.0]
    assert history.metric_ids() == ["errors"]
    items = timeline(history)
    assert [i.kind for i in items] == ["traffic", "traffic", "assessment", "traffic"]
    assert "health 64, business impact 2.5/10" in items[2].title and "canary 8%" in items[2].detail
    exported = history.model_dump(mode="json", by_alias=True)
    assert exported["schema"] == "deployguard-history/1"
    assert set(history_json_schema()["properties"]) == set(exported)


@pytest.mark.parametrize(
    ("status", "decision", "code"),
    [
        (DeploymentStatus.SUCCEEDED, "promoted", 0),
        (DeploymentStatus.ROLLED_BACK, "rolled_back", 1),
        (DeploymentStatus.FAILED, None, 1),
        (DeploymentStatus.STOPPED, "held", 2),
        (DeploymentStatus.STOPPED, None, 1),
        (DeploymentStatus.IN_PROGRESS, None, 3),
    ],
)
def test_gate_exit_codes(status: DeploymentStatus, decision: str | None, code: int) -> None:
    assert GateOutcome.of(_deployment("checkout", status=status, decision=decision)).exit_code == code


def test_wait_follows_the_simulated_clock_until_the_end_or_the_timeout(
    repo: DeploymentRepository, sim_clock: clock.SimulatedClock
) -> None:
    deployment = repo.create_deployment(_deployment("checkout", status=DeploymentStatus.IN_PROGRESS))
    reader = DeploymentReader(repo)
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # time passes; at minute 3 the canary is promoted
        polls.append(seconds)
        sim_clock.advance(seconds)
        if clock.now() - deployment.started_at >= timedelta(minutes=3):
            repo.update_deployment(deployment.deployment_id, lambda d: setattr(d, "status", DeploymentStatus.SUCCEEDED))

    outcome = reader.wait(deployment.deployment_id, timeout_seconds=600, poll_seconds=30, sleep=sleep)
    assert (outcome.state, outcome.exit_code, len(polls)) == ("promoted", 0, 6)

    stuck = repo.create_deployment(_deployment("search", status=DeploymentStatus.IN_PROGRESS))
    outcome = reader.wait(stuck.deployment_id, timeout_seconds=100, poll_seconds=30, sleep=sim_clock.advance)
    assert (outcome.exit_code, outcome.message.startswith("timed out after 100s")) == (3, True)


def test_summary_figures_trends_and_false_rollbacks(
    repo: DeploymentRepository, sim_clock: clock.SimulatedClock
) -> None:
    from deployguard.readmodels import SummaryBuilder

    start = clock.now()
    made = _seed(repo, sim_clock)  # seven deployments, ten minutes apart, all of version 2
    summary = SummaryBuilder(DeploymentReader(repo)).build(start, clock.now() + timedelta(seconds=1), "test")
    figures = summary.current
    assert (figures.deployments, figures.succeeded, figures.rolled_back, figures.running) == (7, 3, 2, 2)
    assert figures.success_rate == 3 / 5 and figures.change_failure_rate == 2 / 5
    assert summary.previous.deployments == 0
    assert {g.key: g.deployments for g in summary.by_service} == {"checkout": 4, "payments": 2, "search": 1}
    # payments 2 was rolled back, then the same version promoted: a false-rollback candidate
    candidates = [(c.rolled_back, c.redeployed) for c in summary.false_rollback_candidates]
    assert candidates == [(made[1].deployment_id, made[5].deployment_id)]
