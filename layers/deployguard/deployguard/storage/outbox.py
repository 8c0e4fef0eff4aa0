"""The outbox: how every deployment event goes out, whoever announces it.

An event is recorded first (the deployment's history, and the outbox: index ``gsi1``, ``LOOP``,
kind ``O``), then published on the events topic, then, for the events the alert rules read,
given to the alert engine; each step is noted on the stored event, and the event leaves the
outbox when every step is done (:meth:`DeploymentRepository.outbox_record`,
:meth:`~DeploymentRepository.mark_published`, :meth:`~DeploymentRepository.mark_alerted`).

    announce(repository, publisher, event, actor=ACTOR, alert=lambda e: engine.on_event(e, deployment))

Only the record can fail the caller (:func:`announce` raises when the event could not be stored:
nothing was done, and the caller's retry, or the caller releasing what it claimed, does it again).
Once recorded, nothing is lost and nothing raises: a publication that fails leaves the event in
the outbox, and so does an alert engine that fails; the minute tick finishes both (:func:`drain`,
from :func:`deployguard.workflows.reconciler.publish_outbox`). A step retried after an earlier
attempt recorded the event (same id and time) finds what that attempt did, so an event is
published once (twice at worst, after a publication whose note failed: the router delivers an
event id once) and the alert engine sees it once per event id (a lease on the event id, so a
retry and the tick never run it together; after :data:`MAX_ALERT_ATTEMPTS` failures it is given
up, audited). A run that finished is noted done on its lease before it is noted on the event, so
a run whose note on the event failed is never run again: whoever finds the lease done (a retry,
the tick once :data:`ALERT_LEASE` is over) only notes the event (:func:`alerting`). A run that
died without finishing leaves its lease claimed, and is redone after :data:`ALERT_LEASE`.

A publication SNS refuses for the event itself (InvalidParameter, a message too long: any
refusal no retry changes, :func:`deployguard.aws.events.refused_for_good`) holds no other event:
the tick goes on publishing the rest, and only a refusal that every event would meet (throttling,
5xx, credentials, the network) stops its publications until the next tick. Such refusals are
counted on the event; after :data:`MAX_PUBLISH_ATTEMPTS` the event is given up (audited on its
deployment as ``publication_given_up`` with SNS's reason, counted in the EMF metric
``EventsGivenUp``, logged at error level) and leaves the outbox once the alert engine saw it: it
stays in the deployment's history, never published.
(The publisher trims an event over SNS's size limit before sending it, so the usual cause, large
details, never gets that far.)

The tick leaves an event to the step that recorded it for :data:`GRACE` after it was recorded
(``recorded_at`` on the stored item; the event's own time may be minutes old: CodeDeploy's time
on an asynchronous retry, the hook replaying a verdict).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from deployguard import clock
from deployguard.aws.events import refused_for_good
from deployguard.storage.leases import DONE, Leases

if TYPE_CHECKING:
    from deployguard.aws.events import EventPublisher
    from deployguard.models import DeploymentEvent
    from deployguard.storage.repository import DeploymentRepository, OutboxEntry

ACTOR = "deployguard:outbox"
ALERTING = "EVENT-ALERTING"  # the lease of one run of the alert engine on one event id
ALERT_LEASE = timedelta(minutes=15)  # longer than any function runs: a run that died is redone after it
MAX_ALERT_ATTEMPTS = 3  # failed runs of the alert engine on one event before it is given up (audited)
MAX_PUBLISH_ATTEMPTS = 3  # publications of one event SNS refused for good before it is given up (audited)
GRACE = timedelta(seconds=60)  # the tick leaves events recorded since to the step that recorded them (in flight)
logger = logging.getLogger(__name__)

Alert = Callable[["DeploymentEvent"], object]


def alerting(repository: DeploymentRepository) -> Leases:
    """The alert engine's leases, one per event id: claimed by a run for :data:`ALERT_LEASE` (taken
    over after it by the next attempt: that run died), done once the run finished; kept for the
    repository's retention (as long as the event), so a finished run is not run again."""
    return Leases(lambda: repository.table, ALERTING, repository.retention)


def announce(
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    event: DeploymentEvent,
    *,
    actor: str = ACTOR,
    alert: Alert | None = None,
) -> OutboxEntry:
    """Record ``event`` in the outbox, publish it, and give it to ``alert`` (the alert engine) when
    given; returns the entry as stored (``new``: recorded by this call). Raises only when the event
    could not be recorded. Without a publisher the event waits in the outbox for the minute tick."""
    entry = repository.outbox_record(event, alerts=alert is not None)
    deliver(repository, publisher, entry, actor=actor, alert=alert)
    return entry


def deliver(
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    entry: OutboxEntry,
    *,
    actor: str = ACTOR,
    alert: Alert | None = None,
) -> bool:
    """Finish a recorded event: publish it unless published, run ``alert`` on it if still due.
    Never raises; returns whether it is published by now (or given up: the topic is done with it)."""
    published = entry.published or _publish(repository, publisher, entry.event, actor) in ("published", "given_up")
    if alert is not None and entry.alerts_due:
        _alert_once(repository, entry.event, alert, actor)
    return published


def drain(
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    entries: Iterable[OutboxEntry],
    *,
    now: datetime | None = None,
    actor: str = ACTOR,
    alert: Alert | None = None,
) -> int:
    """The minute tick's part: finish the outbox's entries recorded more than :data:`GRACE` ago (publish those not
    published, while the topic takes them; run the alert engine on those it has not seen, when
    ``alert`` is given). An event SNS refuses for good does not stop the others (it is counted, and
    given up after :data:`MAX_PUBLISH_ATTEMPTS`); any other failure stops the publications until the
    next tick. Returns how many were published. Never raises."""
    before = (now or clock.now()) - GRACE
    published = 0
    topic_down = False
    for entry in entries:
        if (entry.recorded_at or entry.event.at) > before:  # no recorded_at: stored before it was noted
            continue
        if not entry.published and not topic_down:
            result = _publish(repository, publisher, entry.event, actor)
            if result == "published":
                published += 1
            elif result == "deferred":
                topic_down = True  # the next tick tries again; the alert engine still runs
        elif entry.published and not entry.alerts_due:  # a note that raced another: leave the outbox now
            with suppress(Exception):
                if entry.given_up:
                    repository.give_up_publication(entry.event, "refused by SNS (noted again)")
                else:
                    repository.mark_published(entry.event)
        if alert is not None and entry.alerts_due:
            _alert_once(repository, entry.event, alert, actor)
    return published


Published = Literal["published", "deferred", "refused", "given_up"]


def _publish(
    repository: DeploymentRepository, publisher: EventPublisher | None, event: DeploymentEvent, actor: str
) -> Published:
    """Publish ``event`` and note it: ``published``; ``deferred`` (the topic, SNS or the network failed:
    the next tick tries again, after the others wait too); ``refused`` (SNS refused this event for good:
    counted, the next tick tries it again, the others go on); ``given_up`` (refused for the
    :data:`MAX_PUBLISH_ATTEMPTS`-th time: never published, audited)."""
    if publisher is None:
        return "deferred"
    try:
        publisher.publish(event)
    except Exception as exc:  # recorded: it stays in the outbox, and the minute tick publishes it
        reason = f"{type(exc).__name__}: {exc}"
        if refused_for_good(exc):
            return _publication_refused(repository, event, actor, reason)
        logger.warning("event recorded, publication deferred", extra={"event_id": event.event_id, "reason": reason})
        return "deferred"
    try:
        repository.mark_published(event)
    except Exception:  # out on the topic; the outbox may publish it again (the router delivers an id once)
        logger.warning("event published, not noted", extra={"event_id": event.event_id})
    return "published"


def _publication_refused(
    repository: DeploymentRepository, event: DeploymentEvent, actor: str, reason: str
) -> Published:
    """Count a refusal for good; at :data:`MAX_PUBLISH_ATTEMPTS` give the event up (audited, logged at
    error level). A count that cannot be written leaves the event to the next tick, uncounted."""
    try:
        refusals = repository.publication_failed(event)
    except Exception:
        logger.exception("cannot count a refused publication", extra={"event_id": event.event_id})
        return "refused"
    if refusals < MAX_PUBLISH_ATTEMPTS:
        logger.warning("event refused by SNS: the minute tick tries again",
                       extra={"event_id": event.event_id, "reason": reason, "attempts": refusals})  # fmt: skip
        return "refused"
    logger.error("event refused by SNS, given up: never published",
                 extra={"event_id": event.event_id, "deployment_id": event.deployment_id, "reason": reason,
                        "attempts": refusals})  # fmt: skip
    _count_given_up(event)
    try:
        repository.give_up_publication(event, reason)
        repository.audit(event.deployment_id, "publication_given_up", actor,
                         f"{event.event_type.value}: refused by SNS {refusals} times, never published: {reason}",
                         event_id=event.event_id, attempts=refusals)  # fmt: skip
    except Exception:  # the next tick finds it again: counted past the bound, given up then
        logger.exception("cannot give up a refused publication", extra={"event_id": event.event_id})
        return "refused"
    return "given_up"


def _alert_once(repository: DeploymentRepository, event: DeploymentEvent, alert: Alert, actor: str) -> bool:
    """Run the alert engine on ``event`` under its lease (:func:`alerting`): done on the lease once the
    run finished, then noted on the event; released when it failed. A lease found done (the run
    finished, its note on the event did not) only has the event noted: the engine is not run again."""
    leases = alerting(repository)
    try:
        claim = leases.claim(event.event_id, (clock.now() + ALERT_LEASE).timestamp(), reclaim_expired=True)
    except Exception:
        logger.warning("cannot take the alerting lease: left to the minute tick", extra={"event_id": event.event_id})
        return False
    if not claim.mine:
        if claim.existing is None or claim.existing.state != DONE:
            return False  # another attempt runs it now
        _note_alerted(repository, event)  # it ran; the note on the event had failed
        return True
    if claim.taken_over is not None:
        logger.warning("alert engine run died unfinished: run again", extra={"event_id": event.event_id})
    try:
        alert(event)
    except Exception as exc:
        logger.exception("alert engine failed", extra={"deployment_id": event.deployment_id, "on": event.event_id})
        _alerting_failed(repository, leases, claim.token, event, actor, exc)
        return False
    try:
        leases.done(event.event_id)
    except Exception:  # the note on the event still ends it; only if both fail is it run again after the lease
        logger.warning("alert engine ran, lease not marked done", extra={"event_id": event.event_id})
    _note_alerted(repository, event)
    return True


def _note_alerted(repository: DeploymentRepository, event: DeploymentEvent) -> None:
    try:
        repository.mark_alerted(event)
    except Exception:  # the lease says done: the next attempt only notes it
        logger.warning("alert engine ran, not noted", extra={"event_id": event.event_id})


def _alerting_failed(
    repository: DeploymentRepository, leases: Leases, token: str, event: DeploymentEvent, actor: str, exc: Exception
) -> None:
    """Audit the failure; the event stays due (the minute tick runs the engine again) until
    MAX_ALERT_ATTEMPTS failures, then it is given up."""
    try:
        leases.release(event.event_id, token)
        failures = repository.alerting_failed(event)
        given_up = failures >= MAX_ALERT_ATTEMPTS
        if given_up:
            repository.mark_alerted(event)
        then = f"given up after {failures} attempts" if given_up else "the minute tick runs it again"
        repository.audit(event.deployment_id, "alerting_failed", actor,
                         f"{event.event_type.value}: {type(exc).__name__}: {exc} ({then})",
                         event_id=event.event_id, attempts=failures)  # fmt: skip
    except Exception:
        logger.exception("cannot note a failed alert engine run", extra={"event_id": event.event_id})


GIVEN_UP_METRIC = "EventsGivenUp"  # EMF, namespace DeployGuard: events SNS refused for good, never published


def _count_given_up(event: DeploymentEvent) -> None:
    """One ``EventsGivenUp`` sample (EMF on stdout, as the verdict metrics: CloudWatch Logs makes it a
    metric to alarm on); the event's id, type and deployment ride along as properties. Never raises."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    try:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric  # only when an event is given up

        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DeployGuard")
        with single_metric(name=GIVEN_UP_METRIC, unit=MetricUnit.Count, value=1, namespace=namespace) as metric:
            metric.add_dimension(name="service", value=os.environ.get("POWERTOOLS_SERVICE_NAME", "deployguard"))
            metric.add_metadata("EventId", event.event_id)
            metric.add_metadata("EventType", event.event_type.value)
            metric.add_metadata("DeploymentId", event.deployment_id)
    except Exception:
        logger.exception("cannot count a given-up event", extra={"event_id": event.event_id})
