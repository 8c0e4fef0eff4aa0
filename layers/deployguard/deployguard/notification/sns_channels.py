"""Email and SMS through SNS topic subscriptions.

Email: subject ``[production] Deployment Failed`` and a plain-text body with the
deployment id, environment, components, duration, error, reasons and links.
SMS: one short line (transactional SMS type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from deployguard.notification import formatting as fmt
from deployguard.notification.base import OutboundMessage, SnsMessage
from deployguard.notification.settings import ChannelKind

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

SMS_LIMIT = 140


class EmailChannel:
    kind = ChannelKind.EMAIL

    def __init__(self, name: str, topic_arn: str, max_digest_events: int = 50) -> None:
        self.name = name
        self.topic_arn = topic_arn
        self.max_digest_events = max_digest_events

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        return [
            SnsMessage(
                topic_arn=self.topic_arn,
                subject=fmt.subject(event),
                body=fmt.plain_text(event),
                description=f"email {fmt.subject(event)}",
            )
        ]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        shown = list(events)[: self.max_digest_events]
        lines = [fmt.digest_heading(events), ""] + [f"- {fmt.short_text(e, limit=300)}" for e in shown]
        if len(events) > len(shown):
            lines.append(f"...and {len(events) - len(shown)} more")
        subject = fmt.clean_subject(f"[{fmt.digest_environment(events)}] DeployGuard digest: {len(events)} events")
        return [SnsMessage(topic_arn=self.topic_arn, subject=subject, body="\n".join(lines), description=subject)]


class SmsChannel:
    kind = ChannelKind.SMS

    def __init__(self, name: str, topic_arn: str, sender_id: str | None = None) -> None:
        self.name = name
        self.topic_arn = topic_arn
        self.sender_id = sender_id

    def _attributes(self) -> dict[str, dict[str, str]]:
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
        return attributes

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        text = fmt.short_text(event, limit=SMS_LIMIT)
        return [SnsMessage(self.topic_arn, text, attributes=self._attributes(), description=f"sms {fmt.label(event)}")]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        worst = max(events, key=lambda e: e.severity.rank)
        text = fmt.truncate(f"DeployGuard: {len(events)} events; worst: {fmt.short_text(worst, limit=100)}", SMS_LIMIT)
        return [SnsMessage(self.topic_arn, text, attributes=self._attributes(), description="sms digest")]
