"""The recorder on moto: duplicates and out-of-order deliveries, rollbacks, long runs, statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moto_table import TABLE, RecordingPublisher

from deployguard.aws.codedeploy import CodeDeployDeployment, CodeDeployGateway, appspec_of, strategy_of
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import parse_config
from deployguard.models import DeploymentStatus, EventType, LambdaTarget, Phase, Strategy
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.recorder import (
    INSTANCE_STATE_CHANGE,
    DeploymentRecorder,
    StateChangeDetail,
    service_for,
)
from deployguard_local.codedeploy import create_lambda_deployment

EVENTS = Path(__file__).resolve().parents[3] / "events"


def _recorder(publisher: RecordingPublisher, config: str = "{}", gateway: Any = None) -> DeploymentRecorder:
    return DeploymentRecorder(parse_config(config, "t.yaml"), DeploymentRepository(TABLE), publisher, gateway)


def _detail(deployment_id: str, state: str, **extra: Any) -> StateChangeDetail:
    return StateChangeDetail.model_validate(
        {"deploymentId": deployment_id, "application": "orders", "deploymentGroup": "live", "state": state, **extra}
    )


def test_duplicates_and_late_events_do_not_corrupt_the_record(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher)
    start = recorder.record(_detail(deployment_id, "START"), sim_clock())
    assert start.changed and start.metric_points() == [("DeploymentsStarted", "Count", 1.0)]
    assert not recorder.record(_detail(deployment_id, "START"), sim_clock()).changed
    sim_clock.advance(420)
    done = recorder.record(_detail(deployment_id, "SUCCESS"), sim_clock())
    assert done.status == DeploymentStatus.SUCCEEDED and done.duration_seconds == 420
    assert ("DeploymentSuccessRate", "Percent", 100.0) in done.metric_points()
    assert ("DeploymentDuration", "Seconds", 420.0) in done.metric_points()
    again = recorder.record(_detail(deployment_id, "SUCCESS"), sim_clock())
    late = recorder.record(_detail(deployment_id, "READY"), sim_clock())
    assert not again.changed and again.metric_points() == [] and not late.changed
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.status == DeploymentStatus.SUCCEEDED and record.phase == Phase.MONITORING
    assert [p.reason for p in record.phase_history] == [
        "recorded from CodeDeploy",
        "CodeDeploy START",
        "CodeDeploy READY (after the recorded end)",  # kept in time order, the end untouched
        "CodeDeploy SUCCESS",
    ]
    assert (record.driver, record.strategy, record.codedeploy_group) == ("codedeploy", Strategy.CANARY, "live")
    assert [e.event_type for e in publisher.events] == [
        EventType.DEPLOYMENT_STARTED,
        EventType.CANARY_COMPLETED,  # a CodeDeploy canary (LambdaCanary10Percent5Minutes), once
        EventType.DEPLOYMENT_COMPLETED,
    ]
    actions = [e.action for e in DeploymentRepository(TABLE).audit_trail(deployment_id)]
    assert actions.count("codedeploy_start") == 1 and actions.count("codedeploy_success") == 1
    assert actions.count("notification") == 3


def test_success_before_start_keeps_the_end(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    sim_clock.advance(300)
    recorder = _recorder(publisher)
    recorder.record(_detail(deployment_id, "SUCCESS"), sim_clock())
    late_start = recorder.record(_detail(deployment_id, "START"), sim_clock())
    assert late_start.status == DeploymentStatus.SUCCEEDED and not late_start.changed
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).duration_seconds == 300  # from createTime


def test_failure_after_traffic_moved_and_alias_restored_is_rolled_back(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher)
    recorder.record(_detail(deployment_id, "START"), sim_clock())
    repository = DeploymentRepository(TABLE)
    repository.update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 1.0))
    outcome = recorder.record(_detail(deployment_id, "FAILURE"), sim_clock())
    assert outcome.status == DeploymentStatus.ROLLED_BACK
    assert ("DeploymentsRolledBack", "Count", 1.0) in outcome.metric_points()
    assert publisher.events[-1].event_type == EventType.ROLLBACK_COMPLETED


def test_failure_with_the_alias_still_on_the_new_version_is_a_failed_rollback(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher)
    recorder.record(_detail(deployment_id, "START"), sim_clock())
    DeploymentRepository(TABLE).update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
    LambdaTrafficShifter(target).shift(0.1)
    assert recorder.record(_detail(deployment_id, "FAILURE"), sim_clock()).status == DeploymentStatus.FAILED
    recorder.record(_detail(deployment_id, "FAILURE"), sim_clock())  # delivered twice
    kinds = [e.event_type for e in publisher.events]
    assert kinds.count(EventType.ROLLBACK_FAILED) == 1 and kinds[-1] == EventType.DEPLOYMENT_FAILED
    assert next(e for e in publisher.events if e.event_type == EventType.ROLLBACK_FAILED).severity == "critical"


class _RollbackGateway(CodeDeployGateway):
    """GetDeployment as CodeDeploy answers it for a rollback deployment (moto leaves rollbackInfo empty)."""

    def __init__(self, rollback_of: dict[str, str]) -> None:
        self.rollback_of = rollback_of

    def deployment(self, deployment_id: str) -> CodeDeployDeployment:
        info = super().deployment(deployment_id)
        if deployment_id in self.rollback_of:
            return info.model_copy(
                update={"rollback_of": self.rollback_of[deployment_id], "creator": "codeDeployRollback"}
            )
        return info


def test_a_rollback_deployment_ending_marks_the_original(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    original = create_lambda_deployment(target, "orders", "live")
    rollback = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher, gateway=_RollbackGateway({rollback: original}))
    recorder.record(_detail(original, "START"), sim_clock())
    recorder.record(_detail(original, "FAILURE"), sim_clock())
    recorder.record(_detail(rollback, "START"), sim_clock())
    recorder.record(_detail(rollback, "SUCCESS"), sim_clock())
    recorder.record(_detail(rollback, "SUCCESS"), sim_clock())  # duplicate
    repository = DeploymentRepository(TABLE)
    assert repository.get_deployment(original).status == DeploymentStatus.ROLLED_BACK
    assert [e.action for e in repository.audit_trail(original)].count("rollback_completed") == 1
    assert [e.event_type for e in publisher.events].count(EventType.ROLLBACK_COMPLETED) == 1


def test_a_failed_rollback_deployment_raises_rollback_failed(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    original = create_lambda_deployment(target, "orders", "live")
    rollback = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher, gateway=_RollbackGateway({rollback: original}))
    recorder.record(_detail(original, "FAILURE"), sim_clock())
    recorder.record(_detail(rollback, "FAILURE"), sim_clock())
    failed = [e for e in publisher.events if e.event_type == EventType.ROLLBACK_FAILED]
    assert len(failed) == 1 and failed[0].deployment_id == original


def test_long_running_deployments_are_announced_once(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher, "services:\n  orders:\n    expected_duration_seconds: 600\n")
    recorder.record(_detail(deployment_id, "START"), sim_clock())
    assert recorder.sweep_long_running() == []
    sim_clock.advance(900)
    assert recorder.sweep_long_running() == [deployment_id]
    assert recorder.sweep_long_running() == []
    recorder.record(_detail(deployment_id, "READY"), sim_clock())
    assert [e.event_type for e in publisher.events].count(EventType.DEPLOYMENT_LONG_RUNNING) == 1


def test_instance_events_are_audited_once(target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = _recorder(publisher)
    detail = _detail(deployment_id, "SUCCESS", instanceId="orders")
    assert recorder.handle(INSTANCE_STATE_CHANGE, detail, sim_clock()).changed
    again = recorder.handle(INSTANCE_STATE_CHANGE, detail, sim_clock())
    assert not again.changed and again.status == DeploymentStatus.IN_PROGRESS  # an instance is not the deployment
    actions = [e.action for e in DeploymentRepository(TABLE).audit_trail(deployment_id)]
    assert actions == ["codedeploy_instance_success"]


def test_services_map_from_applications_and_functions() -> None:
    config = parse_config(
        "services:\n  shop:\n    hooks: {codedeploy_applications: [storefront/blue]}\n"
        "  payments:\n    function_name: pay-fn\n",
        "t.yaml",
    )
    assert service_for(config, "storefront", "blue") == "shop"
    assert service_for(config, "pay-app", "live", "pay-fn") == "payments"
    assert service_for(config, "orders", "live") == "orders"


def test_strategies_and_appspecs() -> None:
    assert strategy_of("CodeDeployDefault.LambdaLinear10PercentEvery1Minute") == Strategy.LINEAR
    assert strategy_of("CodeDeployDefault.ECSAllAtOnce", "ECS") == Strategy.BLUE_GREEN
    assert strategy_of("CodeDeployDefault.LambdaAllAtOnce", "Lambda") == Strategy.ALL_AT_ONCE
    yaml_spec = "version: 0.0\nResources:\n  - fn:\n      Type: AWS::Lambda::Function\n      Properties: {Name: f}\n"
    assert appspec_of({"revisionType": "String", "string": {"content": yaml_spec}})["Resources"][0]["fn"]


def test_sample_events_have_the_aws_shape() -> None:
    change = json.loads((EVENTS / "codedeploy_state_change.json").read_text())
    assert change["source"] == "aws.codedeploy"
    assert change["detail-type"] == "CodeDeploy Deployment State-change Notification"
    StateChangeDetail.model_validate(change["detail"])
    instance = json.loads((EVENTS / "codedeploy_instance_state_change.json").read_text())
    assert instance["detail-type"] == INSTANCE_STATE_CHANGE and instance["detail"]["instanceId"]
    for name in ("codedeploy_lifecycle_hook.json", "codedeploy_lifecycle_hook_ecs.json"):
        assert set(json.loads((EVENTS / name).read_text())) == {"DeploymentId", "LifecycleEventHookExecutionId"}
