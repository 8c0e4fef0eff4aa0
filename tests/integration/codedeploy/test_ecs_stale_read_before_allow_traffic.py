"""ECS blue/green through the real ``LifecycleHookFunction`` on the embedded AWS: the BeforeAllowTraffic hook (no
pre-traffic checks configured for it: ``hooks.ecs_check_hooks`` is AfterAllowTestTraffic's) arrives while
GetDeploymentTarget keeps answering a stale read that shows the AfterAllowTestTraffic this deployment already
answered, through every read again.

Review question: should it fail closed? It does, on purpose: green's production listener forwarding 0% to green is
what BeforeAllowTraffic looks like, but also what an AfterAllowTraffic whose traffic was moved back looks like, and
``Succeeded`` there would let CodeDeploy finish and later terminate the blue task set production is served by (the
Lambda path fails closed on the same situation). ``Failed`` at BeforeAllowTraffic costs a rollback of a release that
never took production traffic. CodeDeploy is never left waiting: the one answer goes out, and production stays on
blue. Once a read is current (or shows BeforeAllowTraffic) the hook succeeds without checks
(test_ecs_hook_stale_read_and_window.py)."""

from __future__ import annotations

from typing import Any

from test_ecs_hook_stale_read_and_window import StaleTarget, _hook

from deployguard.aws.elbv2 import forwarded_share
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER
from deployguard_local.ecs import TARGETS, create_ecs_deployment, create_ecs_service


def test_a_stale_read_surviving_every_read_at_before_allow_traffic_fails_closed_and_codedeploy_is_answered(
    embedded: Any,
) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    deployment_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg", "CodeDeployDefault.ECSAllAtOnce")
    TARGETS.enter(deployment_id, "AfterAllowTestTraffic")
    stale = StaleTarget()
    stale.remember()
    first, _ = _hook(embedded, deployment_id)
    assert (first["lifecycle_event"], first["status"]) == ("AfterAllowTestTraffic", "Succeeded")
    TARGETS.enter(deployment_id, "BeforeAllowTraffic")  # CodeDeploy's next hook: no traffic moved yet
    stale.serve()  # every read from now on answers the remembered one
    try:
        second, execution = _hook(embedded, deployment_id)  # asserts CodeDeploy got exactly one answer
    finally:
        stale.stop()
    assert stale.served == 3  # read, then again after 1 s and 2 s
    reason = second["reason"]
    assert (second["phase"], second["checks"], LEDGER.status_of(execution)) == ("unknown", [], "Failed"), reason
    assert "answered its AfterAllowTestTraffic under another hook execution: a stale read" in reason
    assert "its production listener forwards 0% to green" in reason
    assert "cannot tell which of BeforeAllowTraffic, AfterAllowTraffic this is" in reason
    assert forwarded_share([stack.prod_listener_arn], stack.green_target_group) == 0.0  # production stayed on blue
    verdicts = [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]
    assert [(e.details["execution_id"], e.details["phase"]) for e in verdicts][-1] == (execution, "unknown")
    assert verdicts[-1].reason.startswith("Failed: lifecycle event unknown, failing closed")  # audited as answered
