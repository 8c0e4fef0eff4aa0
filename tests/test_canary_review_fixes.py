"""Review of the canary and approval paths (suspected bugs), each through the real path: the canary state machine
on the embedded AWS, the canary step handler (CanaryController), and the control verbs (CanaryControlService)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from canary_flow_support import CONFIG, DEP
from canary_flow_support import in_background as _in_background

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import EmbeddedAws, sample_handler


def _config(tmp_path: Path, **service: Any) -> Path:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-api"].update(service)
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_canary_held_for_missing_evidence_says_no_conclusive_evidence_once(tmp_path: Path) -> None:
    judge = {"max_inconclusive_periods": 1, "on_no_evidence": "hold"}
    with EmbeddedAws(config_file=_config(tmp_path, judge=judge)) as aws:
        versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)  # no traffic: no evidence
        target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        request = {"deployment": {"deployment_id": DEP, "service": "checkout-api", "version": versions[1],
                                  "target": target.model_dump()}}  # fmt: skip
        worker, result = _in_background(aws, request)
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment(DEP)
        assert (deployment.status, deployment.decision) == (DeploymentStatus.STOPPED, "held")
        reason = deployment.decision_reason or ""
        assert reason == (
            "no conclusive evidence after 1 extra assessment at 10%: not enough evidence: 0 canary invocations "
            "in 0 of 4 periods, need 50 invocations in 3 periods"
        )
        assert LambdaTrafficShifter(target).current().function_version == target.stable_version
