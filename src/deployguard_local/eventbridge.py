"""EventBridge rules with Lambda targets, locally: the one delivery moto lacks.

moto keeps the rules and targets the embedded AWS creates from template.yaml (the
recorder's ``CodeDeployStateChange`` pattern among them) and matches ``PutEvents``
against them, but delivers only to logs, archives, queues and buses: a Lambda target
raises ``NotImplementedError``, and a schedule rule (no pattern) matches every event.
:func:`install_lambda_targets` adds that delivery as
EventBridge does it, an asynchronous invocation (through the embedded AWS's
:class:`~deployguard_local.emulator.AsyncInvoker`: retries, on-failure destination) with the
event as the rule matched it; every other target stays moto's. So a CodeDeploy state
change put on the default bus with the real ``PutEvents`` call reaches the recorder
only if the template's pattern matches it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol


class Submitter(Protocol):
    def submit(self, name: str, arn: str, event: Any) -> None: ...


def as_delivered(event: Any) -> Any:
    """The event as EventBridge hands it to a target: ``time`` is ISO 8601 text (moto keeps the seconds
    since 1970 it was put with)."""
    delivered = copy.deepcopy(event)
    when = delivered.get("time") if isinstance(delivered, dict) else None
    if isinstance(when, int | float) and not isinstance(when, bool):
        delivered["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def install_lambda_targets(invoker: Submitter) -> Callable[[], None]:
    """Deliver matched events to Lambda targets through ``invoker``; returns the undo."""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if self.scheduled_expression or not self.event_pattern.matches_event(original_event):
            return  # a schedule rule has no pattern: moto's empty pattern would match every event
        others = []
        for target in self.targets:
            arn = str(target["Arn"])
            if ":lambda:" in arn and ":function:" in arn:
                name = arn.split(":function:", 1)[1].split(":", 1)[0]
                invoker.submit(name, arn, as_delivered(original_event))
            else:
                others.append(target)
        if others:
            rest = copy.copy(self)
            rest.targets = others
            original(rest, original_event, transform_input)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]

    def undo() -> None:
        Rule.send_to_targets = original  # type: ignore[method-assign]

    return undo
