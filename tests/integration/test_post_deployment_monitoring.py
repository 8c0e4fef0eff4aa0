"""After promotion a release is compared with the service's own last 24 hours, on the
post-deployment schedule, until monitoring ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from metric_history import write_lambda_history

from deployguard import clock
from deployguard.aws.events import EventPublisher
from deployguard.config import load_config
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
    assert [e.event_type for e in repository.events("promoted")] == [EventType.ASSESSMENT_STATUS_CHANGED]

    embedded.clock.advance(30)  # the schedule says every minute: not due yet
    assert monitor_promoted(config, repository, EventPublisher(), clock.now()).not_due == ["promoted"]

    embedded.clock.advance(24 * 3600)
    ended = monitor_promoted(config, repository, EventPublisher(), clock.now())
    assert ended.finished == ["promoted"]
    assert repository.get_deployment("promoted").phase == Phase.COMPLETED
    assert repository.monitored_deployments() == []


def test_a_release_that_behaves_like_its_history_raises_nothing(embedded: Any) -> None:
    config = load_config(embedded.root / "examples" / "deployguard.yaml")
    repository = DeploymentRepository()
    _write("1", clock.now(), 20 * 60, errors_per_1000=5)
    embedded.clock.advance(20 * 3600)
    promoted = clock.now()
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
