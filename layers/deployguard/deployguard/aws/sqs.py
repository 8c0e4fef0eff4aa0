"""An SQS queue: send, receive, put back and delete messages (the notification dead-letter queue)."""

from __future__ import annotations

from typing import Any

from deployguard.aws import clients


class Queue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send(self, body: str, attributes: dict[str, str]) -> str:
        """Send one message with string attributes; returns its message id."""
        resp = clients.client("sqs").send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            },
        )
        return str(resp["MessageId"])

    def receive(self, max_messages: int, visibility_timeout: int) -> list[dict[str, Any]]:
        """Up to ``max_messages`` (at most 10) messages at once, hidden for ``visibility_timeout`` seconds."""
        resp = clients.client("sqs").receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            VisibilityTimeout=visibility_timeout,
            WaitTimeSeconds=0,
        )
        return list(resp.get("Messages", []))

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again at once (it stays in the queue)."""
        clients.client("sqs").change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
        )

    def delete(self, receipt_handle: str) -> None:
        clients.client("sqs").delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
