"""Publishing one message on an SNS topic (the notification channel of type ``sns``)."""

from __future__ import annotations

from typing import Any

from deployguard.aws import clients


def publish(topic_arn: str, message: str, subject: str | None = None, attributes: dict[str, Any] | None = None) -> None:
    """Publish ``message``; botocore's ClientError / BotoCoreError reach the caller."""
    kwargs: dict[str, Any] = {"TopicArn": topic_arn, "Message": message}
    if subject:
        kwargs["Subject"] = subject
    if attributes:
        kwargs["MessageAttributes"] = attributes
    clients.client("sns").publish(**kwargs)
