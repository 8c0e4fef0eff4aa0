"""A Lambda deployment's AfterAllowTraffic hook when someone moved the alias back to the old version after
AllowTraffic: CodeDeploy names no lifecycle event in the invocation and the alias routes nothing to the new
version, the look of a BeforeAllowTraffic. It is still AfterAllowTraffic (CodeDeploy's target says so, and
this deployment's BeforeAllowTraffic was answered already): never the pre-traffic checks and a Succeeded
that would have CodeDeploy report a release serving no traffic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import parse_config
from deployguard.hooks.lifecycle import LifecycleHook
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment, simulate_embedded_rollout
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


class _MovesTheAliasBack:
    """Someone's manual rollback: the first minute the alias routes all traffic to the new version, it is
    put back on the old one."""

    def __init__(self, target: LambdaTarget) -> None:
        self.target, self.done = target, False

    def on_clock(self, before: datetime, after: datetime) -> None:
        shifter = LambdaTrafficShifter(self.target)
        if not self.done and shifter.current().weight_of(self.target.new_version) == 1.0:
            shifter.rollback()
            self.done = True


def test_after_allow_traffic_with_the_alias_moved_back_fails_closed(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("back", "live", sample_handler)
    target = LambdaTarget(function_name="back", alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = LambdaTrafficSource("back", "live", 3000, {v: VersionBehaviour() for v in versions}, seed=3)
    embedded.clock.listeners.append(traffic.on_clock)
    mover = _MovesTheAliasBack(target)
    embedded.clock.listeners.append(mover.on_clock)
    result = simulate_embedded_rollout(embedded, target, application="back", assessor_schedule=False)
    assert mover.done
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
    verdicts = [e for e in DeploymentRepository().audit_trail(result.deployment_id) if e.action == "hook_verdict"]
    assert [v.details["phase"] for v in verdicts] == ["pre_traffic", "post_traffic"]
    assert "routes no traffic to version" in verdicts[1].reason
    assert "CodeDeploy shows AllowTraffic done" in verdicts[1].reason


def test_a_second_hook_of_a_deployment_whose_alias_routes_nothing_new_is_after_allow_traffic(embedded: Any) -> None:
    """Without CodeDeploy's target (unreadable or not created yet), this deployment's own trail tells: its
    BeforeAllowTraffic was answered under another hook execution."""
    versions = embedded.deploy_sample_function("trail", "live", sample_handler)
    target = LambdaTarget(function_name="trail", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "trail", "live")
    hook = LifecycleHook(parse_config("{}", "t.yaml"), DeploymentRepository(), EventPublisher(), local_mode=True,
                         sleep=lambda s: None)  # fmt: skip
    first = hook.handle({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": LEDGER.issue(deployment_id)},
                        lambda: 60_000)  # fmt: skip
    assert (first.phase, first.status) == ("pre_traffic", "Succeeded")
    second = hook.handle({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": LEDGER.issue(deployment_id)},
                         lambda: 60_000)  # fmt: skip
    assert (second.phase, second.lifecycle_event, second.status) == ("post_traffic", "AfterAllowTraffic", "Failed")
    assert "BeforeAllowTraffic was answered already" in second.reason, second.reason
