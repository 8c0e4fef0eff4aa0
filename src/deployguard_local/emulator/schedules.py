"""EventBridge schedules on the simulated clock: a template function's ``Schedule`` rules fire at
every boundary the clock passes (when followed), through the real EventBridge and Lambda APIs."""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deployguard.aws import clients
from deployguard_local.emulator.clock import ListeningClock
from deployguard_local.emulator.stack import StackResources

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def rate_seconds(expression: str) -> int:
    """The period of an EventBridge ``rate(...)`` schedule expression, in seconds."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"only rate(...) schedules follow the simulated clock, not {expression}")
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):  # EventBridge: rate(1 minute), rate(5 minutes)
        raise ValueError(f"invalid schedule expression {expression}")
    return value * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


def schedule_boundaries(period_seconds: int, before: datetime, after: datetime) -> list[datetime]:
    """The times in (before, after] at which a schedule of this period fires (whole periods since the epoch)."""
    first = math.floor(before.timestamp() / period_seconds) + 1
    last = math.floor(after.timestamp() / period_seconds)
    return [datetime.fromtimestamp(n * period_seconds, tz=before.tzinfo) for n in range(first, last + 1)]


@dataclass(frozen=True)
class ScheduleRun:
    """One firing of an EventBridge schedule rule: its target invoked with the Scheduled Event."""

    rule: str
    function: str  # the template's logical id
    at: datetime  # the schedule's time (the event's ``time``)
    event: dict[str, Any]
    payload: Any  # what the function answered
    errored: bool


class Schedules(StackResources):
    """Fires the template's schedule rules as the simulated clock passes their boundaries."""

    clock: ListeningClock | None
    schedule_runs: list[ScheduleRun]
    _schedule_fired: dict[str, datetime]
    _schedule_lock: threading.Lock

    def schedule_rules(self, functions: Iterable[str] | None = None) -> list[str]:
        """The Schedule rules of these functions (logical ids of template.yaml; every function's when None)."""
        wanted = None if functions is None else set(functions)
        unknown = (wanted or set()) - set(self.functions)
        if unknown:
            raise KeyError(f"no function {', '.join(sorted(unknown))} in template.yaml")
        return [
            rule
            for rule, (kind, logical_id) in self.rules.items()
            if kind == "Schedule" and (wanted is None or logical_id in wanted)
        ]

    def fire_due_schedules(
        self, before: datetime, after: datetime, rules: Iterable[str] | None = None
    ) -> list[ScheduleRun]:
        """Fire every ENABLED schedule rule whose boundary falls in (before, after], as EventBridge does.

        The rule, its state and its target are read through the real EventBridge API
        (DescribeRule, ListTargetsByRule), so a rule disabled with DisableRule does not fire.
        Each target function gets a ``Scheduled Event`` (the shape of events/schedule.json,
        the rule's ARN in ``resources``, the schedule's time) through the real Lambda Invoke
        API. EventBridge invokes asynchronously; here the invocation completes before the
        clock moves on, so each simulated minute's run is over when the next one begins.
        """
        events = clients.client("events")
        runs = []
        for rule in self.schedule_rules() if rules is None else list(rules):
            described = events.describe_rule(Name=rule)
            if described.get("State") != "ENABLED" or not described.get("ScheduleExpression"):
                continue
            period = rate_seconds(described["ScheduleExpression"])
            targets = events.list_targets_by_rule(Rule=rule).get("Targets", [])
            for at in schedule_boundaries(period, before, after):
                with self._schedule_lock:
                    if self._schedule_fired.get(rule) is not None and at <= self._schedule_fired[rule]:
                        continue  # fired already (a nested clock advance)
                    self._schedule_fired[rule] = at
                for target in targets:
                    runs.append(self._fire(rule, described["Arn"], target["Arn"], at))
        return runs

    def _fire(self, rule: str, rule_arn: str, function_arn: str, at: datetime) -> ScheduleRun:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.stack.account_id,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.stack.region,
            "resources": [rule_arn],
            "detail": {},
        }
        resp = clients.client("lambda").invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        logical_id = self.rules.get(rule, ("", function_arn))[1]
        run = ScheduleRun(rule, logical_id, at, event, payload, "FunctionError" in resp)
        self.schedule_runs.append(run)
        return run

    def follow_schedules(
        self, functions: Iterable[str] | None = None, on_fire: Callable[[ScheduleRun], None] | None = None
    ) -> Callable[[], None]:
        """From now on fire these functions' schedule rules as the simulated clock passes their
        boundaries (:meth:`fire_due_schedules`); ``on_fire`` sees every run. Returns the undo.

        Opt-in: without it no schedule fires, and time passes without the assessor."""
        if self.clock is None:
            raise RuntimeError("schedules follow the simulated clock; this EmbeddedAws has none")
        rules = self.schedule_rules(functions)

        def listener(before: datetime, after: datetime) -> None:
            for run in self.fire_due_schedules(before, after, rules):
                if on_fire is not None:
                    on_fire(run)

        self.clock.late_listeners.append(listener)

        def undo() -> None:
            if self.clock is not None and listener in self.clock.late_listeners:
                self.clock.late_listeners.remove(listener)

        return undo
