"""``deployguard notifications retry|list``: dead letters and delivery records.

    deployguard notifications retry [--limit N] [--queue-url URL] [--table NAME] [--config FILE] [--json]
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
``--json``: one object, the counts and what happened to each message.

``list`` takes a deployment id or a unique prefix (as ``deployments show``); ``--json`` prints
one JSON array of the deliveries.

Both take the connection options (:mod:`deployguard_local.options`): ``--stack NAME`` (the table
and the queue from the stack's outputs), ``--table NAME``, or DEPLOYMENTS_TABLE; the queue is
``--queue-url``, the stack's ``NotificationDeadLetterQueueUrl`` or NOTIFICATION_DLQ_URL; the
configuration ``--config`` or DEPLOYGUARD_CONFIG_FILE. ``--local``: the demo's saved state on the
embedded AWS, its NotificationDeadLetterQueue and the configuration it ran with (the demo's channels
answer on local receivers, as in the demo); what is delivered, and what stays, is saved back.
Exit codes: 0 done, 1 some dead letters still failing, 2 an error, an unknown deployment among them
(written, as every line, to the command's output).
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, TextIO

import typer
from pydantic import ValidationError

from deployguard import clock
from deployguard.config import load_config
from deployguard.exceptions import DeliveryError, DeployGuardError
from deployguard.models import DeliveryStatus
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue, events_in
from deployguard.notification.router import IN_PROGRESS, NotificationRouter
from deployguard.notification.settings import NotificationSettings
from deployguard.readmodels import DeploymentReader
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.commands import debug, invoke, new_app
from deployguard_local.options import Connection, Json, connected

PROG = "deployguard notifications"
app = new_app("notifications", "Redeliver dead-lettered notifications, list deliveries.", no_args_is_help=True)
_OUT: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar("notifications_out", default=None)
_ERR: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar("notifications_err", default=None)


def _out() -> TextIO:
    return _OUT.get() or sys.stdout


def _err() -> TextIO:
    return _ERR.get() or sys.stderr


def _finish(command: str, action: Callable[[TextIO], int]) -> None:
    """Run ``action`` on the output stream; an error is one line on stderr, ``deployguard notifications
    COMMAND: ...`` (never on stdout, which ``--json`` keeps for the JSON), exit 2."""
    try:
        code = action(_out())
    except DeployGuardError as exc:
        if debug():
            raise
        print(f"{PROG} {command}: {exc}", file=_err())
        code = 2
    raise typer.Exit(code)


@app.command("retry")
@connected(config=True)
def retry_command(
    conn: Connection,
    limit: Annotated[int, typer.Option(help="at most this many dead letters")] = 10,
    queue_url: Annotated[
        str | None, typer.Option(help="the notification DLQ (default: the stack's, or $NOTIFICATION_DLQ_URL)")
    ] = None,
    json_: Json = False,
) -> None:
    """Redeliver messages from the notification dead-letter queue (nothing is lost: failures stay queued)."""

    def action(out: TextIO) -> int:
        if not (queue_url or conn.stack or conn.local or os.environ.get("NOTIFICATION_DLQ_URL")):
            raise DeployGuardError("--queue-url and --table (or --stack, or NOTIFICATION_DLQ_URL and DEPLOYMENTS_TABLE)"
                                   " are required")  # fmt: skip
        with conn.resources(save=conn.local, whole_stack=conn.local) as res:
            # --local: the saved dead-letter queue, and the channels of the configuration the state ran with
            return retry(res.table, queue_url or res.dead_letter_queue, conn.config or res.config_file, limit, out,
                         as_json=json_)  # fmt: skip

    _finish("retry", action)


@app.command("list")
@connected
def list_command(
    conn: Connection,
    deployment_id: Annotated[str, typer.Argument(help="deployment id or a unique prefix")],
    json_: Annotated[bool, typer.Option("--json", help="print the deliveries as one JSON array")] = False,
) -> None:
    """Deliveries recorded for a deployment: channel, status, attempts, latency, error; totals."""

    def action(out: TextIO) -> int:
        with conn.resources() as res:
            return list_deliveries(res.table, deployment_id, json_, out)

    _finish("list", action)


def _identity(letter: DeadLetter) -> str:
    return f"{letter.kind}:{letter.channel}:{','.join(e.event_id for e in letter.events)}"


def _route_again(router: NotificationRouter, body: str, environment: str = "production") -> str | None:
    """Route the events of an undelivered SNS message or Lambda failure record.

    None: the body holds no deployment event; "": not every channel has it yet (routing
    failed, or another invocation is still delivering to a channel: keep the message);
    else a summary. Dedup markers keep channels that already got an event from getting it twice.
    """
    try:
        events = events_in(body, router.settings, environment)
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


def retry(table: str, queue_url: str | None, config: str | None, limit: int, out: TextIO, *,
          as_json: bool = False) -> int:  # fmt: skip
    """Take up to ``limit`` messages from the dead-letter queue and deliver or route them again; one line each
    (``as_json``: one JSON object at the end, the counts and each message's outcome)."""
    if not queue_url:
        raise DeployGuardError("--queue-url (or --stack, or NOTIFICATION_DLQ_URL) is required")
    if limit < 1:
        raise DeployGuardError("--limit must be at least 1")
    loaded = load_config(config) if config else None
    settings = loaded.notifications if loaded else NotificationSettings()
    environment = loaded.environment if loaded else "production"
    router = NotificationRouter(settings, DeploymentRepository(table), queue_url)
    queue = DeadLetterQueue(queue_url)
    done: list[dict[str, str | None]] = []

    def tell(outcome: str, message_id: str, letter: str | None = None, detail: str | None = None) -> None:
        done.append({"message_id": message_id, "outcome": outcome, "letter": letter, "detail": detail})
        if not as_json:
            print(f"{outcome.replace('_', ' ')} {letter or message_id}" + (f": {detail}" if detail else ""), file=out)

    delivered = failed = skipped = 0
    seen_messages: set[str] = set()
    seen_letters: set[str] = set()
    while delivered + failed + skipped < limit:
        messages = queue.receive(limit - (delivered + failed + skipped))
        fresh = 0
        for message in messages:
            if message["MessageId"] in seen_messages:
                queue.release(message["ReceiptHandle"])
                continue
            seen_messages.add(message["MessageId"])
            try:
                letter = DeadLetter.model_validate_json(message["Body"])
            except ValidationError as exc:
                routed = _route_again(router, message["Body"], environment)
                if routed is None:
                    field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "(body)"
                    tell("skipped", message["MessageId"], detail=f"not a deployment event (field {field})")
                    queue.release(message["ReceiptHandle"])
                    skipped += 1
                elif routed:
                    queue.delete(message["ReceiptHandle"])
                    tell("routed_again", message["MessageId"], detail=routed)
                    delivered += 1
                else:
                    queue.release(message["ReceiptHandle"])
                    tell("failed", message["MessageId"], detail="not every channel has it yet (kept in the queue)")
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
                tell("delivered", message["MessageId"], what)
                delivered += 1
            elif letter.kind == "malformed" or not outcome.notifications:
                queue.release(message["ReceiptHandle"])
                tell("skipped", message["MessageId"], what, outcome.error)
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
                tell("failed", message["MessageId"], what, f"{outcome.error} (kept in the dead-letter queue)")
                failed += 1
        if fresh == 0:
            break
    if as_json:
        summary = {"redelivered": delivered, "still_failing": failed, "skipped": skipped, "messages": done}
        print(json.dumps(summary, indent=2), file=out)
    else:
        print(f"redelivered {delivered}, still failing {failed}, skipped {skipped}", file=out)
    return 0 if failed == 0 else 1


def list_deliveries(table: str, deployment_id: str, as_json: bool, out: TextIO) -> int:
    """The deliveries recorded for a deployment: its id, or a unique prefix of a recent one's (an unknown one
    raises :class:`NotFoundError`, naming it)."""
    repository = DeploymentRepository(table)
    notifications = repository.notifications(deployment_id)
    if not notifications:  # not an id with deliveries: a deployment's id or prefix, as `deployments show` takes
        deployment_id = DeploymentReader(repository, prefixes=True).get(deployment_id).deployment_id
        notifications = repository.notifications(deployment_id)
    if as_json:
        print(json.dumps([n.model_dump(mode="json") for n in notifications], indent=2), file=out)
        return 0
    if not notifications:
        print(f"no deliveries recorded for {deployment_id}", file=out)
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


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of ``deployguard notifications``; ``argv`` follows the word ``notifications``;
    what it prints goes to ``out`` (default stdout), its errors to ``err`` (default stderr)."""
    if argv and argv[0] == "notifications":
        argv = argv[1:]
    token, err_token = _OUT.set(out), _ERR.set(err)
    try:
        return invoke(app, PROG, argv)
    finally:
        _OUT.reset(token)
        _ERR.reset(err_token)
