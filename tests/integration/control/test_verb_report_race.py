"""A second person's request about the deployment lands between a verb's effect write and its read-back, and
finishes the first verb's report (it found it on the record): the first request still writes through the report's
key, so the verb is audited and announced once (review: the first request found no marker and audited and
announced it again)."""

from __future__ import annotations

from typing import Any

from control_support import canary_in_flight, control_service

from deployguard.aws import clients
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest


def test_a_verb_finished_by_a_second_request_is_audited_and_announced_once(embedded: Any) -> None:
    canary_in_flight(embedded, "race-api")
    deployment_id = "dep-race-api"
    state = {"armed": False, "done": False}

    def before(params: Any, **_: Any) -> None:  # the write of alice's pause (it carries her report)
        body = params.get("body")
        text = body.decode() if isinstance(body, bytes) else str(body)
        if not state["done"] and "unreported" in text and "alice" in text:
            state["armed"] = True

    def after(**_: Any) -> None:  # bob's request lands right after it
        if state["armed"] and not state["done"]:
            state["done"] = True
            control_service(embedded).apply(deployment_id, ControlRequest(verb="pause", actor="bob", reason="me"))

    events = clients.resource("dynamodb").meta.client.meta.events
    events.register("before-call.dynamodb.PutItem", before, unique_id="report-race-before")
    events.register("after-call.dynamodb.PutItem", after, unique_id="report-race-after")
    try:
        out = control_service(embedded).apply(deployment_id, ControlRequest(verb="pause", actor="alice", reason="x"))
    finally:
        events.unregister("before-call.dynamodb.PutItem", unique_id="report-race-before")
        events.unregister("after-call.dynamodb.PutItem", unique_id="report-race-after")
    assert out.changed and state["done"]
    repository = DeploymentRepository()
    alice = [e for e in repository.audit_trail(deployment_id) if e.action == "control_pause" and e.actor == "alice"]
    assert len(alice) == 1, alice
    announced = [e for e in repository.events(deployment_id) if e.title == "Canary Pause by alice"]
    assert len(announced) == 1, announced
    assert not repository.get_deployment(deployment_id).control.unreported
