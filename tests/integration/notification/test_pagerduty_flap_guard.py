"""PagerDuty's flap guard through the router function's handler: a canary flapping between healthy and
degraded keeps ONE PagerDuty incident (repeated triggers of one dedup_key, no resolve between them)
instead of a new page every minute; the resolve goes out once the deployment stayed healthy for the
channel's ``resolve_after_healthy_seconds``, sent by the router's one-minute schedule. A local HTTP
receiver on 127.0.0.1 stands in for PagerDuty's Events API; time is the simulated clock; the handler's
cached router is dropped between invocations (a new Lambda container), so the state is DynamoDB's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from notif_support import (
    SCHEDULE,
    Aws,
    invoke,
    make_event,
    pagerduty_actions,
    router_app,
    send,
    status_event,
    write_pagerduty_config,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard_local.receivers import LocalReceivers, local_receivers


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(echo=None) as group:
        yield group


@pytest.fixture
def app(aws: Aws, receivers: LocalReceivers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    config = write_pagerduty_config(tmp_path / "dg.yaml", receivers.urls["pagerduty"])
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
    with router_app(aws, monkeypatch) as module:
        yield module


def _minute(aws: Aws, app: ModuleType) -> None:
    """A minute passes; the router's schedule fires twice meanwhile (flushing what is due)."""
    for _ in range(2):
        aws.clock.advance(30)
        invoke(app, SCHEDULE)


def test_a_flapping_canary_keeps_one_pagerduty_incident_and_is_resolved_once_stable(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    for minute in range(10):  # healthy and degraded in turn, for 10 minutes
        send(app, status_event(aws, "degraded" if minute % 2 == 0 else "healthy"))
        _minute(aws, app)
    actions = pagerduty_actions(receivers)
    assert actions == [("trigger", "deployguard/dg-1")] * 5  # one incident, updated; no resolve, no new page
    deferred = [n for n in aws.repository.notifications("dg-1") if n.status is DeliveryStatus.SUPPRESSED]
    assert len(deferred) == 5 and all("resolve deferred" in (n.error or "") for n in deferred)

    # the last one (minute 9) was healthy, and it stays so: 60 s passed since, the resolve waits 180 s
    _minute(aws, app)
    assert [a for a, _ in pagerduty_actions(receivers)].count("resolve") == 0  # healthy for 120 s: not yet
    _minute(aws, app)
    assert pagerduty_actions(receivers)[5:] == [("resolve", "deployguard/dg-1")]  # stable for 180 s: resolved, once
    for _ in range(5):
        _minute(aws, app)
    assert pagerduty_actions(receivers)[5:] == [("resolve", "deployguard/dg-1")]
    assert aws.repository.notifications("dg-1")[-1].status is DeliveryStatus.DELIVERED


def test_a_terminal_recovery_resolves_at_once_and_drops_the_deferred_resolve(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"))
    aws.clock.advance(30)
    completed = make_event(EventType.DEPLOYMENT_COMPLETED, Severity.INFO, at=aws.clock())
    send(app, completed)
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1"), ("resolve", "deployguard/dg-1")]
    for _ in range(5):
        _minute(aws, app)
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1"), ("resolve", "deployguard/dg-1")]


def test_a_healthy_copy_arriving_after_a_later_degraded_one_resolves_nothing(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    """SNS keeps no order: the healthy assessment of 12:01 arrives after the degraded one of 12:02."""
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    healthy = status_event(aws, "healthy")
    aws.clock.advance(60)
    send(app, status_event(aws, "degraded"))
    send(app, healthy)
    for _ in range(6):
        _minute(aws, app)
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1")] * 2


def test_a_rollback_failure_after_the_canary_recovered_is_not_resolved_by_the_deferred_resolve(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    """Healthy, then the rollback fails 60 s later: PagerDuty pages, and that page stays open (the resolve
    deferred since the healthy assessment is cancelled by the trigger, not sent once the delay passed)."""
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"))  # resolve deferred 180 s
    aws.clock.advance(60)
    failed = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL, at=aws.clock())
    send(app, failed)
    for _ in range(6):
        _minute(aws, app)
    assert pagerduty_actions(receivers) == [("trigger", "deployguard/dg-1")] * 2


def test_an_escalation_page_or_an_alert_after_the_canary_recovered_stays_open(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    """An escalation page (below the trigger severity) or an alert trigger for the deployment cancels the
    deferred resolve too: neither the deployment's key nor the incident's is resolved after the delay."""
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"))
    aws.clock.advance(30)
    page = make_event(EventType.ALERT, Severity.INFO, at=aws.clock(),
                      details={"kind": "page", "incident_id": "inc-1", "step_index": 1})  # fmt: skip
    send(app, page)
    for _ in range(6):
        _minute(aws, app)
    assert pagerduty_actions(receivers) == [
        ("trigger", "deployguard/dg-1"),
        ("trigger", "deployguard/dg-1/incident/inc-1"),
    ]

    send(app, status_event(aws, "healthy"))  # healthy again, later: deferred anew
    aws.clock.advance(30)
    firing = {"kind": "alert", "rule": "error-rate", "alert": "error-rate", "state": "firing"}
    alert = make_event(EventType.ALERT, Severity.CRITICAL, at=aws.clock(), details=firing)
    send(app, alert)
    for _ in range(6):
        _minute(aws, app)
    assert [a for a, _ in pagerduty_actions(receivers)] == ["trigger"] * 3
