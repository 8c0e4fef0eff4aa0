"""The post-traffic hook's look back (a second GetMetricData, retried) is not started when the hook's time
is nearly up: the status call must still go out. Without it the silent new version fails closed, naming why."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from moto_table import TABLE, RecordingPublisher

from deployguard.analysis.settings import alb_metrics
from deployguard.config import parse_config
from deployguard.hooks.lifecycle import LifecycleHook
from deployguard.models import CanaryWindow, Deployment, DeploymentStatus, EcsTarget, MetricKind, MetricWindow
from deployguard.storage.repository import DeploymentRepository


def test_no_look_back_when_the_hook_has_no_time_left() -> None:
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    deployment = Deployment(
        deployment_id="dg-ecs", service="web", environment="production", version="2", canary_weight=1.0,
        target=EcsTarget(cluster="prod", service="web", stable_task_definition="web:1", new_task_definition="web:2"),
        status=DeploymentStatus.IN_PROGRESS, started_at=start, traffic_started_at=start + timedelta(minutes=1),
    )  # fmt: skip
    count = next(s for s in alb_metrics() if s.kind == MetricKind.COUNT)
    window = CanaryWindow(canary_weight=1.0, metrics=[MetricWindow(spec=count, baseline=[0.0] * 6, canary=[0.0] * 6)])
    hook = LifecycleHook(
        parse_config("{}", "t.yaml"), DeploymentRepository(TABLE), RecordingPublisher(), local_mode=True
    )
    reason = hook._silent_new_version(deployment, window, start, 360, deadline=time.monotonic())
    assert reason is not None and "no time left in the hook to read it" in reason
