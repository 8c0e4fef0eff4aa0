"""A CodeDeploy Lambda deployment stopped with automatic rollback, whose rollback deployment CodeDeploy never makes
(review, suspected bug 5): the release is not counted as rolled back. (That it then goes uncounted in the EMF
statistics, which wait for the rollback deployment's end, is confirmed and left: see the session's report.)"""

from __future__ import annotations

from typing import Any

from moto_table import TABLE, RecordingPublisher

from deployguard.aws.codedeploy import CodeDeployDeployment, CodeDeployGateway
from deployguard.config import parse_config
from deployguard.models import DeploymentStatus, EventType, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.recorder import DeploymentRecorder, StateChangeDetail
from deployguard_local.codedeploy import create_lambda_deployment


class _RollbackAskedGateway(CodeDeployGateway):
    """GetDeployment of a release stopped with autoRollbackEnabled: rollbackInfo says a rollback was asked for,
    and no rollbackDeploymentId ever appears (CodeDeploy never makes it)."""

    def deployment(self, deployment_id: str) -> CodeDeployDeployment:
        info = super().deployment(deployment_id)
        return info.model_copy(update={"rollback_requested": True, "rollback_deployment_id": None})


def _detail(deployment_id: str, state: str) -> StateChangeDetail:
    return StateChangeDetail.model_validate(
        {"deploymentId": deployment_id, "application": "orders", "deploymentGroup": "live", "state": state}
    )


def test_a_stop_with_rollback_asked_is_not_counted_as_rolled_back(
    target: LambdaTarget, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(TABLE), publisher,
                                  _RollbackAskedGateway())  # fmt: skip
    recorder.record(_detail(deployment_id, "START"), sim_clock())
    outcome = recorder.record(_detail(deployment_id, "STOP"), sim_clock())
    assert outcome.status == DeploymentStatus.STOPPED  # not rolled back: nothing says CodeDeploy did it
    assert ("DeploymentsRolledBack", "Count", 1.0) not in outcome.metric_points()
    assert EventType.ROLLBACK_COMPLETED not in [e.event_type for e in publisher.events]
