"""CloudWatch's side of a self-alarm, for the tests: what CloudWatch Logs extracts from a function's EMF
records, and how CloudWatch evaluates a metric alarm over it.

The embedded AWS (moto) stores metrics and alarms but never evaluates an alarm, and nothing there
reads the functions' logs. So here:

- :func:`put_emf` puts the metrics of the EMF records a function printed into CloudWatch, as CloudWatch
  Logs does for a deployed function (namespace, each dimension set, each value), stamped with the
  simulated time of the flush (Powertools stamps a record with the wall clock when it flushes);
- :func:`create_alarm` creates a template alarm as written in template.yaml (resolved like CloudFormation);
- :func:`evaluate` evaluates it as documented for a metric alarm on one metric: the last
  ``EvaluationPeriods`` complete periods, ``DatapointsToAlarm`` of them breaching for ALARM, a missing
  period per ``TreatMissingData``; then sets the alarm's state (SetAlarmState) when it changes.
  A model, not CloudWatch: no metric math, no evaluation range wider than the periods evaluated.
"""

from __future__ import annotations

import contextlib
import json
import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from deployguard.aws import clients
from deployguard_local.template import Stack

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_ALARM_PROPERTIES = ("AlarmDescription", "AlarmActions", "Namespace", "MetricName", "Dimensions", "Statistic",
                     "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator",
                     "TreatMissingData")  # fmt: skip


def emf_records(output: str) -> list[dict[str, Any]]:
    """The EMF records among the lines a function printed."""
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def put_emf(output: str, at: datetime) -> list[dict[str, Any]]:
    """Put the metrics of the EMF records in ``output`` into CloudWatch at ``at``; returns the records."""
    records = emf_records(output)
    for record in records:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            data = []
            for dimension_set in directive["Dimensions"]:
                dimensions = [{"Name": name, "Value": str(record[name])} for name in dimension_set]
                for metric in directive["Metrics"]:
                    values = record[metric["Name"]]
                    for value in values if isinstance(values, list) else [values]:
                        data.append({"MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": at,
                                     "Value": float(value), "Unit": metric.get("Unit", "None")})  # fmt: skip
            if data:
                clients.client("cloudwatch").put_metric_data(Namespace=directive["Namespace"], MetricData=data)
    return records


def create_alarm(stack: Stack, logical_id: str) -> str:
    """Create the template's alarm ``logical_id`` (named after it) as its properties say; returns its name.
    Its actions (the operator topic) only when ``stack`` knows the topic: a stack loaded without the
    embedded AWS has created none (and an alarm's actions change nothing in its evaluation here)."""
    written = stack.resources[logical_id]["Properties"]
    properties = stack.resolve({key: value for key, value in written.items() if not key.endswith("Actions")})
    for key in ("AlarmActions", "OKActions"):
        if key in written:
            with contextlib.suppress(KeyError):
                properties[key] = stack.resolve(written[key])
    if "Metrics" in properties:
        raise NotImplementedError(f"{logical_id}: alarms on metric math are not evaluated here")
    request = {key: properties[key] for key in _ALARM_PROPERTIES if key in properties}
    clients.client("cloudwatch").put_metric_alarm(AlarmName=logical_id, **request)
    return logical_id


def alarm(name: str) -> dict[str, Any]:
    return dict(clients.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0])


def breaching_periods(name: str, at: datetime) -> list[bool | None]:
    """Each of the alarm's last ``EvaluationPeriods`` complete periods before ``at``, oldest first:
    breaching or not, None when it has no datapoint."""
    spec = alarm(name)
    period = int(spec["Period"])
    end = datetime.fromtimestamp(int(at.timestamp()) // period * period, tz=at.tzinfo)
    start = end - timedelta(seconds=period * int(spec["EvaluationPeriods"]))
    metric = {"Namespace": spec["Namespace"], "MetricName": spec["MetricName"], "Dimensions": spec["Dimensions"]}
    result = clients.client("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": metric, "Period": period, "Stat": spec["Statistic"]}}],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"][0]
    values = {int(t.timestamp()): v for t, v in zip(result["Timestamps"], result["Values"], strict=True)}
    compare = _COMPARISONS[spec["ComparisonOperator"]]
    periods: list[bool | None] = []
    for n in range(int(spec["EvaluationPeriods"])):
        value = values.get(int(start.timestamp()) + n * period)
        periods.append(None if value is None else compare(value, float(spec["Threshold"])))
    return periods


def evaluate(name: str, at: datetime) -> str:
    """Evaluate the alarm at ``at`` (a model of CloudWatch's evaluation, see the module); sets and
    returns its state."""
    spec = alarm(name)
    periods = breaching_periods(name, at)
    treat = spec.get("TreatMissingData", "missing")
    if all(p is None for p in periods) and treat in ("missing", "ignore"):
        state = "INSUFFICIENT_DATA" if treat == "missing" else str(spec["StateValue"])
    else:
        missing_breaches = treat == "breaching"
        breaching = sum(1 for p in periods if p or (p is None and missing_breaches))
        state = "ALARM" if breaching >= int(spec.get("DatapointsToAlarm") or spec["EvaluationPeriods"]) else "OK"
    if state != spec["StateValue"]:
        clients.client("cloudwatch").set_alarm_state(
            AlarmName=name, StateValue=state, StateReason=f"evaluated at {at.isoformat()}: {periods}"
        )
    return state
