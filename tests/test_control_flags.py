"""Pause and the other flag verbs through the real canary state machine on the embedded AWS: a pause holds even
after a promote request or while Assess runs, and no flag is accepted once the execution has ended."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from canary_flow_support import CONFIG, DEP
from canary_flow_support import ask as _ask
from canary_flow_support import config_with_approval as _config
from canary_flow_support import in_background as _in_background
from canary_flow_support import prepare as _prepare
from canary_flow_support import until as _until

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import canary as canary_module
from deployguard.workflows.control import ControlOutcome
from deployguard_local.emulator import EmbeddedAws, sample_handler


def _at_minute(aws: Any, minute: float, action: Callable[[], object]) -> None:
    start, fired = aws.clock(), []

    def listener(before: Any, after: Any) -> None:
        if not fired and (after - start).total_seconds() >= minute * 60:
            fired.append(True)
            action()

    aws.clock.listeners.append(listener)


def _actions(*names: str) -> list[str]:
    return [e.action for e in DeploymentRepository().audit_trail(DEP) if e.action in names]


def _titles() -> list[str]:
    return [e.title for e in DeploymentRepository().events(DEP)]


def test_a_pause_after_a_promote_holds(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=_config(tmp_path, approval=False)) as aws:
        request, _target = _prepare(aws)
        said: list[ControlOutcome] = []
        _at_minute(aws, 1, lambda: said.extend([_ask(aws, "promote"), _ask(aws, "pause", by="bob")]))
        _at_minute(aws, 30, lambda: said.append(_ask(aws, "abort", by="bob")))  # held for 29 minutes: enough
        worker, result = _in_background(aws, request)
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        assert said[1].changed and "promote request is withdrawn" in said[1].message
        deployment = DeploymentRepository().get_deployment(DEP)
        assert deployment.decision == "aborted" and not _actions("promoted")
        shifted = [
            e.details["weight"] for e in DeploymentRepository().audit_trail(DEP) if e.action == "traffic_shifted"
        ]
        assert shifted == [10]


@pytest.mark.parametrize("when", ["advance", "promote"])
def test_a_pause_landing_while_assess_runs_holds_the_traffic(when: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedAws(config_file=CONFIG) as aws:
        request, target = _prepare(aws)
        original = canary_module.CanaryController.assess
        paused: list[dict[str, float]] = []

        def assess(self: Any, state: Any, awaiting: bool = False) -> Any:
            out = original(self, state, awaiting)
            if out.next == when and not paused:  # the pause lands after Assess read the record
                paused.append(LambdaTrafficShifter(target).current().additional_weights)
                _ask(aws, "pause", by="bob")
                _at_minute(aws, 20, lambda: _ask(aws, "abort", by="bob"))
            return out

        monkeypatch.setattr(canary_module.CanaryController, "assess", assess)
        worker, result = _in_background(aws, request)
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        assert DeploymentRepository().get_deployment(DEP).decision == "aborted"  # never promoted
        assert not _actions("promoted") and _actions("traffic_held")
        shifted = [
            e.details["weight"] for e in DeploymentRepository().audit_trail(DEP) if e.action == "traffic_shifted"
        ]
        assert shifted == ([10] if when == "advance" else [10, 25, 50])


def test_flag_verbs_are_refused_once_the_execution_has_ended() -> None:
    from deployguard.aws import clients

    with EmbeddedAws(config_file=CONFIG) as aws:
        request, target = _prepare(aws)
        worker, _result = _in_background(aws, request)
        running = _until(lambda: (d := DeploymentRepository().find_deployment(DEP)) and d.canary_weight > 0 and d)
        clients.client("stepfunctions").stop_execution(executionArn=running.execution_arn, error="Ops", cause="x")
        worker.join(30)
        for verb in ("pause", "promote", "skip_analysis"):
            with pytest.raises(ControlStateError, match=r"execution has ended .*abort"):
                _ask(aws, verb)
        assert _ask(aws, "abort", by="bob").changed
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_missing_evidence_does_not_end_a_paused_canary(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-api"]["judge"] = {"max_inconclusive_periods": 1, "on_no_evidence": "rollback"}
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with EmbeddedAws(config_file=path) as aws:
        versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)  # no traffic: no evidence
        target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        request = {"deployment": {"deployment_id": DEP, "service": "checkout-api", "version": versions[1],
                                  "target": target.model_dump()}}  # fmt: skip
        seen: list[Any] = []
        _at_minute(aws, 1, lambda: _ask(aws, "pause", by="bob"))
        _at_minute(aws, 30, lambda: (seen.append(DeploymentRepository().get_deployment(DEP)), _ask(aws, "resume")))
        worker, result = _in_background(aws, request)
        worker.join(120)
        assert result["status"] == "SUCCEEDED"
        assert seen and not seen[0].status.is_terminal and seen[0].canary_weight == 0.1  # held while paused
        deployment = DeploymentRepository().get_deployment(DEP)
        assert deployment.decision == "rolled_back" and "no conclusive evidence" in (deployment.decision_reason or "")
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version
