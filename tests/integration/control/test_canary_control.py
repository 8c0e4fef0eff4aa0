"""Manual control of canaries through the real state machine on the embedded AWS: people's
requests arrive at chosen simulated minutes (clock listeners), the canary honours them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from control_support import canary_in_flight, control_service, while_the_alias_moves_once

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError, InvalidEventError, StepFunctionsError
from deployguard.models import Deployment, DeploymentStatus, EventType, LambdaTarget, Severity
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest, EmergencyRollbackRequest
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


def _ask(aws: Any, deployment_id: str, verb: str, by: str = "alice") -> Any:
    return control_service(aws).apply(
        deployment_id, ControlRequest(verb=verb, actor=by, reason=f"{verb} from the test")
    )  # type: ignore[arg-type]


def _at_minute(aws: Any, minute: float, action: Callable[[], object]) -> None:
    """Run ``action`` once the simulated clock has moved ``minute`` minutes from now."""
    start = aws.clock()
    fired: list[bool] = []

    def listener(before: Any, after: Any) -> None:
        if not fired and (after - start).total_seconds() >= minute * 60:
            fired.append(True)
            action()

    aws.clock.listeners.append(listener)


def _prepare(aws: Any, name: str, regress_at: int | None = None) -> tuple[dict[str, Any], LambdaTarget]:
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    bad = VersionBehaviour(regress_at=regress_at, regressed_error_rate=0.10, regressed_p99_ms=2000)
    behaviours = {versions[0]: VersionBehaviour(), versions[1]: bad if regress_at is not None else VersionBehaviour()}
    aws.clock.listeners.append(LambdaTrafficSource(name, "live", 2000, behaviours, seed=5).on_clock)
    request = {
        "deployment": {
            "deployment_id": f"dep-{name}",
            "service": name,
            "version": versions[1],
            "target": target.model_dump(),
        }
    }
    return request, target


def _run(aws: Any, request: dict[str, Any]) -> dict[str, Any]:
    execution = aws.run_state_machine("CanaryStateMachine", request)
    aws.invoker.drain()
    return execution


def _shifts(deployment_id: str) -> list[float]:
    return [
        e.details["weight"] for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "traffic_shifted"
    ]


@pytest.fixture
def aws() -> Any:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def test_pause_holds_the_weight_until_resumed(aws: Any) -> None:
    request, _target = _prepare(aws, "checkout-api")
    _at_minute(aws, 1, lambda: _ask(aws, "dep-checkout-api", "pause"))
    held_at: list[list[float]] = []
    _at_minute(aws, 8, lambda: (held_at.append(_shifts("dep-checkout-api")), _ask(aws, "dep-checkout-api", "resume")))
    assert _run(aws, request)["status"] == "SUCCEEDED"
    assert held_at == [[10]]  # 8 minutes at 10% while the step bakes 3: paused
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert deployment.decision == "promoted" and _shifts("dep-checkout-api") == [10, 25, 50]
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert [(e.action, e.actor) for e in trail if e.action.startswith("control_")] == [
        ("control_pause", "alice"),
        ("control_resume", "alice"),
    ]
    events = [e for e in DeploymentRepository().events("dep-checkout-api") if e.event_type == EventType.CONTROL_ACTION]
    assert [e.details["verb"] for e in events] == ["pause", "resume"]


def test_a_failing_verdict_rolls_back_a_paused_canary(aws: Any) -> None:
    request, target = _prepare(aws, "payments-api", regress_at=3)
    _at_minute(aws, 1, lambda: _ask(aws, "dep-payments-api", "pause"))
    assert _run(aws, request)["status"] == "SUCCEEDED"
    deployment = DeploymentRepository().get_deployment("dep-payments-api")
    assert deployment.status == DeploymentStatus.ROLLED_BACK and deployment.control.paused
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_promote_skips_the_remaining_steps(aws: Any) -> None:
    request, target = _prepare(aws, "checkout-api")
    _at_minute(aws, 1, lambda: _ask(aws, "dep-checkout-api", "promote"))
    assert _run(aws, request)["status"] == "SUCCEEDED"
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert deployment.decision == "promoted" and _shifts("dep-checkout-api") == [10]
    assert LambdaTrafficShifter(target).current().function_version == target.new_version
    again = _ask(aws, "dep-checkout-api", "promote")  # idempotent: nothing changes, nothing announced
    assert not again.changed and again.message == "already promoted"
    with pytest.raises(ControlStateError, match="only to a canary in progress"):
        _ask(aws, "dep-checkout-api", "pause")


def test_abort_rolls_back_at_once_and_the_execution_ends(aws: Any) -> None:
    request, target = _prepare(aws, "checkout-api")
    seen: list[Any] = []

    def abort() -> None:
        seen.append(LambdaTrafficShifter(target).current().additional_weights)
        seen.append(_ask(aws, "dep-checkout-api", "abort", by="bob"))
        seen.append(LambdaTrafficShifter(target).current())

    _at_minute(aws, 4, abort)
    assert _run(aws, request)["status"] == "SUCCEEDED"
    assert seen[0] == {target.new_version: 0.25}  # a canary in flight at 25%
    assert seen[1].changed and seen[2].function_version == target.stable_version and not seen[2].additional_weights
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert _shifts("dep-checkout-api") == [10, 25]  # nothing shifted after the abort
    assert "aborted by bob" in (deployment.decision_reason or "")
    assert not _ask(aws, "dep-checkout-api", "abort").changed


def test_skip_analysis_promotes_a_failing_canary_loudly(aws: Any) -> None:
    request, _target = _prepare(aws, "payments-api", regress_at=1)
    _at_minute(aws, 0.5, lambda: _ask(aws, "dep-payments-api", "skip_analysis"))
    assert _run(aws, request)["status"] == "SUCCEEDED"
    deployment = DeploymentRepository().get_deployment("dep-payments-api")
    assert deployment.decision == "promoted" and _shifts("dep-payments-api") == [10, 25, 50]
    skipped = [e for e in DeploymentRepository().events("dep-payments-api") if e.event_type == EventType.CONTROL_ACTION]
    assert skipped[0].severity == Severity.CRITICAL and "ANALYSIS SKIPPED" in skipped[0].message
    assessed = [e for e in DeploymentRepository().audit_trail("dep-payments-api") if e.action == "assessed"]
    assert any(e.details["decision"] == "failing" for e in assessed)  # the verdicts are still recorded


def test_approval_before_full_traffic_waits_on_a_task_token(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-api"]["approval_before_full_traffic"] = True
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with EmbeddedAws(config_file=path) as aws:
        request, target = _prepare(aws, "checkout-api")
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(_run(aws, request)), daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the execution waits on the token in real time
            found = DeploymentRepository().find_deployment("dep-checkout-api")
            if found is not None and found.control.awaiting_approval:
                break
            worker.join(0.05)
        assert found is not None and found.control.awaiting_approval and found.control.approval_token
        assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.5}
        with _throttled_task_answers(), pytest.raises(StepFunctionsError, match="Throttling"):
            _ask(aws, "dep-checkout-api", "approve", by="carol")  # a transient failure: approving again works
        waiting = DeploymentRepository().get_deployment("dep-checkout-api")
        assert waiting.control.awaiting_approval and waiting.control.approval_token == found.control.approval_token
        assert _ask(aws, "dep-checkout-api", "approve", by="carol").changed
        worker.join(60)
        assert result["status"] == "SUCCEEDED"
        deployment = DeploymentRepository().get_deployment("dep-checkout-api")
        assert deployment.decision == "promoted" and not deployment.control.awaiting_approval
        assert LambdaTrafficShifter(target).current().function_version == target.new_version


@contextmanager
def _throttled_task_answers() -> Iterator[None]:
    """Step Functions refuses SendTaskSuccess for a while (botocore before-call hook)."""
    from botocore.exceptions import ClientError

    from deployguard.aws import clients

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "SendTaskSuccess")

    events = clients.client("stepfunctions").meta.events
    events.register("before-call.states.SendTaskSuccess", refuse, unique_id="test-throttled-answers")
    try:
        yield
    finally:
        events.unregister("before-call.states.SendTaskSuccess", unique_id="test-throttled-answers")


def test_a_failed_approval_leaves_the_canary_waiting_and_is_audited(aws: Any) -> None:
    from deployguard.models import CanaryControl

    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(
        function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
    )
    waiting = CanaryControl(awaiting_approval=True, approval_token="tok-1")
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-P", service="checkout-api", environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.5, control=waiting)
    )  # fmt: skip
    with _throttled_task_answers():
        for verb in ("approve", "promote"):  # promote, for a canary waiting for approval, is the approval
            with pytest.raises(StepFunctionsError, match="Throttling"):
                _ask(aws, "dep-P", verb, by="carol")
    deployment = DeploymentRepository().get_deployment("dep-P")
    assert deployment.control.awaiting_approval and deployment.control.approval_token == "tok-1"
    assert _ask(aws, "dep-P", "abort", by="bob").changed  # its SendTaskFailure fails (no such token): rolled back
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    with pytest.raises(ControlStateError, match="not waiting for approval"):
        _ask(aws, "dep-P", "approve", by="carol")
    trail = [e for e in DeploymentRepository().audit_trail("dep-P") if e.action.startswith("control_")]
    assert [(e.action, e.actor, e.details["outcome"], e.details["changed"]) for e in trail] == [
        ("control_approve", "carol", "failed", False),
        ("control_promote", "carol", "failed", False),
        ("control_abort", "bob", "done", True),
        ("control_approve", "carol", "refused", False),
    ]
    assert "ThrottlingException" in trail[0].details["result"]

    # two people approve at once: the second's SendTaskSuccess finds the token answered; nothing failed
    waiting = CanaryControl(awaiting_approval=True, approval_token="tok-2")
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-P2", service="checkout-api", environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.5, control=waiting)
    )  # fmt: skip

    def answered_first(d: Deployment) -> None:  # what the first approval (carol's) writes
        d.control.awaiting_approval, d.control.approval_token = False, None
        d.control.promote_requested, d.control.approved_by = True, "carol"

    from botocore.exceptions import ClientError

    from deployguard.aws import clients

    def first_approval_wins(**_: Any) -> None:
        DeploymentRepository().update_deployment("dep-P2", answered_first)
        raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "answered"}}, "SendTaskSuccess")

    events = clients.client("stepfunctions").meta.events
    events.register("before-call.states.SendTaskSuccess", first_approval_wins, unique_id="test-first-approval")
    try:
        second = _ask(aws, "dep-P2", "approve", by="dan")
    finally:
        events.unregister("before-call.states.SendTaskSuccess", unique_id="test-first-approval")
    assert (second.changed, second.message) == (False, "already approved")


def test_emergency_rollback_returns_the_service_to_its_last_good_version(aws: Any) -> None:
    request, target = _prepare(aws, "checkout-api")
    assert _run(aws, request)["status"] == "SUCCEEDED"
    service = control_service(aws)
    ask = {"service": "checkout-api", "actor": "dave", "reason": "checkout errors after the release"}
    with pytest.raises(InvalidEventError, match="confirm"):
        service.emergency_rollback(EmergencyRollbackRequest(**ask, confirm="checkout"))
    promoted_at = DeploymentRepository().get_deployment("dep-checkout-api").ended_at
    aws.clock.advance(3 * 3600)  # the release ran three hours before it was rolled back
    outcome = service.emergency_rollback(EmergencyRollbackRequest(**ask, confirm="checkout-api"))
    assert (outcome.changed, outcome.from_version, outcome.to_version) == (
        True,
        target.new_version,
        target.stable_version,
    )
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    again = service.emergency_rollback(
        EmergencyRollbackRequest(**ask, confirm="checkout-api", from_version=target.new_version)
    )
    assert not again.changed and again.to_version == target.stable_version
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert deployment.decision == "emergency_rolled_back"
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert [(e.actor, e.details["to"]) for e in trail if e.action == "emergency_rollback"] == [
        ("dave", target.stable_version)
    ]
    with pytest.raises(ControlStateError, match="nothing to roll back"):
        service.emergency_rollback(EmergencyRollbackRequest(**ask, confirm="checkout-api"))
    from deployguard.readmodels import DeploymentReader

    traffic = DeploymentReader(DeploymentRepository()).history("dep-checkout-api").traffic  # the console's chart
    assert [(s.at, s.weight) for s in traffic[-2:]] == [(promoted_at, 1.0), (aws.clock(), 0.0)]


def test_codedeploy_deployments_map_abort_to_stop_with_rollback(aws: Any) -> None:
    from deployguard_local.codedeploy import LEDGER, _moto_deployment, create_lambda_deployment

    versions = aws.deploy_sample_function("search-api", "live", sample_handler)
    target = LambdaTarget(function_name="search-api", alias="live", stable_version=versions[0], new_version=versions[1])
    codedeploy_id = create_lambda_deployment(target, "search-api", "search-api-live")
    DeploymentRepository().create_deployment(
        Deployment(
            deployment_id="dg-codedeploy-1",
            service="search-api",
            environment="production",
            version=versions[1],
            target=target,
            status=DeploymentStatus.IN_PROGRESS,
            driver="codedeploy",
            codedeploy_deployment_id=codedeploy_id,
        )
    )
    with pytest.raises(ControlStateError, match="not waiting to reroute traffic") as refused:
        _ask(aws, "dg-codedeploy-1", "promote")  # a Lambda canary never waits: ContinueDeployment refuses
    assert str(refused.value).endswith("(CodeDeploy: NotInReadyState)")  # its code, not its message (ARNs)
    _moto_deployment(codedeploy_id).ready_wait = True  # as a blue/green deployment waiting to reroute
    assert _ask(aws, "dg-codedeploy-1", "promote").changed and LEDGER.continues[-1] == codedeploy_id
    assert _ask(aws, "dg-codedeploy-1", "abort").changed
    stop = LEDGER.stops[-1]
    assert (stop.deployment_id, stop.auto_rollback, stop.accepted) == (codedeploy_id, True, True)
    # why it stopped stays on the record: the recorder puts CodeDeploy's STOP after it
    assert (
        DeploymentRepository().get_deployment("dg-codedeploy-1").decision_reason
        == "aborted by alice: abort from the test"
    )
    again = _ask(aws, "dg-codedeploy-1", "abort")  # CodeDeploy: already completed; nothing changes
    assert not again.changed and "already completed" in again.message
    with pytest.raises(ControlStateError, match="not available for CodeDeploy-driven"):
        _ask(aws, "dg-codedeploy-1", "pause")
    trail = DeploymentRepository().audit_trail("dg-codedeploy-1")
    assert [(e.action, e.details["changed"], e.details["outcome"]) for e in trail] == [
        ("control_promote", False, "refused"),  # refused attempts are in the trail too
        ("control_promote", True, "done"),
        ("control_abort", True, "done"),
        ("control_abort", False, "unchanged"),  # stopped with rollback already: nothing to change
        ("control_pause", False, "refused"),
    ]


def test_the_cli_runs_the_same_verbs(aws: Any, capsys: Any) -> None:
    from deployguard_local.cli import main

    request, target = _prepare(aws, "checkout-api")
    assert _run(aws, request)["status"] == "SUCCEEDED"
    by = ["--by", "erin", "--reason", "bad release"]
    assert main(["control", "pause", "dep-checkout-api", *by]) == 2
    refused = capsys.readouterr().err
    assert "is succeeded (promoted): pause applies only to a canary in progress" in refused
    assert main(["control", "rollback", "checkout-api", *by, "--confirm", "checkout-api"]) == 0
    said = capsys.readouterr()  # without --from-version: the live version is read, shown, and keys the rollback
    assert f"back on version {target.stable_version}" in said.out
    assert f"version {target.new_version} is live (--from-version {target.new_version} repeats harmlessly)" in said.err
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    repeat = ["--confirm", "checkout-api", "--from-version", target.new_version]
    assert main(["control", "rollback", "checkout-api", *by, *repeat]) == 0
    assert "nothing changed" in capsys.readouterr().out
    trail = DeploymentRepository().audit_trail("dep-checkout-api")  # who the CLI's credentials are, next to --by
    acted = [(e.action, e.actor, e.details.get("aws_identity")) for e in trail if e.actor == "erin"]
    assert [a for a, _, _ in acted] == ["control_pause", "emergency_rollback"]
    assert all(arn and arn.startswith("arn:aws:") for _, _, arn in acted), acted


def test_retry_starts_a_held_canary_step_again(aws: Any) -> None:
    versions = aws.deploy_sample_function("quiet-api", "live", sample_handler)
    target = LambdaTarget(function_name="quiet-api", alias="live", stable_version=versions[0], new_version=versions[1])
    quiet = LambdaTrafficSource("quiet-api", "live", 0, {v: VersionBehaviour() for v in versions}, seed=7)
    aws.clock.listeners.append(quiet.on_clock)
    request = {
        "deployment": {
            "deployment_id": "dep-quiet-api",
            "service": "quiet-api",
            "version": versions[1],
            "target": target.model_dump(),
        }
    }
    assert _run(aws, request)["status"] == "SUCCEEDED"
    held = DeploymentRepository().get_deployment("dep-quiet-api")
    assert (held.status, held.decision) == (DeploymentStatus.STOPPED, "held")  # no traffic is no evidence
    with pytest.raises(ControlStateError, match="only to a canary in progress"):
        _ask(aws, "dep-quiet-api", "pause")
    aws.clock.listeners.remove(quiet.on_clock)
    busy = LambdaTrafficSource("quiet-api", "live", 2000, {v: VersionBehaviour() for v in versions}, seed=8)
    aws.clock.listeners.append(busy.on_clock)
    outcome = _ask(aws, "dep-quiet-api", "retry", by="frank")
    assert outcome.changed and "step 1 starts again" in outcome.message
    assert not _ask(aws, "dep-quiet-api", "retry").changed  # already running again
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the new execution runs on moto's interpreter thread
        again = DeploymentRepository().get_deployment("dep-quiet-api")
        if again.status.is_terminal:
            break
        time.sleep(0.05)
    aws.invoker.drain()
    again = DeploymentRepository().get_deployment("dep-quiet-api")
    assert (again.status, again.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    assert LambdaTrafficShifter(target).current().function_version == target.new_version


def _abort_when_alias_moves(aws: Any, deployment_id: str, moving: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """A person's abort lands while a task of the state machine is moving the alias (botocore's
    before-parameter-build on UpdateAlias): the abort runs first, then the task's own move goes on."""
    from deployguard.aws import clients

    outcomes: list[Any] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not outcomes and moving(params):
            outcomes.append(None)  # the abort's own UpdateAlias calls come back through here
            outcomes[0] = _ask(aws, deployment_id, "abort", by="bob")

    clients.client("lambda").meta.events.register(
        "before-parameter-build.lambda.UpdateAlias", hook, unique_id="test-abort-in-flight"
    )
    return outcomes


def _no_abort_hook() -> None:
    from deployguard.aws import clients

    clients.client("lambda").meta.events.unregister(
        "before-parameter-build.lambda.UpdateAlias", unique_id="test-abort-in-flight"
    )


def test_an_abort_landing_while_promote_moves_the_alias_is_not_undone(aws: Any) -> None:
    request, target = _prepare(aws, "checkout-api")

    def promoting(p: dict[str, Any]) -> bool:
        return p["FunctionVersion"] == target.new_version and not p["RoutingConfig"]["AdditionalVersionWeights"]

    aborted = _abort_when_alias_moves(aws, "dep-checkout-api", promoting)
    try:
        assert _run(aws, request)["status"] == "SUCCEEDED"
    finally:
        _no_abort_hook()
    assert aborted[0].changed
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert "promoted" not in [e.action for e in trail] and "traffic_move_undone" in [e.action for e in trail]
    events = [e.event_type for e in DeploymentRepository().events("dep-checkout-api")]
    assert EventType.PROMOTION_COMPLETED not in events and EventType.DEPLOYMENT_COMPLETED not in events


def test_an_abort_landing_while_a_step_shifts_stops_the_canary(aws: Any) -> None:
    request, target = _prepare(aws, "checkout-api")
    to_25 = lambda p: p["RoutingConfig"]["AdditionalVersionWeights"] == {target.new_version: 0.25}  # noqa: E731
    aborted = _abort_when_alias_moves(aws, "dep-checkout-api", to_25)
    try:
        assert _run(aws, request)["status"] == "SUCCEEDED"
    finally:
        _no_abort_hook()
    assert aborted[0].changed
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert deployment.canary_weight == 0.0
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
    assert _shifts("dep-checkout-api") == [10]  # the 25% step was undone, never recorded; nothing after it


def test_promote_after_an_abort_leaves_the_alias_alone(aws: Any) -> None:
    """The abort lands between Assess (next: promote) and the Promote task."""
    from deployguard.workflows.canary import CanaryController, CanaryState

    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(
        function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
    )
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-A", service="checkout-api", environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.5)
    )  # fmt: skip
    LambdaTrafficShifter(target).shift(0.5)
    assert _ask(aws, "dep-A", "abort", by="bob").changed
    service = control_service(aws)
    controller = CanaryController(service.config, service.repository, service.publisher)
    state = CanaryState(
        deployment_id="dep-A", step_index=2, steps=[10, 25, 50], weight=50, next="promote", target=target
    )
    out = controller.promote(state)
    assert (out.next, out.decision, out.weight) == ("done", "aborted", 0.0)
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
    assert DeploymentRepository().get_deployment("dep-A").status == DeploymentStatus.ROLLED_BACK


def test_verbs_are_refused_while_the_canary_rolls_back(aws: Any, capsys: Any) -> None:
    """Assess decided to roll back; while the alias moves back, people's verbs are refused (409 on the API,
    exit 2 from the CLI) rather than accepted and never honoured; abort stays available."""
    from deployguard.aws import clients
    from deployguard_local.cli import main

    request, target = _prepare(aws, "payments-api", regress_at=3)
    refused: list[str] = []
    codes: list[int] = []

    def while_rolling_back(params: dict[str, Any], **_: Any) -> None:
        moving_back = (
            params["FunctionVersion"] == target.stable_version
            and not params["RoutingConfig"]["AdditionalVersionWeights"]
        )
        if not moving_back or codes:
            return
        codes.append(main(["control", "promote", "dep-payments-api", "--by", "erin", "--reason", "looks fine"]))
        for verb in ("pause", "skip_analysis"):
            try:
                refused.append(f"accepted: {_ask(aws, 'dep-payments-api', verb).message}")
            except ControlStateError as refusal:
                refused.append(str(refusal))

    events = clients.client("lambda").meta.events
    events.register("before-parameter-build.lambda.UpdateAlias", while_rolling_back, unique_id="test-rolling-back")
    try:
        assert _run(aws, request)["status"] == "SUCCEEDED"
    finally:
        events.unregister("before-parameter-build.lambda.UpdateAlias", unique_id="test-rolling-back")
    assert codes == [2] and "is rolling back" in capsys.readouterr().err
    assert len(refused) == 2 and all("is rolling back" in r for r in refused), refused
    deployment = DeploymentRepository().get_deployment("dep-payments-api")
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert not deployment.control.promote_requested and not deployment.control.skip_analysis
    trail = [e for e in DeploymentRepository().audit_trail("dep-payments-api") if e.action.startswith("control_")]
    assert [(e.action, e.details["outcome"]) for e in trail] == [
        ("control_promote", "refused"),
        ("control_pause", "refused"),
        ("control_skip_analysis", "refused"),
    ]


def test_an_abort_that_finds_the_canary_ended_changes_nothing(aws: Any) -> None:
    """Two aborts at once: the second to record says changed false and announces nothing; an abort racing
    the canary's own rollback keeps the judge's reason."""
    from deployguard.workflows.canary import CanaryController

    canary_in_flight(aws, "payments-api")
    second: list[Any] = []
    with while_the_alias_moves_once(lambda: second.append(_ask(aws, "dep-payments-api", "abort", "bob"))):
        first = _ask(aws, "dep-payments-api", "abort", by="alice")
    assert (second[0].changed, first.changed) == (True, False)
    deployment = DeploymentRepository().get_deployment("dep-payments-api")
    assert deployment.decision_reason == "aborted by bob: abort from the test"
    completed = [
        e for e in DeploymentRepository().events("dep-payments-api") if e.event_type == EventType.ROLLBACK_COMPLETED
    ]
    assert len(completed) == 1

    target = canary_in_flight(aws, "checkout-api")
    service = control_service(aws)
    controller = CanaryController(service.config, service.repository, service.publisher)
    state = {
        "deployment_id": "dep-checkout-api", "step_index": 1, "steps": [10, 25, 50], "weight": 25,
        "next": "rollback", "reason": "error rate 8% vs 0.1%", "target": target.model_dump(mode="json"),
    }  # fmt: skip
    with while_the_alias_moves_once(lambda: controller.rollback(state)):
        late = _ask(aws, "dep-checkout-api", "abort", by="alice")
    assert not late.changed and "already rolled back" in late.message
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.decision, deployment.decision_reason) == ("rolled_back", "error rate 8% vs 0.1%")
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version


def test_abort_of_a_codedeploy_deployment_that_succeeded_is_refused(aws: Any, capsys: Any) -> None:
    """StopDeployment refuses a finished deployment: nothing to change if it was stopped or rolled back, but one
    that succeeded put its version live, and "nothing changed" would hide that: exit 2, with the way back."""
    from deployguard_local.cli import main
    from deployguard_local.codedeploy import _set_state, create_lambda_deployment

    versions = aws.deploy_sample_function("search-api", "live", sample_handler)
    target = LambdaTarget(function_name="search-api", alias="live", stable_version=versions[0], new_version=versions[1])
    codedeploy_id = create_lambda_deployment(target, "search-api", "search-api-live")
    _set_state(codedeploy_id, "Succeeded", ended=True)
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dg-codedeploy-done", service="search-api", environment="production",
                   version=versions[1], target=target, status=DeploymentStatus.SUCCEEDED, decision="promoted",
                   driver="codedeploy", codedeploy_deployment_id=codedeploy_id, ended_at=aws.clock())
    )  # fmt: skip
    assert main(["control", "abort", "dg-codedeploy-done", "--by", "erin", "--reason", "too late"]) == 2
    err = capsys.readouterr().err
    assert f"CodeDeploy deployment {codedeploy_id} has already succeeded" in err
    assert "deployguard control rollback search-api" in err
    trail = DeploymentRepository().audit_trail("dg-codedeploy-done")
    assert [(e.action, e.details["outcome"]) for e in trail] == [("control_abort", "refused")]
