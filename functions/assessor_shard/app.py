"""Assessor shard (SQS: the assessment queue the minute tick fills): assesses one shard of due
deployments within its time budget; what it does not finish stays due for the next tick.
The logic is in deployguard.workflows.assessor."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import SqsModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard.aws.shards import Shard
from deployguard.inbound import parse_event
from deployguard.workflows import runtime
from deployguard.workflows.assessor import run_shard

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_event(SqsModel, raw, "assessment shard")
    assessed, deferred, calls = 0, 0, 0
    for record in event.Records:
        shard = Shard.model_validate_json(record.body)
        run = run_shard(
            shard.deployment_ids, runtime.config(), runtime.repository(), runtime.publisher(),
            alerts=runtime.alert_engine(), remaining_ms=context.get_remaining_time_in_millis,
        )  # fmt: skip
        assessed += len(run.assessed) + (len(run.monitoring.assessed) if run.monitoring else 0)
        deferred += len(run.deferred)
        calls += run.metric_calls
    metrics.add_metric(name="DeploymentsAssessed", unit="Count", value=assessed)
    metrics.add_metric(name="DeploymentsDeferred", unit="Count", value=deferred)
    metrics.add_metric(name="GetMetricDataCalls", unit="Count", value=calls)
    summary = {"shards": len(event.Records), "assessed": assessed, "deferred": deferred, "metric_calls": calls}
    logger.info("assessment shard", extra=summary)
    return summary
