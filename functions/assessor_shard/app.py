"""Assessor shard (SQS: the assessment queue the minute tick fills): assesses one shard of due
deployments within its time budget; what it does not finish stays due for the next tick.
The logic is in deployguard.workflows.assessor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser.models import SqsModel

from deployguard.aws.shards import Shard
from deployguard.inbound import parse_event
from deployguard.workflows import runtime
from deployguard.workflows.assessor import AssessorRun, run_shard

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = parse_event(SqsModel, raw, "assessment shard")
    run = AssessorRun()
    shard_ids: list[str] = []  # the shards' deployments, for the summary line
    for record in event.Records:
        shard = Shard.model_validate_json(record.body)
        shard_ids += shard.deployment_ids
        run.merge(run_shard(
            shard.deployment_ids, runtime.config(), runtime.repository(), runtime.publisher(),
            alerts=runtime.alert_engine(), remaining_ms=context.get_remaining_time_in_millis,
        ))  # fmt: skip
    summary = {**run.report(metrics.add_metric), "shards": len(event.Records)}  # shards received
    logger.info("assessment shard", extra={**summary, **runtime.deployment_keys(shard_ids)})
    return summary
