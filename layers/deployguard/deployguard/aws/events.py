"""Publishing deployment events on the SNS topic, and recording them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from deployguard.aws import clients

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

# SNS subject lines are limited to 100 characters
_SUBJECT_LIMIT = 100


class EventPublisher:
    def __init__(self, topic_arn: str | None = None) -> None:
        self.topic_arn = topic_arn or os.environ["EVENTS_TOPIC_ARN"]

    def publish(self, event: DeploymentEvent) -> str:
        """Publish ``event``; returns the SNS message id. Attributes allow subscription filters."""
        subject = f"[{event.environment}] {event.title}"[:_SUBJECT_LIMIT]
        resp = clients.client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=event.model_dump_json(),
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": event.event_type.value},
                "severity": {"DataType": "String", "StringValue": event.severity.value},
                "environment": {"DataType": "String", "StringValue": event.environment},
                "service": {"DataType": "String", "StringValue": event.service},
            },
        )
        return str(resp["MessageId"])
