"""Nothing announced is lost when SNS or DynamoDB refuses a call: every event goes through the outbox
(recorded, published, given to the alert engine), a failed publication is finished by the minute
tick, and work claimed before a write that failed is redone by the retry.

The path is the users': CodeDeploy's state changes put on the embedded AWS's event bus (the recorder
function, with Lambda's retries), the canary step function, the assessor's minute tick on its
schedule, the real alert engine, deliveries at local receivers. Faults are injected into the
functions' own AWS calls through botocore hooks (:class:`FaultInjector`); botocore retries a
throttled call 8 times, so a plan of 9 throttles makes exactly one call fail."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alert_rules_support import shop_stack, webhook_events

from deployguard import clock
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy import create_lambda_deployment, put_state_change
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.receivers import LocalReceivers

SERVICES = {"orders-api": {"environment": "production", "function_name": "orders-api"}}
ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call (adaptive mode: max_attempts 8 retries)


@pytest.fixture
def stack() -> Iterator[tuple[EmbeddedAws, LocalReceivers, FaultInjector]]:
    with shop_stack([], SERVICES) as (aws, receivers):
        assert aws.clock is not None
        with FaultInjector(aws.clock) as faults:
            faults.watch(aws.registry)  # only the functions' calls are faulted, not the test's
            yield aws, receivers, faults


def mentions(text: str) -> Any:
    """A plan's ``when``: requests whose body holds ``text`` (SNS's form body is text, DynamoDB's JSON bytes)."""
    return lambda request: text in (request.body.decode() if isinstance(request.body, bytes) else str(request.body))


def _canary(aws: EmbeddedAws) -> str:
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    return create_lambda_deployment(target, "orders-api", "live")


def _put(aws: EmbeddedAws, deployment_id: str, state: str) -> None:
    put_state_change(deployment_id, "orders-api", "live", state)
    aws.invoker.drain()


def _minute_ticks(aws: EmbeddedAws, minutes: int = 2) -> None:
    """The assessor's schedule fires every minute meanwhile (the outbox, the alert tick)."""
    assert aws.clock is not None
    undo = aws.follow_schedules(["AssessorFunction"])
    try:
        for _ in range(minutes):
            aws.clock.advance(60)
            aws.invoker.drain()
    finally:
        undo()


def _stored(deployment_id: str) -> Counter[str]:
    return Counter(e.event_type.value for e in DeploymentRepository().events(deployment_id))


def _published(faults: FaultInjector, deployment_id: str) -> Counter[str]:
    """Publications that reached the topic, one per publication (a second one of an id counts twice)."""
    return Counter(m["event_type"] for m in faults.published if m.get("deployment_id") == deployment_id)


def _in_outbox(deployment_id: str) -> list[str]:
    later = clock.now() + timedelta(days=1)
    return [e.event.event_type.value for e in DeploymentRepository().outbox(later) if e.event.deployment_id ==
            deployment_id]  # fmt: skip


def _delivered(receivers: LocalReceivers, deployment_id: str) -> Counter[str]:
    """Events of the deployment delivered at the signed webhook (its route takes warnings and worse)."""
    return Counter(e["event_type"] for e in webhook_events(receivers) if e["deployment_id"] == deployment_id)


def test_a_throttled_publication_on_success_is_published_by_the_minute_tick(stack: Any) -> None:
    aws, _receivers, faults = stack
    deployment_id = _canary(aws)
    _put(aws, deployment_id, "START")
    plan = faults.on("sns", "Publish", ONE_CALL, when=mentions("canary.completed"))
    _put(aws, deployment_id, "SUCCESS")
    assert plan.injected == 9 and not aws.invoker.failed  # the publication failed; the function did not
    assert _stored(deployment_id) == {"deployment.started": 1, "canary.completed": 1, "deployment.completed": 1}
    assert _in_outbox(deployment_id) == ["canary.completed"]  # recorded, not out yet
    assert _published(faults, deployment_id) == {"deployment.started": 1, "deployment.completed": 1}
    _minute_ticks(aws)
    assert _published(faults, deployment_id) == _stored(deployment_id)  # each once, canary.completed included
    assert _in_outbox(deployment_id) == []


def test_a_record_refused_on_success_is_redone_by_the_lambda_retry(stack: Any) -> None:
    aws, _receivers, faults = stack
    deployment_id = _canary(aws)
    _put(aws, deployment_id, "START")
    # the outbox's write of canary.completed is refused (DynamoDB throttles each of its 9 attempts): the function fails
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions("canary.completed"))
    _put(aws, deployment_id, "SUCCESS")
    assert plan.injected == 9
    assert not aws.invoker.failed  # Lambda's retry of the asynchronous invocation succeeded
    assert _stored(deployment_id) == {"deployment.started": 1, "canary.completed": 1, "deployment.completed": 1}
    assert _published(faults, deployment_id) == _stored(deployment_id)
    actions = Counter(a.action for a in DeploymentRepository().audit_trail(deployment_id))
    assert actions["codedeploy_success"] == 1  # the retry finished the delivery's follow-up, once
    _put(aws, deployment_id, "SUCCESS")  # EventBridge delivers at least once: a redelivery adds nothing
    assert _stored(deployment_id) == {"deployment.started": 1, "canary.completed": 1, "deployment.completed": 1}
    assert _published(faults, deployment_id) == _stored(deployment_id)


def _rollback_stuck(aws: EmbeddedAws) -> str:
    """A canary of the state machine whose rollback failed: its Notify task gets the error."""
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment = Deployment(
        deployment_id="dep-stuck", service="orders-api", environment="production", version=versions[1],
        target=target, status=DeploymentStatus.IN_PROGRESS, phase=Phase.DEPLOYMENT_ACTIVE, canary_weight=0.5,
    )  # fmt: skip
    DeploymentRepository().create_deployment(deployment)
    return deployment.deployment_id


def _notify_rollback_failed(aws: EmbeddedAws, deployment_id: str) -> None:
    error = {"Error": "DeployGuard.RollbackFailed", "Cause": "the alias could not be moved"}
    payload, errored = aws.invoke(
        "CanaryStepFunction", {"action": "notify", "state": {"deployment_id": deployment_id, "error": error}}
    )
    assert not errored, payload
    aws.invoker.drain()


def _alerts(deployment_id: str) -> list[str]:
    return [a.rule for a in IncidentRepository(DeploymentRepository()).alerts(deployment_id)]


def _pages(deployment_id: str) -> list[int]:
    events = DeploymentRepository().events(deployment_id)
    return [e.details["page"] for e in events if e.details.get("kind") == "page"]


def test_a_rollback_that_failed_while_sns_is_down_still_opens_its_incident_and_pages_once(stack: Any) -> None:
    aws, receivers, faults = stack
    deployment_id = _rollback_stuck(aws)
    faults.on("sns", "Publish", [], then="outage")  # SNS unreachable: every publication fails
    _notify_rollback_failed(aws, deployment_id)
    assert _published(faults, deployment_id) == {}
    stored = _stored(deployment_id)
    assert stored["rollback.failed"] == 1 and stored["canary.completed"] == 1
    assert _alerts(deployment_id) == ["rollback-failed"]  # the alert engine ran whatever SNS said
    assert _pages(deployment_id) == [1]  # the emergency policy's first page, recorded
    _notify_rollback_failed(aws, deployment_id)  # the state machine retries Notify: nothing twice
    assert _alerts(deployment_id) == ["rollback-failed"] and _pages(deployment_id) == [1]
    assert _stored(deployment_id) == stored
    faults.clear()  # SNS is back
    _minute_ticks(aws)
    assert _in_outbox(deployment_id) == []
    assert _published(faults, deployment_id) == _stored(deployment_id)  # every event, once
    delivered = [e for e in webhook_events(receivers) if e["deployment_id"] == deployment_id]
    assert Counter(e["event_type"] for e in delivered)["rollback.failed"] == 1
    pages = _pages(deployment_id)  # the first, and the next step's when the policy's wait passed meanwhile
    assert pages[0] == 1 and pages == sorted(set(pages))
    assert sorted(e["details"]["page"] for e in delivered if e["details"].get("kind") == "page") == pages
    assert _alerts(deployment_id) == ["rollback-failed"]  # the tick did not run the engine on it again


def test_a_page_whose_record_is_refused_stays_claimed_and_is_sent_by_the_next_tick(stack: Any) -> None:
    aws, receivers, faults = stack
    deployment_id = _rollback_stuck(aws)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions("PAGE 1"))
    _notify_rollback_failed(aws, deployment_id)
    assert plan.injected == 9
    assert _alerts(deployment_id) == ["rollback-failed"] and _pages(deployment_id) == []
    [incident] = [i for i in IncidentRepository(DeploymentRepository()).recent() if i.deployment_id == deployment_id]
    claimed = incident.escalation.claimed  # kept (the record may have landed): the next tick sends it
    assert incident.escalation.pages == 1 and claimed is not None and claimed.page == 1
    _minute_ticks(aws, 1)
    assert _pages(deployment_id) == [1]
    assert _published(faults, deployment_id) == _stored(deployment_id)
    incident = IncidentRepository(DeploymentRepository()).get(incident.incident_id)
    assert incident.escalation.pages == 1 and [t.action for t in incident.timeline].count("paged") == 1
    assert incident.escalation.claimed is None  # recorded: the claim is cleared
    delivered = [e for e in webhook_events(receivers) if e["deployment_id"] == deployment_id]
    assert [e["details"]["page"] for e in delivered if e["details"].get("kind") == "page"] == [1]
