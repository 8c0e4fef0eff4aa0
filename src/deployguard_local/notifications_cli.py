"""``deployguard notifications retry|list``: dead letters and delivery records.

    deployguard notifications retry [--limit N] [--queue-url URL] [--table NAME] [--config FILE]
    deployguard notifications list DEPLOYMENT_ID [--table NAME] [--json]

``retry`` takes up to N messages from the notification DLQ. A dead letter of the
router is delivered again to its channel (no dedup or cooldown: a person asked for
it); an SNS message the function never got, or a Lambda on-failure record, is routed
again (dedup keeps channels that already have it from getting it twice; a delivery an
invocation claimed and died in is taken over once its lease ended). Every attempt is
recorded on the deployment. A message is deleted only once every channel has it (or a
new dead letter of this run holds it); one still being delivered elsewhere, or that
could be neither delivered nor dead-lettered, stays; a dead letter that fails again is
put back with its redelivery count and last error (then the original deleted), so
nothing is lost; a malformed message cannot be redelivered and stays in the queue.

Defaults come from NOTIFICATION_DLQ_URL, DEPLOYMENTS_TABLE and DEPLOYGUARD_CONFIG_FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from pydantic import ValidationError

from deployguard import clock
from deployguard.config import load_config
from deployguard.exceptions import DeliveryError, DeployGuardError
from deployguard.models import DeliveryStatus
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue, events_in
from deployguard.notification.router import IN_PROGRESS, NotificationRouter
from deployguard.notification.settings import NotificationSettings
from deployguard.storage.repository import DeploymentRepository


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployguard notifications", description="Redeliver dead-lettered notifications, list deliveries."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    retry = sub.add_parser("retry", help="redeliver messages from the notification dead-letter queue")
    retry.add_argument("--limit", type=int, default=10, help="at most this many dead letters (default 10)")
    retry.add_argument("--queue-url", default=os.environ.get("NOTIFICATION_DLQ_URL"), help="the DLQ URL")
    retry.add_argument("--table", default=os.environ.get("DEPLOYMENTS_TABLE"), help="the deployments table")
    retry.add_argument("--config", default=os.environ.get("DEPLOYGUARD_CONFIG_FILE"), help="configuration file")
    listing = sub.add_parser("list", help="deliveries recorded for a deployment")
    listing.add_argument("deployment_id")
    listing.add_argument("--table", default=os.environ.get("DEPLOYMENTS_TABLE"), help="the deployments table")
    listing.add_argument("--json", action="store_true", help="one JSON object per delivery")
    return parser


def _identity(letter: DeadLetter) -> str:
    return f"{letter.kind}:{letter.channel}:{','.join(e.event_id for e in letter.events)}"


def _route_again(router: NotificationRouter, body: str) -> str | None:
    """Route the events of an undelivered SNS message or Lambda failure record.

    None: the body holds no deployment event; "": not every channel has it yet (routing
    failed, or another invocation is still delivering to a channel: keep the message);
    else a summary. Dedup markers keep channels that already got an event from getting it twice.
    """
    try:
        events = events_in(body)
    except (ValueError, ValidationError, KeyError, TypeError):
        return None
    statuses: dict[str, int] = {}
    settled = True
    try:
        for event in events:
            for notification in router.route(event):
                statuses[notification.status.value] = statuses.get(notification.status.value, 0) + 1
                settled = settled and not (
                    notification.status is DeliveryStatus.SUPPRESSED and notification.error == IN_PROGRESS
                )
    except DeliveryError:
        return ""
    if not settled:
        return ""
    return ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "no channel matched"


def retry(args: argparse.Namespace, out: TextIO) -> int:
    if not args.queue_url or not args.table:
        print("error: --queue-url and --table (or NOTIFICATION_DLQ_URL, DEPLOYMENTS_TABLE) are required", file=out)
        return 2
    if args.limit < 1:
        print("error: --limit must be at least 1", file=out)
        return 2
    settings = load_config(args.config).notifications if args.config else NotificationSettings()
    router = NotificationRouter(settings, DeploymentRepository(args.table), args.queue_url)
    queue = DeadLetterQueue(args.queue_url)
    delivered = failed = skipped = 0
    seen_messages: set[str] = set()
    seen_letters: set[str] = set()
    while delivered + failed + skipped < args.limit:
        messages = queue.receive(args.limit - (delivered + failed + skipped))
        fresh = 0
        for message in messages:
            if message["MessageId"] in seen_messages:
                queue.release(message["ReceiptHandle"])
                continue
            seen_messages.add(message["MessageId"])
            try:
                letter = DeadLetter.model_validate_json(message["Body"])
            except ValidationError as exc:
                routed = _route_again(router, message["Body"])
                if routed is None:
                    field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "(body)"
                    print(f"skipped {message['MessageId']}: not a deployment event (field {field})", file=out)
                    queue.release(message["ReceiptHandle"])
                    skipped += 1
                elif routed:
                    queue.delete(message["ReceiptHandle"])
                    print(f"routed again {message['MessageId']}: {routed}", file=out)
                    delivered += 1
                else:
                    queue.release(message["ReceiptHandle"])
                    print(f"failed {message['MessageId']}: not every channel has it yet (kept in the queue)", file=out)
                    failed += 1
                fresh += 1
                continue
            if _identity(letter) in seen_letters:  # put back by this run after failing again
                queue.release(message["ReceiptHandle"])
                continue
            seen_letters.add(_identity(letter))
            fresh += 1
            outcome = router.redeliver(letter)
            what = f"{letter.kind} to {letter.channel or '-'} ({', '.join(e.event_id for e in letter.events) or 'raw'})"
            if outcome.ok:
                queue.delete(message["ReceiptHandle"])
                print(f"delivered {what}", file=out)
                delivered += 1
            elif letter.kind == "malformed" or not outcome.notifications:
                queue.release(message["ReceiptHandle"])
                print(f"skipped {what}: {outcome.error}", file=out)
                skipped += 1
            else:
                again = letter.model_copy(
                    update={
                        "redeliveries": letter.redeliveries + 1,
                        "error": outcome.error or letter.error,
                        "failed_at": clock.now(),
                    }
                )
                queue.send(again)
                queue.delete(message["ReceiptHandle"])
                print(f"failed {what}: {outcome.error} (kept in the dead-letter queue)", file=out)
                failed += 1
        if fresh == 0:
            break
    print(f"redelivered {delivered}, still failing {failed}, skipped {skipped}", file=out)
    return 0 if failed == 0 else 1


def list_deliveries(args: argparse.Namespace, out: TextIO) -> int:
    if not args.table:
        print("error: --table (or DEPLOYMENTS_TABLE) is required", file=out)
        return 2
    notifications = DeploymentRepository(args.table).notifications(args.deployment_id)
    if args.json:
        for n in notifications:
            print(n.model_dump_json(), file=out)
        return 0
    if not notifications:
        print(f"no deliveries recorded for {args.deployment_id}", file=out)
        return 0
    print(f"{'at':<27} {'channel':<20} {'status':<14} {'attempts':>8} {'latency ms':>10}  error", file=out)
    for n in notifications:
        latency = f"{n.latency_ms:.1f}" if n.latency_ms is not None else "-"
        row = f"{n.at.isoformat():<27} {n.channel:<20} {n.status.value:<14} {n.attempts:>8} {latency:>10}"
        print(f"{row}  {n.error or ''}", file=out)
    counts: dict[str, int] = {}
    for n in notifications:
        counts[n.status.value] = counts.get(n.status.value, 0) + 1
    print("totals: " + json.dumps(counts, sort_keys=True), file=out)
    return 0


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Entry point of ``deployguard notifications``; ``argv`` follows the word ``notifications``."""
    stream = out or sys.stdout
    if argv and argv[0] == "notifications":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "retry":
            return retry(args, stream)
        return list_deliveries(args, stream)
    except DeployGuardError as exc:
        print(f"error: {exc}", file=stream)
        return 2
