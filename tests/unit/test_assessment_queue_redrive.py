"""The assessment queue's dead-letter queue can be reached: a shard is kept longer than the receives its
redrive policy allows (each one hidden for the visibility timeout), so a shard that keeps failing goes to
AssessmentDeadLetterQueue (watched by DeadLetterQueuesAlarm) instead of expiring before its last receive."""

from __future__ import annotations

import json
from pathlib import Path

from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
STACK = Stack.load(ROOT)
RESOURCES = STACK.resources


def test_a_shard_outlives_its_receives_so_the_dead_letter_queue_is_reachable() -> None:
    queue = RESOURCES["AssessmentQueue"]["Properties"]
    receives = queue["RedrivePolicy"]["maxReceiveCount"]
    assert receives == 3  # as the README says: a dead-letter queue after three receives
    # the last receive comes (receives - 1) visibility timeouts after the first; it fails a timeout later
    assert queue["MessageRetentionPeriod"] > receives * queue["VisibilityTimeout"]
    dead_letters = RESOURCES["AssessmentDeadLetterQueue"]["Properties"]
    assert dead_letters["MessageRetentionPeriod"] >= 7 * 24 * 3600  # kept for a person to look at
    watched = json.dumps(RESOURCES["DeadLetterQueuesAlarm"]["Properties"]["Metrics"])
    assert '"AssessmentDeadLetterQueue", "QueueName"' in watched
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "a dead-letter queue after three receives" in readme
