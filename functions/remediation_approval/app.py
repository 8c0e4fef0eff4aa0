"""Remediation approval tasks of the approval state machine: register the task token a
person's answer resumes, then run the approved action. The logic is in deployguard.remediation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from deployguard.inbound import parse_event
from deployguard.remediation.models import ApprovalStatus
from deployguard.workflows import runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


class ApprovalTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["register", "run"]
    approval_id: str = Field(min_length=1, max_length=128)
    # validated even when absent (validate_default): the register action needs it, and the error names it
    task_token: str | None = Field(default=None, max_length=8192, validate_default=True)

    @field_validator("task_token")
    @classmethod
    def _token_to_register(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("action") == "register" and not value:
            raise ValueError("the register action needs the task token")
        return value


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse_event(ApprovalTask, event, "approval task")
    logger.append_keys(action=task.action, approval_id=task.approval_id, deployment_id=None, incident_id=None)
    engine = runtime.alert_engine()
    if task.action == "register":
        assert task.task_token, "ApprovalTask refuses a register without its task token"
        engine.remediation.register_task_token(task.approval_id, task.task_token)
        logger.info("approval waiting")
        return {"approval_id": task.approval_id, "waiting": True}
    incidents = {i.incident_id: i for i in engine.incident_store.open_incidents()}
    result = engine.remediation.run_one_approved(task.approval_id, incidents)
    outcome = result.outcome.value if result else "not_approved"
    if result is not None:
        logger.append_keys(deployment_id=result.deployment_id, incident_id=result.incident_id)
    metrics.add_metric(name="ApprovedRemediations", unit="Count", value=1)
    if result is not None:
        logger.info("approved remediation run", extra={"outcome": outcome})
        return {"approval_id": task.approval_id, "outcome": outcome, "message": result.message}
    # nothing ran: say why, from the approval as it now stands (pending: no one approved it yet)
    approval = engine.remediation.store.approval(task.approval_id)
    logger.append_keys(deployment_id=approval.deployment_id, incident_id=approval.incident_id)
    why = approval.result or ("not yet approved" if approval.status == ApprovalStatus.PENDING else "nothing ran")
    message = f"approval {task.approval_id} is {approval.status.value}: {why}"
    logger.info("approved remediation run", extra={"outcome": outcome, "why": message})
    return {"approval_id": task.approval_id, "outcome": outcome, "message": message}
