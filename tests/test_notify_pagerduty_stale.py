"""A trigger delivered after the terminal resolve it precedes does not open PagerDuty's incident again.

SNS keeps no order and Lambda retries: ``rollback.initiated`` (critical: a trigger) can reach the
router after ``rollback.completed`` (the terminal resolve). The router keeps the time of each dedup
key's terminal resolve; a trigger for an event from before it is suppressed, recorded and audited.
A trigger for a later event still goes out. The router function's handler, a local PagerDuty receiver.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
    pagerduty_actions,
    router_app,
    send,
    write_pagerduty_config,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard_local.receivers import LocalReceivers, local_receivers


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(kinds=("pagerduty",), echo=None) as group:
        yield group


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch, receivers: LocalReceivers, tmp_path: Path) -> Iterator[ModuleType]:  # noqa: F811
    config = write_pagerduty_config(tmp_path / "dg.yaml", receivers.urls["pagerduty"])
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
    with router_app(aws, monkeypatch) as module:
        yield module


def _status(aws: Aws, event_id: str) -> tuple[DeliveryStatus, str | None]:  # noqa: F811
    [record] = [n for n in aws.repository.notifications("dg-1") if n.event_id == event_id]
    return record.status, record.error


def test_a_late_trigger_from_before_the_rollback_completed_is_suppressed_and_audited(
    aws: Aws,  # noqa: F811
    app: ModuleType,
    receivers: LocalReceivers,
) -> None:
    start = aws.clock()
    initiated = make_event(EventType.ROLLBACK_INITIATED, Severity.CRITICAL, at=start)
    page = make_event(EventType.ALERT, Severity.CRITICAL, at=start + timedelta(seconds=1),
                      details={"kind": "page", "alert": "canary-issue", "incident_id": "in-1"})  # fmt: skip
    completed = make_event(EventType.ROLLBACK_COMPLETED, Severity.WARNING, at=start + timedelta(seconds=2))
    send(app, completed)  # arrives first
    aws.clock.advance(30)
    send(app, initiated)  # the earlier events, delivered late
    send(app, page)
    assert pagerduty_actions(receivers) == [("resolve", "deployguard/dg-1")]
    for event in (initiated, page):
        status, error = _status(aws, event.event_id)
        assert status is DeliveryStatus.SUPPRESSED and "stale trigger" in (error or "")
        assert "rollback.completed" in (error or "")
    audited = [a for a in aws.repository.audit_trail("dg-1") if a.action == "notification.stale_trigger_suppressed"]
    assert sorted(a.details["event_id"] for a in audited) == sorted([initiated.event_id, page.event_id])

    # a failure after the rollback completed is news: it pages
    later = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL, at=aws.clock())
    send(app, later)
    assert pagerduty_actions(receivers)[-1] == ("trigger", "deployguard/dg-1")
    assert _status(aws, later.event_id)[0] is DeliveryStatus.DELIVERED


def test_an_incident_resolved_ends_its_key_only_for_triggers_from_before_it(
    aws: Aws,  # noqa: F811
    app: ModuleType,
    receivers: LocalReceivers,
) -> None:
    start = aws.clock()
    details = {"kind": "page", "alert": "high-error-rate", "incident_id": "in-7"}
    early_page = make_event(EventType.ALERT, Severity.CRITICAL, at=start, details=details)
    resolved = make_event(EventType.ALERT, Severity.INFO, at=start + timedelta(seconds=5),
                          details={**details, "kind": "incident_resolved"})  # fmt: skip
    send(app, resolved)
    aws.clock.advance(10)
    send(app, early_page)
    later_page = make_event(EventType.ALERT, Severity.CRITICAL, at=aws.clock(), details=details)
    send(app, later_page)
    key = "deployguard/dg-1/incident/in-7"
    assert pagerduty_actions(receivers) == [("resolve", key), ("trigger", key)]
    assert _status(aws, early_page.event_id)[0] is DeliveryStatus.SUPPRESSED
    assert _status(aws, later_page.event_id)[0] is DeliveryStatus.DELIVERED


def test_notifications_retry_does_not_reopen_an_incident_resolved_after_its_dead_lettered_trigger(
    aws: Aws,  # noqa: F811
    app: ModuleType,
    receivers: LocalReceivers,
    tmp_path: Path,
) -> None:
    """``notifications retry`` takes a dead-lettered trigger whose deployment was rolled back since: the
    trigger is not sent (PagerDuty would open the incident again), recorded suppressed, and the letter
    leaves the queue; a dead-lettered trigger from after the resolve is still sent."""
    import io
    import os

    from deployguard.notification.dlq import DeadLetter, DeadLetterQueue
    from deployguard_local.notifications_cli import retry

    start = aws.clock()
    initiated = make_event(EventType.ROLLBACK_INITIATED, Severity.CRITICAL, at=start)
    completed = make_event(EventType.ROLLBACK_COMPLETED, Severity.WARNING, at=start + timedelta(seconds=60))
    queue = DeadLetterQueue(aws.dlq_url)
    queue.send(DeadLetter(kind="event", channel="ops-pagerduty", events=[initiated], error="HTTP 503"))
    aws.clock.advance(60)
    send(app, completed)
    aws.clock.advance(60)
    later = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL, at=aws.clock())
    queue.send(DeadLetter(kind="event", channel="ops-pagerduty", events=[later], error="HTTP 503"))

    out = io.StringIO()
    code = retry(os.environ["DEPLOYMENTS_TABLE"], aws.dlq_url, os.environ["DEPLOYGUARD_CONFIG_FILE"], 10, out)
    assert code == 0, out.getvalue()
    assert pagerduty_actions(receivers) == [("resolve", "deployguard/dg-1"), ("trigger", "deployguard/dg-1")]
    status, error = _status(aws, initiated.event_id)
    assert status is DeliveryStatus.SUPPRESSED and "stale trigger" in (error or "")
    assert _status(aws, later.event_id)[0] is DeliveryStatus.DELIVERED
    assert aws.dlq_messages() == []
