"""The assessment queue: the minute tick hands due deployments out in shards, one SQS message
per shard, ten messages a SendMessageBatch call; the AssessorShardFunction takes each."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field

from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.models import Model

MESSAGES_PER_CALL = 10


class Shard(Model):
    """One message of the assessment queue: deployments due at the tick's time."""

    tick_at: datetime
    deployment_ids: list[str] = Field(min_length=1)


def send_shards(queue_url: str, shards: list[list[str]], tick_at: datetime) -> int:
    """Send every shard; returns how many were sent. A message SQS refuses raises (the tick fails
    loudly; what it did not hand out stays due for the next tick)."""
    sqs = clients.client("sqs")
    messages = [Shard(tick_at=tick_at, deployment_ids=ids).model_dump_json() for ids in shards if ids]
    for offset in range(0, len(messages), MESSAGES_PER_CALL):
        entries: list[dict[str, Any]] = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(messages[offset : offset + MESSAGES_PER_CALL])
        ]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        if failed:
            raise DeployGuardError(f"SendMessageBatch refused {len(failed)} shard(s): {json.dumps(failed)[:300]}")
    return len(messages)
