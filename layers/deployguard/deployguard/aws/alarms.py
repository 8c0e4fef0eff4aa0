"""CloudWatch alarms in ALARM (the pre-traffic hook's ``alarms`` check)."""

from __future__ import annotations

from collections.abc import Sequence

from deployguard.aws import clients


def firing(prefix: str | None = None, names: Sequence[str] = ()) -> set[str]:
    """The names of the metric and composite alarms in ALARM among those whose name starts with
    ``prefix`` and those named in ``names`` (none when neither is given). AWS errors propagate."""
    selections: list[dict[str, object]] = []
    if prefix:
        selections.append({"AlarmNamePrefix": prefix})
    if names:
        selections.append({"AlarmNames": list(names)})
    found: set[str] = set()
    paginator = clients.client("cloudwatch").get_paginator("describe_alarms")
    for selection in selections:
        for page in paginator.paginate(StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"], **selection):
            alarms = [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]
            # the state is checked again here: not every CloudWatch emulation honours StateValue
            found.update(str(a["AlarmName"]) for a in alarms if a.get("StateValue") == "ALARM")
    return found
