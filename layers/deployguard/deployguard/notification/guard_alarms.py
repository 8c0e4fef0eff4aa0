"""DeployGuard's own CloudWatch alarms as alerts: the notification CloudWatch publishes to the operator topic.

CloudWatch publishes a JSON document on every state change of an alarm whose ``AlarmActions`` /
``OKActions`` name the topic: ``AlarmName``, ``NewStateValue`` (``ALARM``, ``OK``,
``INSUFFICIENT_DATA``), ``NewStateReason``, ``StateChangeTime``, ``Region`` (its long name),
``AWSAccountId``, ``AlarmArn`` and more. :func:`parse_cloudwatch_alarm` validates it into
:class:`CloudWatchAlarm` (an :class:`~deployguard.exceptions.InvalidEventError` naming the field
otherwise), and :func:`alarm_event` turns it into the :class:`DeploymentEvent` the router routes:

- an ``alert`` of the service ``guard_alarms.service`` (``deployguard``), ``details.kind`` ``guard_alarm``,
  ``details.alert`` the alarm's name, so PagerDuty's dedup key is one per alarm name
  (``deployguard/guard-alarms/alert/<alarm name>``): ``ALARM`` triggers (``details.state`` firing),
  ``OK`` resolves (``resolved``);
- routed by the configuration's routes like any alert, and to ``guard_alarms.routes`` (added when it is
  routed: :meth:`NotificationSettings.explicit_channels`);
- its ``at`` is the alarm's ``StateChangeTime`` and its id is derived from the alarm and that time, so an
  SNS redelivery is a duplicate and a late ALARM after its OK is a stale trigger (not sent to PagerDuty).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from deployguard.inbound import IsoDatetime, parse_event
from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.notification.settings import NotificationSettings

GUARD_ALARMS_DEPLOYMENT = "guard-alarms"  # the deployment id guard alarms are recorded under
KIND = "guard_alarm"
_STATES = {"ALARM": "firing", "OK": "resolved", "INSUFFICIENT_DATA": "insufficient_data"}


class AlarmTrigger(BaseModel):
    """What the alarm watches (a metric alarm's ``Trigger``; a metric math alarm's has ``Metrics``)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    MetricName: str | None = None
    Namespace: str | None = None
    Statistic: str | None = None
    ComparisonOperator: str | None = None
    Threshold: float | None = None
    Period: int | None = None
    EvaluationPeriods: int | None = None


class CloudWatchAlarm(BaseModel):
    """The SNS message of a CloudWatch alarm's state change (the fields the router reads)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    AlarmName: str = Field(min_length=1, max_length=255)
    AlarmDescription: str | None = Field(default=None, max_length=4096)
    AWSAccountId: str = Field(pattern=r"^\d{12}$")
    NewStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    NewStateReason: str = Field(max_length=8192)
    StateChangeTime: IsoDatetime
    Region: str = Field(min_length=1, max_length=64)
    AlarmArn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$")
    OldStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"] | None = None
    Trigger: AlarmTrigger | None = None

    @property
    def region_code(self) -> str | None:
        """``us-east-1``, from the alarm's ARN (the message's ``Region`` is the long name)."""
        return self.AlarmArn.split(":")[3] if self.AlarmArn else None

    @property
    def state(self) -> str:
        """``firing``, ``resolved`` or ``insufficient_data`` (``details.state`` of the alert)."""
        return _STATES[self.NewStateValue]


def looks_like_alarm(document: Any) -> bool:
    """Whether a message is CloudWatch's alarm notification (and not a DeploymentEvent)."""
    return isinstance(document, dict) and "AlarmName" in document and "event_type" not in document


def parse_cloudwatch_alarm(document: Any) -> CloudWatchAlarm:
    """The alarm notification validated; :class:`InvalidEventError` names the field."""
    return parse_event(CloudWatchAlarm, document, "cloudwatch alarm")


def _event_id(alarm: CloudWatchAlarm) -> str:
    key = json.dumps([alarm.AlarmArn or alarm.AlarmName, alarm.NewStateValue, alarm.StateChangeTime.isoformat()])
    return "ev-alarm-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def console_link(alarm: CloudWatchAlarm) -> str | None:
    region = alarm.region_code
    if region is None:
        return None
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#alarmsV2:alarm/{quote(alarm.AlarmName, safe='')}"
    )


def alarm_event(alarm: CloudWatchAlarm, settings: NotificationSettings, environment: str) -> DeploymentEvent:
    """The alert the router routes for one alarm notification (see the module's documentation)."""
    options = settings.guard_alarms
    severity = Severity.WARNING if alarm.NewStateValue == "INSUFFICIENT_DATA" else options.severity
    region = f"{alarm.Region} ({alarm.region_code})" if alarm.region_code else alarm.Region
    details: dict[str, Any] = {
        "kind": KIND,
        "alert": alarm.AlarmName,
        "state": alarm.state,
        "alarm_state": alarm.NewStateValue,
        "previous_state": alarm.OldStateValue,
        "reason": alarm.NewStateReason,
        "region": region,
        "account": alarm.AWSAccountId,
        "alarm_arn": alarm.AlarmArn,
    }
    if alarm.Trigger is not None and alarm.Trigger.MetricName:
        details["metric"] = f"{alarm.Trigger.Namespace or ''}/{alarm.Trigger.MetricName}".lstrip("/")
    link = console_link(alarm)
    return DeploymentEvent(
        event_id=_event_id(alarm),
        event_type=EventType.ALERT,
        deployment_id=GUARD_ALARMS_DEPLOYMENT,
        service=options.service,
        version=alarm.NewStateValue,
        environment=environment,
        severity=severity,
        title=f"{alarm.AlarmName} is {alarm.NewStateValue}",
        message=alarm.AlarmDescription or "",
        links={"CloudWatch alarm": link} if link else {},
        at=alarm.StateChangeTime,
        details={k: v for k, v in details.items() if v is not None},
    )
