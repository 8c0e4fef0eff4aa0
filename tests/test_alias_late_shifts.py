"""Late ShiftTraffic attempts (Step Functions gave up on an attempt after its 60 s TimeoutSeconds and retried; the
first invocation runs on, up to 360 s) never leave the alias split under a record that moved on: through the
real CanaryStepFunction handler on the embedded AWS, whose UpdateAlias honours RevisionId as Lambda does."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alias_race_support import audit_actions, started, step
from botocore.exceptions import ClientError

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws, sample_handler


def test_embedded_update_alias_honours_revision_id(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        versions = aws.deploy_sample_function("svc", "live", sample_handler)
        lam = clients.client("lambda")
        read = lam.get_alias(FunctionName="svc", Name="live")["RevisionId"]
        weights = {"AdditionalVersionWeights": {versions[1]: 0.1}}
        lam.update_alias(FunctionName="svc", Name="live", FunctionVersion=versions[0], RoutingConfig=weights,
                         RevisionId=read)  # fmt: skip
        assert lam.get_alias(FunctionName="svc", Name="live")["RevisionId"] != read
        with pytest.raises(ClientError) as refused:
            lam.update_alias(FunctionName="svc", Name="live", FunctionVersion=versions[0], RevisionId=read)
        assert refused.value.response["Error"]["Code"] == "PreconditionFailedException"


def test_late_attempt_of_an_earlier_step_is_refused(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, s0 = started(aws, "dep-L")
        late = dict(s0)  # ShiftTraffic (step 1), attempt 1: timed out for Step Functions, still running
        s1, _ = step(aws, "shift", s0)  # attempt 2 did it
        s2, errored = step(aws, "shift", {**s1, "step_index": 1, "next": "advance"})  # Assess advanced: step 2
        assert not errored and s2["weight"] == s0["steps"][1]
        out, _ = step(aws, "shift", late)  # attempt 1 lands now: refused, the record's step in its answer
        assert (out["step_index"], out["weight"]) == (1, s2["weight"])
        shifter = LambdaTrafficShifter(target)
        alias = shifter.current()  # still step 2's traffic
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {"2": 0.5})
        record = DeploymentRepository().get_deployment("dep-L")
        assert (record.step_index, record.canary_weight) == (1, pytest.approx(s2["weight"] / 100))
        refused = [a for a in DeploymentRepository().audit_trail("dep-L") if a.action == "traffic_move_refused"]
        assert refused and "the record is at step 2" in refused[-1].reason
        assert audit_actions("dep-L").count("traffic_shifted") == 2


def test_late_attempt_landing_while_promote_records_is_refused(tmp_path: Path) -> None:
    """The late step-2 attempt reads the alias after Promote moved it to 100% new, before Promote recorded."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, s0 = started(aws, "dep-Z")
        s1, _ = step(aws, "shift", s0)
        late = {**s1, "step_index": 1, "next": "advance"}
        s2, _ = step(aws, "shift", late)
        shifter = LambdaTrafficShifter(target)
        fired: list[tuple[Any, bool]] = []

        def land_late(model: Any, **_: Any) -> None:
            if fired or model.name not in ("PutItem", "UpdateItem", "TransactWriteItems"):
                return
            if shifter.current().weight_of(target.new_version) == 1.0:  # Promote moved the alias, records now
                fired.append(step(aws, "shift", late))

        emitters = [clients.client("dynamodb").meta.events, clients.resource("dynamodb").meta.client.meta.events]
        for emitter in emitters:
            emitter.register("before-call.dynamodb", land_late, unique_id="late-shift")
        try:
            out, errored = step(aws, "promote", {**s2, "next": "promote"})
        finally:
            for emitter in emitters:
                emitter.unregister("before-call.dynamodb", unique_id="late-shift")
        assert fired and fired[0][1]  # the late attempt failed (its answer is no longer read)
        assert not errored and out["decision"] == "promoted"
        assert shifter.current().weight_of(target.new_version) == 1.0 and not shifter.current().additional_weights
        assert DeploymentRepository().get_deployment("dep-Z").decision == "promoted"
        assert "traffic_move_refused" in audit_actions("dep-Z")


def test_a_move_between_the_read_and_the_update_is_not_overwritten(tmp_path: Path) -> None:
    """Another writer moves the alias after ShiftTraffic read it: the UpdateAlias carries the RevisionId it read,
    Lambda refuses it, and the other writer's routing stays."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, s0 = started(aws, "dep-R")
        lam = clients.client("lambda")
        done = threading.Event()

        def move_first(params: dict[str, Any], **_: Any) -> None:
            if done.is_set() or "RevisionId" not in params:
                return
            done.set()  # e.g. Promote's move, not recorded yet
            lam.update_alias(FunctionName="svc", Name="live", FunctionVersion=target.new_version,
                             RoutingConfig={"AdditionalVersionWeights": {}})  # fmt: skip

        lam.meta.events.register("provide-client-params.lambda.UpdateAlias", move_first, unique_id="move-first")
        try:
            out, errored = step(aws, "shift", s0)
        finally:
            lam.meta.events.unregister("provide-client-params.lambda.UpdateAlias", unique_id="move-first")
        assert done.is_set() and errored and "moved since it was read" in str(out)
        alias = LambdaTrafficShifter(target).current()
        assert alias.function_version == target.new_version and not alias.additional_weights
        assert DeploymentRepository().get_deployment("dep-R").canary_weight == 0.0
        assert "traffic_move_refused" in audit_actions("dep-R")


def test_a_late_attempt_whose_move_landed_first_never_sets_the_record_back(tmp_path: Path) -> None:
    """The late step-1 attempt read the record and the alias before step 2 began, and its UpdateAlias landed
    first; step 2 then moved the alias over it and recorded. The late attempt's record write must not set the
    record back to step 1 under step 2's traffic."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, s0 = started(aws, "dep-W")
        s1, _ = step(aws, "shift", s0)
        advanced: list[tuple[Any, bool]] = []

        def step_two_runs_now(**_: Any) -> None:
            if not advanced:
                advanced.append(("", False))
                advanced[0] = step(aws, "shift", {**s1, "step_index": 1, "next": "advance"})

        lam = clients.client("lambda")
        lam.meta.events.register("after-call.lambda.UpdateAlias", step_two_runs_now, unique_id="step-two")
        try:
            out, errored = step(aws, "shift", s0)  # step 1 again: the late attempt
        finally:
            lam.meta.events.unregister("after-call.lambda.UpdateAlias", unique_id="step-two")
        s2, step_two_errored = advanced[0]
        assert not step_two_errored and s2["weight"] == s0["steps"][1]
        assert not errored and (out["step_index"], out["weight"]) == (1, s2["weight"])
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {"2": 0.5})
        record = DeploymentRepository().get_deployment("dep-W")
        assert (record.step_index, record.canary_weight) == (1, pytest.approx(0.5))
        assert "traffic_move_refused" in audit_actions("dep-W")
