"""A canary held because nobody answered a rollback request before it expired can be retried by a person, and the
retried run is judged on its own: the earlier run's request (answered or lapsed for that run, which ended held) no
longer holds or rolls back every retry (review: the retried canary, healthy every period, ended held again). And a
hold's end is said as the canary really ended."""

from __future__ import annotations

import time
from typing import Any

from alert_rules_support import ShopBehaviour, ShopTrafficSource, run_canary
from control_support import control_service
from promotion_hold_support import DEP, REVENUE_DOWN, Person, requests, tolerant, trail
from suppression_support import alerting_stack
from test_promotion_hold_bounded import LOUD

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.remediation.models import ApprovalStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.traffic import VersionBehaviour


def test_a_retry_after_a_lapsed_request_is_promoted_on_its_own_healthy_run() -> None:
    alerting = {**LOUD, "remediation": {"approval_ttl_seconds": 60}}
    with alerting_stack({"revenue": tolerant()}, alerting) as (aws, _receivers):
        aws.follow_schedules(["AssessorFunction"])
        _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        assert [a.status for a in requests()] == [ApprovalStatus.EXPIRED]
        first = DeploymentRepository().get_deployment(DEP)
        assert first.decision == "held" and "before it expired" in str(first.decision_reason)

        versions = (target.stable_version, target.new_version)  # the dip was the business's, not the release's
        healthy = ShopTrafficSource(
            "revenue", "live", 3000, {v: VersionBehaviour() for v in versions}, seed=6,
            shop={v: ShopBehaviour() for v in versions},
        )  # fmt: skip
        aws.clock.listeners.append(healthy.on_clock)
        outcome = control_service(aws).apply(DEP, ControlRequest(verb="retry", actor="frank", reason="again"))
        assert outcome.changed, outcome.message
        deadline = time.monotonic() + 300  # the retried execution runs on the embedded AWS's own threads
        while not DeploymentRepository().get_deployment(DEP).status.is_terminal and time.monotonic() < deadline:
            time.sleep(0.05)
        healthy.active = False
        aws.invoker.drain()

        again = DeploymentRepository().get_deployment(DEP)
        assert again.decision == "promoted", again.decision_reason
        assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0
        assert len(trail(DEP, "promotion_refused")) == 1  # the first run's only


def test_a_hold_that_ends_in_an_abort_landing_as_the_alias_moves_is_said_to_end_aborted() -> None:
    """People reject the rollback request; a person's abort lands while the promotion then moves the alias: the
    abort wins, and the hold's end says so (review: it was audited "promoted" before the move)."""
    with alerting_stack({"revenue": tolerant()}, LOUD) as (aws, _receivers):
        person = Person(approve=False)
        aws.clock.listeners.append(person.on_clock)
        aborted: list[Any] = []

        def abort_now(params: dict[str, Any], **_: Any) -> None:
            routing = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
            if aborted or person.answered_at is None or routing or params.get("FunctionVersion") != "2":
                return
            aborted.append(control_service(aws).apply(DEP, ControlRequest(verb="abort", actor="dave", reason="no")))

        events = clients.client("lambda").meta.events
        events.register("before-parameter-build.lambda.UpdateAlias", abort_now, unique_id="hold-end-abort")
        try:
            _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
        finally:
            events.unregister("before-parameter-build.lambda.UpdateAlias", unique_id="hold-end-abort")
        record = DeploymentRepository().get_deployment(DEP)
        assert aborted and record.decision == "aborted", record.decision
        ended = trail(DEP, "promotion_hold_ended")
        assert [e.details["outcome"] for e in ended] == ["aborted"]
        assert not trail(DEP, "promoted")
        assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
