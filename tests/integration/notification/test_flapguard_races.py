"""PagerDuty's flap guard when a trigger meets a deferred resolve the schedule is flushing, when a channel
is switched to resolve at once while a resolve waits, and what an SNS invocation costs it: through the
router function's handler on moto, a local receiver on 127.0.0.1 standing in for PagerDuty's Events API,
the simulated clock. Each interleaving is forced at one exact point (a botocore hook on the flush's
DynamoDB call, or the receiver while the resolve is on the wire), never by sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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

from deployguard.aws import clients
from deployguard.models import EventType, Severity
from deployguard_local.receivers import LocalReceivers, local_receivers

KEY = "deployguard/dg-1"


@pytest.fixture
def receivers() -> Iterator[LocalReceivers]:
    with local_receivers(echo=None, kinds=("pagerduty",)) as group:
        yield group


@pytest.fixture
def config(tmp_path: Path, receivers: LocalReceivers, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_pagerduty_config(tmp_path / "dg.yaml", receivers.urls["pagerduty"])
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(path))
    return path


@pytest.fixture
def app(aws: Aws, config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with router_app(aws, monkeypatch) as module:
        yield module


def _actions(receivers: LocalReceivers) -> list[str]:
    """What PagerDuty was told about the deployment's key, in the order it received it."""
    return [action for action, key in pagerduty_actions(receivers) if key == KEY]


def _recovered_and_due(aws: Aws, app: ModuleType) -> None:
    """Degraded (a page), healthy 60 s later (its resolve deferred 180 s), and 181 s on: due."""
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"), new_container=False)
    aws.clock.advance(181)


def _later(aws: Aws, app: ModuleType) -> None:
    """The schedule, past any delay (180 s) and any flush's lease (5 minutes), twice (the same container)."""
    for _ in range(2):
        aws.clock.advance(301)
        invoke(app, SCHEDULE, new_container=False)


def _dynamodb_hook(event_name: str, handler: Callable[..., None]) -> Callable[[], None]:
    """Register a botocore hook on the DynamoDB client the repository's table uses; returns its undo."""
    events = clients.resource("dynamodb").meta.client.meta.events
    events.register(event_name, handler)
    return lambda: events.unregister(event_name, handler)


class _Once:
    """Runs ``action`` the first time ``matches`` holds for a DynamoDB call's parameters (disarmed first:
    the action's own calls do not run it again)."""

    def __init__(self, action: Callable[[], None], matches: Callable[[dict[str, Any]], bool]) -> None:
        self.action, self.matches, self.fired = action, matches, False

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        if not self.fired and self.matches(params):
            self.fired = True
            self.action()


def _is_take(params: dict[str, Any]) -> bool:
    return str(params.get("UpdateExpression", "")).startswith("SET lease_until")


def _is_check(params: dict[str, Any]) -> bool:
    return bool(params.get("ConsistentRead")) and "PD-FLAP#" in str(params["Key"])


def _is_finish(params: dict[str, Any]) -> bool:
    return str(params.get("ConditionExpression", "")).startswith("lease_token = :token AND resolve_due")


@pytest.mark.parametrize("point", ["before the lease", "before the check", "on the wire", "before the end"])
def test_a_trigger_meeting_the_flush_of_a_deferred_resolve_leaves_the_incident_triggered(
    aws: Aws, app: ModuleType, receivers: LocalReceivers, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """The canary degrades again while the schedule flushes the due resolve; the page goes out at
    ``point`` of the flush: before it leases the resolve, between the lease and its last check, while
    the resolve is on the wire (PagerDuty gets the trigger first, the resolve after it), or once the
    resolve went out but before the flush ends. Whatever PagerDuty got first, the last thing it gets for
    the key is a trigger; and no resolve follows later."""
    _recovered_and_due(aws, app)
    page = _Once(lambda: send(app, status_event(aws, "degraded")), lambda _: True)
    if point == "on the wire":
        pagerduty = receivers.receivers["pagerduty"]
        respond = pagerduty._respond

        def wire(headers: Any, body: bytes) -> Any:
            if b'"resolve"' in body:
                page({})  # the trigger reaches PagerDuty before this resolve does
            return respond(headers, body)

        monkeypatch.setattr(pagerduty, "_respond", wire)
    else:
        where = {"before the lease": _is_take, "before the check": _is_check, "before the end": _is_finish}[point]
        page.matches = where
        undo = _dynamodb_hook("before-parameter-build.dynamodb.*", page)
    try:
        invoke(app, SCHEDULE)
    finally:
        if point != "on the wire":
            undo()
    assert page.fired
    actions = _actions(receivers)
    assert (
        actions
        == {
            "before the lease": ["trigger", "trigger"],  # the page cancels the resolve: not sent at all
            "before the check": ["trigger", "trigger"],  # the flush's last check sees the cancel: not sent
            "on the wire": ["trigger", "trigger", "resolve", "trigger"],  # the page again, after the resolve
            "before the end": ["trigger", "resolve", "trigger", "trigger"],  # the same (once more than needed)
        }[point]
    )
    _later(aws, app)  # nothing deferred is left to resolve the page
    assert _actions(receivers) == actions


def test_a_flush_that_died_after_sending_is_taken_over_and_the_trigger_since_sent_again(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    """The flush's invocation dies (its timeout) right after the resolve went out; the canary degrades
    (the page goes out); once the dead flush's lease ran out, the next schedule takes the resolve over:
    it does not send it again (cancelled), but sends the trigger again, since the dead flush's resolve
    may have reached PagerDuty after the page."""

    def die(params: dict[str, Any], **_: Any) -> None:
        if _is_finish(params):
            raise TimeoutError("Task timed out after 120.00 seconds")

    undo = _dynamodb_hook("before-parameter-build.dynamodb.UpdateItem", die)
    _recovered_and_due(aws, app)
    try:
        with pytest.raises(TimeoutError):
            invoke(app, SCHEDULE)
    finally:
        undo()
    send(app, status_event(aws, "degraded"))
    assert _actions(receivers) == ["trigger", "resolve", "trigger"]
    aws.clock.advance(60)
    invoke(app, SCHEDULE)  # the lease (5 minutes) still runs: nothing yet
    assert _actions(receivers) == ["trigger", "resolve", "trigger"]
    aws.clock.advance(300)
    invoke(app, SCHEDULE)
    assert _actions(receivers) == ["trigger", "resolve", "trigger", "trigger"]
    _later(aws, app)
    assert _actions(receivers) == ["trigger", "resolve", "trigger", "trigger"]


def test_a_channel_switched_to_resolve_at_once_sends_the_waiting_resolve_at_the_next_flush(
    aws: Aws, app: ModuleType, receivers: LocalReceivers, config: Path
) -> None:
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"))  # deferred 180 s
    write_pagerduty_config(config, receivers.urls["pagerduty"], delay=0)  # reconfigured: resolves at once now
    aws.clock.advance(30)
    invoke(app, SCHEDULE)  # 150 s before the old due time
    assert _actions(receivers) == ["trigger", "resolve"]
    _later(aws, app)
    assert _actions(receivers) == ["trigger", "resolve"]


def test_a_channel_switched_to_resolve_at_once_still_cancels_the_waiting_resolve_with_a_page(
    aws: Aws, app: ModuleType, receivers: LocalReceivers, config: Path
) -> None:
    """Switched to 0 while a resolve waits, and the canary degrades before the next flush: the page
    cancels the waiting resolve, which is never sent after it; a later recovery resolves at once."""
    send(app, status_event(aws, "degraded"))
    aws.clock.advance(60)
    send(app, status_event(aws, "healthy"))
    write_pagerduty_config(config, receivers.urls["pagerduty"], delay=0)
    aws.clock.advance(10)
    send(app, status_event(aws, "degraded"))
    _later(aws, app)
    assert _actions(receivers) == ["trigger", "trigger"]
    send(app, status_event(aws, "healthy"))
    _later(aws, app)
    assert _actions(receivers) == ["trigger", "trigger", "resolve"]


def test_an_sns_invocation_does_not_query_the_deferred_resolves_the_schedule_does(
    aws: Aws, app: ModuleType, receivers: LocalReceivers
) -> None:
    queries: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if "PENDING#PD-FLAP" in str(params.get("ExpressionAttributeValues", {}).get(":pk")):
            queries.append(str(params.get("IndexName")))

    undo = _dynamodb_hook("before-parameter-build.dynamodb.Query", count)
    try:
        send(app, status_event(aws, "degraded"))
        aws.clock.advance(60)
        send(app, status_event(aws, "healthy"))
        aws.clock.advance(181)
        send(app, make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, at=aws.clock()))
        assert queries == []  # three SNS invocations, the last one after the resolve was due: no query
        assert _actions(receivers) == ["trigger"]
        invoke(app, SCHEDULE)
        assert queries == ["gsi1"] and _actions(receivers) == ["trigger", "resolve"]
    finally:
        undo()
