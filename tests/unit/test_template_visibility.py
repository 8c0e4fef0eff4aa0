"""template.yaml: reports bucket, report writer, log groups, self-alarms and the dashboard keep their promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deployguard.reporting.writer import ENDING_EVENTS
from deployguard.workflows.verdict_metrics import VERDICT_METRIC, verdict_properties
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
STACK = Stack.load(ROOT)
RESOURCES = STACK.resources


def test_reports_bucket_is_encrypted_private_and_expires() -> None:
    bucket = RESOURCES["ReportsBucket"]["Properties"]
    default = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    rule = bucket["LifecycleConfiguration"]["Rules"][0]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"Ref": "ReportRetentionDays"}
    denied = RESOURCES["ReportsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert denied["Effect"] == "Deny" and denied["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_report_writer_hears_every_ending_and_fails_into_its_queue() -> None:
    props = RESOURCES["ReportWriterFunction"]["Properties"]
    sns = props["Events"]["DeploymentEnded"]["Properties"]
    assert set(sns["FilterPolicy"]["event_type"]) == {e.value for e in ENDING_EVENTS}
    assert sns["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ReportWriterDeadLetterQueue", "Arn"]}
    assert props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ReportWriterDeadLetterQueue", "Arn"]
    }
    schedules = {e["Properties"]["Schedule"]: json.loads(e["Properties"]["Input"])
                 for e in props["Events"].values() if e["Type"] == "Schedule"}  # fmt: skip
    assert sorted(s["summary"] for s in schedules.values()) == ["daily", "weekly"]
    statements = [s for p in props["Policies"] if isinstance(p, dict) for s in p.get("Statement", [])]
    for statement in statements:  # least privilege: nothing writes to "*"
        assert statement["Resource"] != "*", statement["Sid"]
    writes = next(s for s in statements if s["Sid"] == "WriteReportsAndSummaries")
    assert writes["Action"] == "s3:PutObject" and len(writes["Resource"]) == 2


def test_every_function_and_state_machine_has_a_log_group_with_retention() -> None:
    groups = {str(g["Properties"].get("LogGroupName")): g for g in STACK.of_type("AWS::Logs::LogGroup").values()}
    for logical_id in STACK.of_type("AWS::Serverless::Function"):
        group = groups[str({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"})]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
    for logical_id, machine in STACK.of_type("AWS::Serverless::StateMachine").items():
        destination = machine["Properties"]["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
        assert destination == {"Fn::GetAtt": [f"{logical_id}LogGroup", "Arn"]}
        assert RESOURCES[f"{logical_id}LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_self_alarms_page_the_operator_topic() -> None:
    alarms = STACK.of_type("AWS::CloudWatch::Alarm")
    assert set(alarms) == {"DeadLetterQueuesAlarm", "FunctionErrorsAlarm", "HookFunctionErrorsAlarm",
                           "StateMachineFailuresAlarm", "RollbackFailedAlarm", "AssessorStalledAlarm"}  # fmt: skip
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasOperatorTopic", [{"Ref": "OperatorTopicArn"}], {"Ref": "AWS::NoValue"}]
        }, logical_id
    watched = json.dumps(alarms["FunctionErrorsAlarm"]["Properties"]["Metrics"])
    for logical_id in STACK.of_type("AWS::Serverless::Function"):
        assert f'{{"Ref": "{logical_id}"}}' in watched, logical_id
    queues = json.dumps(alarms["DeadLetterQueuesAlarm"]["Properties"]["Metrics"])
    for queue, resource in STACK.of_type("AWS::SQS::Queue").items():
        if "RedrivePolicy" in resource["Properties"]:
            continue  # a work queue (the assessor's shards): messages there are work, not failures
        assert f'"{queue}", "QueueName"' in queues, queue


def _dashboard() -> dict[str, Any]:
    body = RESOURCES["DeployGuardDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    for name in names:  # every substitution names a parameter, a pseudo parameter or a resource (attribute)
        assert name.split(".")[0] in RESOURCES or name.startswith("AWS::"), name
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "x", body)))


def test_dashboard_draws_every_metric_deployguard_writes() -> None:
    text = json.dumps(_dashboard())
    from deployguard.models import Assessment, Decision, Deployment, LambdaTarget, Verdict

    assert VERDICT_METRIC in text

    target = LambdaTarget(function_name="f", alias="a", stable_version="1", new_version="2")
    deployment = Deployment(service="s", environment="e", version="2", target=target)
    for decision in Decision:
        assessment = Assessment(deployment_id=deployment.deployment_id, health_score=90.0,
                                verdict=Verdict(decision=decision, summary=""))  # fmt: skip
        for name in verdict_properties(deployment, assessment):  # the by-service table (Logs Insights)
            assert name in text or name == "DeploymentId", name
    for name in ("DeploymentsStarted", "DeploymentSuccessRate", "DeploymentDuration", "ActiveDeployments",
                 "AlertsRaised", "NotificationsDelivered", "NotificationsFailed", "ExecutionsFailed"):  # fmt: skip
        assert name in text, name
