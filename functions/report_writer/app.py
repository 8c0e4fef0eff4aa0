"""Report writer: writes a deployment's health report to the ReportsBucket when it ends (SNS
subscription of the events topic, filtered on ending event types), and the daily and weekly
summaries (EventBridge schedules). The logic is in deployguard.reporting.writer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.parser.models import SnsModel
from pydantic import BaseModel, ConfigDict, Field

from deployguard import clock
from deployguard.aws.reports_bucket import ReportStore
from deployguard.inbound import parse_event, parse_json_event
from deployguard.models import DeploymentEvent, EventType
from deployguard.readmodels import DeploymentReader
from deployguard.reporting.writer import ENDING_EVENTS, ReportWriter
from deployguard.workflows import runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


class SummaryRequest(BaseModel):
    """The schedules' constant input."""

    summary: Literal["daily", "weekly"]


class ReportWriterEnvironment(BaseModel):
    """The variables of this function beyond the shared ones (template.yaml)."""

    model_config = ConfigDict(extra="ignore")

    reports_bucket: str = Field(alias="REPORTS_BUCKET", min_length=1)


def writer() -> ReportWriter:
    # a missing or empty REPORTS_BUCKET is a ConfigError naming it, as the shared variables are
    bucket = runtime.read_environment(ReportWriterEnvironment).reports_bucket
    reader, store = DeploymentReader(runtime.repository()), ReportStore(bucket)
    return ReportWriter(reader, store, runtime.publisher(), runtime.environment().environment)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # a malformed or oversized event raises InvalidEventError naming the field: two retries, then the failure queue
    if isinstance(event, dict) and "summary" in event:
        request = parse_event(SummaryRequest, event, "summary request")
        summary, uris = writer().write_summary(request.summary, clock.now())
        metrics.add_metric(name="SummariesWritten", unit="Count", value=1)
        logger.info("summary written", extra={"period": request.summary, "uris": uris,
                                              "deployments": summary.current.deployments})  # fmt: skip
        return {"summary": request.summary, "written": uris}
    written: list[str] = []
    envelope = parse_event(SnsModel, event, "SNS envelope")
    events = [parse_json_event(DeploymentEvent, r.Sns.Message, f"deployment event in Records.{i}.Sns.Message")
              for i, r in enumerate(envelope.Records)]  # fmt: skip
    for deployment_event in events:
        if deployment_event.event_type not in ENDING_EVENTS:  # the subscription's filter already drops these
            continue
        if deployment_event.event_type == EventType.ROLLBACK_FAILED:  # RollbackFailedAlarm watches this
            metrics.add_metric(name="RollbackFailed", unit="Count", value=1)
        written += writer().write_deployment(deployment_event.deployment_id)
    metrics.add_metric(name="ReportsWritten", unit="Count", value=len(written))
    logger.info("reports written", extra={"uris": written, **runtime.deployment_keys(e.deployment_id for e in events)})
    return {"written": written}
