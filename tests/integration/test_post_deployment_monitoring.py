"""After promotion a release is compared with the service's own last 24 hours, on the
post-deployment schedule, until monitoring ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from metric_history import write_lambda_history

from deployguard import clock
from deployguard.aws.events import EventPublisher
from deployguard.config import DeployGuardConfig, load_config
from deployguard.models import Deployment, DeploymentStatus, EventType, HealthStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.monitoring import monitor_promoted

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")


def _write(version: str, start: Any, minutes: int, errors_per_1000: float) -> None:
    write_lambda_history("checkout-api", version, start, minutes, errors_per_1000)


def test_promoted_release_is_watched_against_its_history_then_released(embedded: Any) -> None:
    config = load_config(embedded.root / "examples" / "deployguard.yaml")
    repository = DeploymentRepository()
    start = clock.now()
    _write("1", start, 20 * 60, errors_per_1000=5)  # 20 hours of the stable version
    embedded.clock.advance(20 * 3600)
    promoted = clock.now()
    repository.create_deployment(
        Deployment(
            deployment_id="promoted",
            service="checkout-api",
            environment="production",
            version="2",
            target=TARGET,
            status=DeploymentStatus.SUCCEEDED,
            phase=Phase.MONITORING,
            started_at=promoted - timedelta(minutes=15),
            ended_at=promoted,
            canary_weight=1.0,
        )
    )
    assert [d.deployment_id for d in repository.monitored_deployments()] == ["promoted"]
    _write("2", promoted, 20, errors_per_1000=80)  # the release errs far more than the service ever did
    embedded.clock.advance(20 * 60)
    run = monitor_promoted(config, repository, EventPublisher(), clock.now())
    [assessment] = run.assessed
    assert assessment.health_status == HealthStatus.WARNING
    assert "errors" in assessment.verdict.summary and assessment.details["next_in_seconds"] == 60
    [changed] = repository.events("promoted")
    assert changed.event_type == EventType.ASSESSMENT_STATUS_CHANGED and changed.details["status"] == "warning"

    embedded.clock.advance(30)  # the schedule says every minute: not due yet
    assert monitor_promoted(config, repository, EventPublisher(), clock.now()).not_due == ["promoted"]

    embedded.clock.advance(24 * 3600)
    ended = monitor_promoted(config, repository, EventPublisher(), clock.now())
    assert ended.finished == ["promoted"]
    assert repository.get_deployment("promoted").phase == Phase.COMPLETED
    assert repository.monitored_deployments() == []


def _after_twenty_hours_of_history(embedded: Any) -> tuple[DeployGuardConfig, DeploymentRepository, datetime]:
    """The example configuration, the repository, and now: after 20 hours of the stable version."""
    _write("1", clock.now(), 20 * 60, errors_per_1000=5)
    embedded.clock.advance(20 * 3600)
    return load_config(embedded.root / "examples" / "deployguard.yaml"), DeploymentRepository(), clock.now()


def test_a_release_that_behaves_like_its_history_raises_nothing(embedded: Any) -> None:
    config, repository, promoted = _after_twenty_hours_of_history(embedded)
    repository.create_deployment(
        Deployment(
            deployment_id="calm",
            service="checkout-api",
            environment="production",
            version="2",
            target=TARGET,
            status=DeploymentStatus.SUCCEEDED,
            phase=Phase.MONITORING,
            started_at=promoted,
            ended_at=promoted,
        )
    )
    _write("2", promoted, 20, errors_per_1000=5)
    embedded.clock.advance(20 * 60)
    [assessment] = monitor_promoted(config, repository, EventPublisher(), clock.now()).assessed
    assert assessment.health_status == HealthStatus.HEALTHY, assessment.verdict.summary
    assert repository.events("calm") == []


def test_deployments_of_one_alias_share_one_set_of_alias_level_queries(embedded: Any) -> None:
    import boto3

    from deployguard_local.bench_scale import counting

    config, repository, promoted = _after_twenty_hours_of_history(embedded)
    for n, version in enumerate(("2", "3")):  # two releases of the service, both still watched
        target = TARGET.model_copy(update={"stable_version": str(n + 1), "new_version": version})
        repository.create_deployment(
            Deployment(deployment_id=f"rel-{version}", service="checkout-api", environment="production",
                       version=version, target=target, status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING,
                       started_at=promoted, ended_at=promoted + timedelta(minutes=n), canary_weight=1.0)
        )  # fmt: skip
    _write("3", promoted, 20, errors_per_1000=80)  # the newest release errs: the alias's series shows it
    embedded.clock.advance(20 * 60)
    queries: list[dict[str, Any]] = []
    with counting():
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register(
            "before-parameter-build.cloudwatch.GetMetricData", lambda params, **_: queries.extend(
                params["MetricDataQueries"]), unique_id="t-gmd")  # fmt: skip
        run = monitor_promoted(config, repository, EventPublisher(), clock.now())
    assert sorted(a.deployment_id for a in run.assessed) == ["rel-2", "rel-3"]
    specs = config.service("checkout-api").judge.metrics
    assert len(queries) == len(specs)  # one query per metric for the alias, not two per metric per deployment
    assert all(
        {d["Name"] for d in q["MetricStat"]["Metric"]["Dimensions"]} == {"FunctionName", "Resource"} for q in queries
    )
    assert all(a.health_status == HealthStatus.WARNING for a in run.assessed)
