"""The outbox (deployguard.storage.outbox) on moto: DynamoDB, an SNS topic with an SQS queue
subscribed (what reached the topic), faults (a publication, the note that the alert engine ran)
injected with botocore hooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alarm_evaluation import create_alarm, evaluate, put_emf
from botocore.exceptions import ClientError
from moto_table import TABLE, aws, sim_clock  # noqa: F401  (fixtures)

from deployguard import clock
from deployguard.aws import clients, events
from deployguard.aws.events import EventPublisher
from deployguard.models import DeploymentEvent, EventType, VerdictReason
from deployguard.storage import outbox
from deployguard.storage.leases import DONE
from deployguard.storage.repository import ALERTS_DUE, RECORDED_AT, DeploymentRepository
from deployguard.workflows.reconciler import publish_outbox
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]


class Topic:
    """A real SNS topic (moto) and a queue subscribed to it; ``down`` makes every Publish fail."""

    def __init__(self) -> None:
        sns, sqs = clients.client("sns"), clients.client("sqs")
        self.arn = sns.create_topic(Name="events")["TopicArn"]
        self.queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        self.down = False
        self.seen: list[str] = []
        sns.meta.events.register("before-call.sns.Publish", self._refuse, unique_id="test-outbox-down")

    def _refuse(self, **_: Any) -> None:
        if self.down:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "injected"}}, "Publish")

    def received(self) -> list[str]:
        """Event ids that reached the topic so far (in order)."""
        sqs = clients.client("sqs")
        while messages := sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                self.seen.append(json.loads(message["Body"])["event_id"])
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return self.seen

    def close(self) -> None:
        clients.client("sns").meta.events.unregister("before-call.sns.Publish", unique_id="test-outbox-down")


@pytest.fixture
def topic(aws: None) -> Iterator[Topic]:  # noqa: F811
    made = Topic()
    yield made
    made.close()


@pytest.fixture
def table(aws: None) -> DeploymentRepository:  # noqa: F811
    return DeploymentRepository(TABLE)


class NoteRefused:
    """While ``on``, the UpdateItem that notes an event alerted (``mark_alerted``: ``REMOVE alerts_due ...``)
    fails as DynamoDB would (a botocore hook on the deployments table's client); ``refused`` counts them."""

    HOOK = "before-parameter-build.dynamodb.UpdateItem"

    def __init__(self) -> None:
        self.on = True
        self.refused = 0
        self.events().register(self.HOOK, self._refuse, unique_id="test-outbox-note-refused")

    @staticmethod
    def events() -> Any:
        return clients.resource("dynamodb").meta.client.meta.events

    def _refuse(self, params: dict[str, Any], **_: Any) -> None:
        if self.on and str(params.get("UpdateExpression", "")).startswith(f"REMOVE {ALERTS_DUE}"):
            self.refused += 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")

    def close(self) -> None:
        self.events().unregister(self.HOOK, unique_id="test-outbox-note-refused")


@pytest.fixture
def note_refused(aws: None) -> Iterator[NoteRefused]:  # noqa: F811
    made = NoteRefused()
    yield made
    made.close()


class Engine:
    """What the outbox calls: the alert engine's entry for an event (failing ``fail`` times first)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def __call__(self, event: DeploymentEvent) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("alert engine down")
        self.seen.append(event.event_id)


def _event(event_id: str = "ev-1") -> DeploymentEvent:
    return DeploymentEvent(event_id=event_id, event_type=EventType.ROLLBACK_FAILED, deployment_id="d-1",
                           service="orders", version="2", environment="prod", title="Rollback Failed")  # fmt: skip


def _waiting(repository: DeploymentRepository) -> list[str]:
    return [e.event.event_id for e in repository.outbox(clock.now() + timedelta(days=1))]


def _tick(repository: DeploymentRepository, topic: Topic, alert: Any, minutes: int = 2) -> None:
    """Minutes pass (the simulated clock); the minute tick's part of the outbox runs."""
    clock.sleep(60 * minutes)
    outbox.drain(repository, EventPublisher(topic.arn), repository.outbox(clock.now()), alert=alert)


def test_a_refused_publication_waits_in_the_outbox_and_the_alert_engine_runs_at_once(
    table: DeploymentRepository, topic: Topic
) -> None:
    engine, publisher, event = Engine(), EventPublisher(topic.arn), _event()
    topic.down = True
    entry = outbox.announce(table, publisher, event, alert=engine)
    assert entry.new and topic.received() == [] and engine.seen == ["ev-1"]
    assert _waiting(table) == ["ev-1"]
    outbox.announce(table, publisher, event, alert=engine)  # the step retried (same id and time): not alerted twice
    assert engine.seen == ["ev-1"]
    _tick(table, topic, engine)  # SNS still down: stays
    assert topic.received() == [] and _waiting(table) == ["ev-1"]
    topic.down = False
    _tick(table, topic, engine)
    assert topic.received() == ["ev-1"] and _waiting(table) == [] and engine.seen == ["ev-1"]
    assert not outbox.announce(table, publisher, event, alert=engine).new  # a retry after: nothing again
    assert topic.received() == ["ev-1"] and engine.seen == ["ev-1"]


def test_an_alert_engine_that_fails_is_run_again_by_the_tick_once_it_works(
    table: DeploymentRepository, topic: Topic
) -> None:
    engine = Engine(fail=1)
    outbox.announce(table, EventPublisher(topic.arn), _event(), alert=engine)
    assert topic.received() == ["ev-1"] and engine.seen == []
    assert _waiting(table) == ["ev-1"]  # published, not alerted: it stays for the tick
    _tick(table, topic, engine)
    assert engine.seen == ["ev-1"] and _waiting(table) == [] and topic.received() == ["ev-1"]
    [failed] = [a for a in table.audit_trail("d-1") if a.action == "alerting_failed"]
    assert "the minute tick runs it again" in failed.reason


def test_an_alert_engine_that_keeps_failing_is_given_up_loudly(table: DeploymentRepository, topic: Topic) -> None:
    engine = Engine(fail=10)
    outbox.announce(table, EventPublisher(topic.arn), _event(), alert=engine)
    for _ in range(outbox.MAX_ALERT_ATTEMPTS + 2):
        _tick(table, topic, engine)
    assert engine.fail == 10 - outbox.MAX_ALERT_ATTEMPTS and _waiting(table) == []
    reasons = [a.reason for a in table.audit_trail("d-1") if a.action == "alerting_failed"]
    assert len(reasons) == outbox.MAX_ALERT_ATTEMPTS and "given up" in reasons[-1]


@pytest.mark.parametrize("lease", ["alerting", "claim_once"])  # claim_once: the lease as earlier versions took it
def test_an_alert_run_in_flight_is_not_run_beside_it(table: DeploymentRepository, topic: Topic, lease: str) -> None:
    """A run that died holding the lease (a function timed out) is redone once the lease expires."""
    engine = Engine()
    event = _event()
    table.outbox_record(event, alerts=True)
    if lease == "alerting":  # another attempt runs it
        until = (clock.now() + outbox.ALERT_LEASE).timestamp()
        assert outbox.alerting(table).claim(event.event_id, until, reclaim_expired=True).mine
    else:
        assert table.claim_once(outbox.ALERTING, event.event_id, outbox.ALERT_LEASE)
    _tick(table, topic, engine)
    assert engine.seen == [] and topic.received() == ["ev-1"] and _waiting(table) == ["ev-1"]
    _tick(table, topic, engine, minutes=16)
    assert engine.seen == ["ev-1"] and _waiting(table) == []


def test_an_alert_run_whose_note_failed_is_not_run_again_by_a_retry_or_the_tick(
    table: DeploymentRepository, topic: Topic, note_refused: NoteRefused
) -> None:
    """The engine ran but the event could not be noted alerted: the lease, noted done, keeps every later
    attempt (the step retried, the tick after the lease is over) to retrying the note."""
    engine, publisher, event = Engine(), EventPublisher(topic.arn), _event()
    outbox.announce(table, publisher, event, alert=engine)
    assert engine.seen == ["ev-1"] and note_refused.refused == 1 and _waiting(table) == ["ev-1"]
    outbox.announce(table, publisher, event, alert=engine)  # the step retried: only the note is tried again
    assert engine.seen == ["ev-1"]
    _tick(table, topic, engine, minutes=16)  # the lease (15 min) is over: the tick too only tries the note
    assert engine.seen == ["ev-1"]
    assert note_refused.refused == 3 and _waiting(table) == ["ev-1"]  # the note tried by both, refused
    marker = outbox.alerting(table).get(event.event_id)
    assert marker is not None and marker.state == DONE  # kept for the event's retention, not the lease
    note_refused.on = False
    _tick(table, topic, engine, minutes=16)
    assert engine.seen == ["ev-1"] and _waiting(table) == [] and topic.received() == ["ev-1"]


def test_a_failed_run_releases_its_lease_for_the_tick(table: DeploymentRepository, topic: Topic) -> None:
    engine = Engine(fail=1)
    outbox.announce(table, EventPublisher(topic.arn), _event(), alert=engine)
    assert outbox.alerting(table).get("ev-1") is None  # released: the next tick runs it, not after the lease
    _tick(table, topic, engine)
    marker = outbox.alerting(table).get("ev-1")
    assert engine.seen == ["ev-1"] and marker is not None and marker.state == DONE


def test_the_tick_leaves_an_old_event_to_the_step_that_recorded_it_for_a_minute_after_recording(
    table: DeploymentRepository, topic: Topic
) -> None:
    """Grace runs from when the event was recorded, not from its own time (CodeDeploy's, minutes old on
    an asynchronous retry; the hook replaying a verdict's)."""
    engine, publisher = Engine(), EventPublisher(topic.arn)
    event = _event().model_copy(update={"at": clock.now() - timedelta(minutes=10)})
    entry = table.outbox_record(event, alerts=True)  # the step is in flight: it publishes and alerts next
    assert entry.recorded_at == clock.now()
    clock.sleep(59)
    assert publish_outbox(table, publisher, alert=engine) == 0  # the minute tick
    assert topic.received() == [] and engine.seen == [] and _waiting(table) == ["ev-1"]
    clock.sleep(2)  # the step did not finish it within the grace: the tick does
    assert publish_outbox(table, publisher, alert=engine) == 1
    assert topic.received() == ["ev-1"] and engine.seen == ["ev-1"] and _waiting(table) == []


def test_an_event_stored_before_recorded_at_is_given_grace_from_its_own_time(
    table: DeploymentRepository, topic: Topic
) -> None:
    engine, publisher = Engine(), EventPublisher(topic.arn)
    old, new = (
        _event(i).model_copy(update={"at": clock.now() - timedelta(seconds=s)}) for i, s in (("ev-1", 61), ("ev-2", 30))
    )
    for event in (old, new):
        table.outbox_record(event, alerts=True)
        table.table.update_item(Key=table._event_key(event), UpdateExpression=f"REMOVE {RECORDED_AT}")
    assert {e.event.event_id: e.recorded_at for e in table.outbox(clock.now())} == {"ev-1": None, "ev-2": None}
    assert publish_outbox(table, publisher, alert=engine) == 1
    assert topic.received() == ["ev-1"] and engine.seen == ["ev-1"] and _waiting(table) == ["ev-2"]


class RefusedForGood:
    """SNS refuses the Publish of the events in ``bad`` as it refuses a message it will never take
    (InvalidParameter, HTTP 400: a botocore hook on the real client); ``tries`` counts the refusals."""

    HOOK = "before-call.sns.Publish"

    def __init__(
        self, *bad: str, code: str = "InvalidParameter", message: str = "Invalid parameter: Message too long"
    ) -> None:
        self.bad = set(bad)
        self.tries = 0
        self.error = {"Code": code, "Message": message}
        clients.client("sns").meta.events.register(self.HOOK, self._refuse, unique_id="test-outbox-refused")

    def _refuse(self, params: dict[str, Any], **_: Any) -> None:
        if "*" in self.bad or json.loads(params["body"]["Message"])["event_id"] in self.bad:
            self.tries += 1
            raise ClientError({"Error": dict(self.error), "ResponseMetadata": {"HTTPStatusCode": 400}}, "Publish")

    def close(self) -> None:
        clients.client("sns").meta.events.unregister(self.HOOK, unique_id="test-outbox-refused")


@pytest.fixture
def refused(topic: Topic) -> Iterator[RefusedForGood]:
    made = RefusedForGood("ev-2")
    yield made
    made.close()


def test_an_event_sns_refuses_for_good_holds_no_other_and_is_given_up_after_the_bound(
    table: DeploymentRepository,
    topic: Topic,
    refused: RefusedForGood,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: the give-up is counted (EMF)
    engine = Engine()
    events = [_event(f"ev-{i}").model_copy(update={"at": clock.now() + timedelta(seconds=i)}) for i in (1, 2, 3, 4)]
    for event in events:  # recorded, not published (the step died before publishing): the tick publishes them
        table.outbox_record(event, alerts=True)
    _tick(table, topic, engine)
    assert topic.received() == ["ev-1", "ev-3", "ev-4"]  # the same tick, behind the refused one
    assert refused.tries == 1 and _waiting(table) == ["ev-2"] and engine.seen == ["ev-1", "ev-2", "ev-3", "ev-4"]
    for _ in range(outbox.MAX_PUBLISH_ATTEMPTS + 2):
        _tick(table, topic, engine)
    assert refused.tries == outbox.MAX_PUBLISH_ATTEMPTS and _waiting(table) == []  # given up: it left the outbox
    assert topic.received() == ["ev-1", "ev-3", "ev-4"] and engine.seen == ["ev-1", "ev-2", "ev-3", "ev-4"]
    [given_up] = [a for a in table.audit_trail("d-1") if a.action == "publication_given_up"]
    assert given_up.details == {"event_id": "ev-2", "attempts": outbox.MAX_PUBLISH_ATTEMPTS}
    assert "InvalidParameter" in given_up.reason and "never published" in given_up.reason
    captured = capsys.readouterr()
    blobs = [json.loads(line) for line in (captured.out + captured.err).splitlines() if line.startswith('{"_aws"')]
    [counted] = [b for b in blobs if outbox.GIVEN_UP_METRIC in b]
    assert counted[outbox.GIVEN_UP_METRIC] == [1.0] and counted["EventId"] == "ev-2"
    assert counted["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DeployGuard"
    # CloudWatch Logs makes it a metric, and the stack's EventsGivenUpAlarm tells the operator
    put_emf(captured.out + captured.err, clock.now())
    alarm = create_alarm(Stack.load(ROOT), "EventsGivenUpAlarm")
    assert evaluate(alarm, clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)) == "ALARM"
    entry = table.outbox_record(events[1])  # the history keeps it; a retried step does not publish it again
    assert entry.given_up and entry.published and not entry.new
    outbox.deliver(table, EventPublisher(topic.arn), entry)
    assert refused.tries == outbox.MAX_PUBLISH_ATTEMPTS


def test_a_refusal_every_event_meets_still_waits_for_the_next_tick(table: DeploymentRepository, topic: Topic) -> None:
    """Throttling (and 5xx, credentials, the network) is never the event's fault: nothing is counted or given up."""
    for i in (1, 2):
        table.outbox_record(_event(f"ev-{i}").model_copy(update={"at": clock.now() + timedelta(seconds=i)}))
    topic.down = True
    for _ in range(outbox.MAX_PUBLISH_ATTEMPTS + 1):
        _tick(table, topic, None)
    assert _waiting(table) == ["ev-1", "ev-2"] and not table.audit_trail("d-1")
    topic.down = False
    _tick(table, topic, None)
    assert topic.received() == ["ev-1", "ev-2"] and _waiting(table) == []


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InvalidParameter", "Invalid parameter: TopicArn"),  # a TopicArn of another region, or malformed
        ("InvalidParameter", "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"),
        ("RequestExpired", "Request has expired."),  # the host's clock
        ("OptInRequired", "The AWS Access Key Id needs a subscription for the service"),
        ("SomethingNew", "a code we do not know"),
    ],
)
def test_a_refusal_every_event_meets_is_never_taken_for_the_events_fault(
    table: DeploymentRepository, topic: Topic, code: str, message: str
) -> None:
    """Errors of the topic, its ARN, the request or the account (the same codes SNS answers for a bad
    message, other messages) are met by every event: nothing is given up, all wait for the fix."""
    for i in (1, 2):
        table.outbox_record(_event(f"ev-{i}").model_copy(update={"at": clock.now() + timedelta(seconds=i)}))
    refusing = RefusedForGood("*", code=code, message=message)
    try:
        for _ in range(outbox.MAX_PUBLISH_ATTEMPTS + 2):
            _tick(table, topic, None)
    finally:
        refusing.close()
    assert refusing.tries >= outbox.MAX_PUBLISH_ATTEMPTS + 2  # every tick tried, none gave up
    assert _waiting(table) == ["ev-1", "ev-2"] and not table.audit_trail("d-1")
    _tick(table, topic, None)
    assert topic.received() == ["ev-1", "ev-2"] and _waiting(table) == []


@pytest.mark.parametrize(
    "message",
    ["Invalid parameter: Message too long", "Invalid parameter: MessageAttributes", "Invalid parameter: Subject"],
)
def test_a_refusal_about_the_message_itself_is_for_good(message: str) -> None:
    error = {"Error": {"Code": "InvalidParameter", "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    assert events.refused_for_good(ClientError(error, "Publish"))  # type: ignore[arg-type]


class SubjectChecked:
    """SNS's rule for a subject (ASCII printable, no line break, at most 100 characters), as a botocore hook
    on the real client: a Publish whose Subject breaks it is refused (InvalidParameter: Subject)."""

    HOOK = "before-parameter-build.sns.Publish"

    def __init__(self) -> None:
        self.subjects: list[str | None] = []
        clients.client("sns").meta.events.register(self.HOOK, self._check, unique_id="test-outbox-subject")

    def _check(self, params: dict[str, Any], **_: Any) -> None:
        subject = params.get("Subject")
        self.subjects.append(subject)
        if subject is not None and (len(subject) > 100 or any(not " " <= c <= "~" for c in subject)):
            error = {"Code": "InvalidParameter", "Message": "Invalid parameter: Subject"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Publish")

    def close(self) -> None:
        clients.client("sns").meta.events.unregister(self.HOOK, unique_id="test-outbox-subject")


@pytest.mark.parametrize(
    ("title", "subject"),
    [
        ("Rollback échoué\nsur 🚀 checkout", "[prod] Rollback echoue sur checkout"),
        ("R" * 300, "[prod] " + "R" * 93),
        ("🚀", "[prod]"),
    ],
)
def test_no_title_makes_an_event_unpublishable(
    table: DeploymentRepository, topic: Topic, title: str, subject: str
) -> None:
    checked = SubjectChecked()
    try:
        outbox.announce(table, EventPublisher(topic.arn), _event().model_copy(update={"title": title}))
    finally:
        checked.close()
    assert topic.received() == ["ev-1"] and _waiting(table) == [] and checked.subjects == [subject]
    assert events.sns_subject("\n\t ") is None


def test_an_event_over_the_sns_limit_is_published_trimmed_with_its_id(
    table: DeploymentRepository, topic: Topic
) -> None:
    """Large details (every check's report) would make SNS refuse the event for good (moto refuses a message
    over 256 KiB as SNS does): it is sent trimmed, with its id and a marker, and kept whole in the history."""
    big = _event().model_copy(update={"details": {"checks": ["x" * 1000] * 300}})  # ~300 KB of details
    outbox.announce(table, EventPublisher(topic.arn), big)
    sqs = clients.client("sqs")
    [message] = sqs.receive_message(QueueUrl=topic.queue, MaxNumberOfMessages=10)["Messages"]
    sent = json.loads(message["Body"])
    assert sent["event_id"] == "ev-1" and sent["event_type"] == big.event_type.value and _waiting(table) == []
    assert "left out" in sent["details"][events.TRIMMED] and sent["details"]["detail_keys"] == ["checks"]
    [stored] = [e for e in table.events("d-1") if e.event_id == "ev-1"]
    assert stored.details == big.details  # the history keeps it whole


def test_an_event_large_everywhere_is_trimmed_largest_parts_first_keeping_what_routes_it() -> None:
    reasons = [VerdictReason(metric_id=f"m{i}", status="fail", message="x" * 400) for i in range(700)]
    routing = {"kind": "page", "incident_id": "inc-1", "routes": ["oncall"], "step_index": 2}
    big = _event().model_copy(
        update={"message": "m" * 300_000, "reasons": reasons, "details": {**routing, "report": "r" * 300_000}}
    )
    cut = events.fit_for_sns(big)
    assert len(cut.model_dump_json().encode()) <= events.SNS_MESSAGE_LIMIT - 2048
    assert {k: cut.details[k] for k in routing} == routing and cut.details["detail_keys"] == ["report"]
    assert 0 < len(cut.reasons) < 700 and cut.message.endswith("[cut: too long for SNS]") and len(cut.message) > 1000
    assert "reasons after the first" in cut.details[events.TRIMMED] and "details report" in cut.details[events.TRIMMED]


def test_an_event_too_long_without_its_details_has_its_message_cut() -> None:
    huge = _event().model_copy(update={"message": "\u00e9\n" * 150_000, "details": {"x": "y" * 10}})
    cut = events.fit_for_sns(huge)
    assert len(cut.model_dump_json().encode()) <= events.SNS_MESSAGE_LIMIT - 2048
    assert cut.message.endswith("[cut: too long for SNS]") and cut.event_id == "ev-1" and cut.at == huge.at
    small = _event()
    assert events.fit_for_sns(small) is small
