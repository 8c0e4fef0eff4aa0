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
    listed = [s for p in props["Policies"] if isinstance(p, dict) for s in p.get("Statement", [])]
    statements = [  # a statement given only with a parameter (Fn::If): each of its branches that is one
        branch
        for s in listed
        for branch in (s["Fn::If"][1:] if "Fn::If" in s else [s])
        if isinstance(branch, dict) and "Effect" in branch
    ]
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
                           "StateMachineFailuresAlarm", "RollbackFailedAlarm", "AssessorStalledAlarm",
                           "TrafficCheckBacklogAlarm", "TrafficCheckStalledAlarm", "EventsGivenUpAlarm",
                           "DeploymentsUnreadableAlarm", "RecordsUnreadableAlarm"}  # fmt: skip
    topic = [{"Fn::If": ["HasOperatorTopic", {"Ref": "OperatorTopicArn"}, {"Ref": "OperatorTopic"}]}]
    for logical_id, alarm in alarms.items():  # the topic given, else the stack's own: ALARM and OK told
        assert alarm["Properties"]["AlarmActions"] == topic, logical_id
        assert alarm["Properties"]["OKActions"] == topic, logical_id
    watched = json.dumps(alarms["FunctionErrorsAlarm"]["Properties"]["Metrics"])
    for logical_id in STACK.of_type("AWS::Serverless::Function"):
        assert f'{{"Ref": "{logical_id}"}}' in watched, logical_id
    queues = json.dumps(alarms["DeadLetterQueuesAlarm"]["Properties"]["Metrics"])
    for queue, resource in STACK.of_type("AWS::SQS::Queue").items():
        if "RedrivePolicy" in resource["Properties"]:
            continue  # a work queue (the assessor's shards): messages there are work, not failures
        assert f'"{queue}", "QueueName"' in queues, queue


def _dashboard(conditions: dict[str, bool] | None = None) -> dict[str, Any]:
    """The dashboard's body as JSON, its substitutions resolved as CloudFormation would (the list form of
    Fn::Sub: a variable's Fn::If by ``conditions``, all true unless given), every resource as "${Name}"."""
    body, variables = RESOURCES["DeployGuardDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]

    def value(variable: Any) -> str:
        if isinstance(variable, dict) and "Fn::If" in variable:
            condition, when_true, when_false = variable["Fn::If"]
            assert condition in STACK.template["Conditions"], condition
            return value(when_true if (conditions or {}).get(condition, True) else when_false)
        if isinstance(variable, dict) and "Fn::Sub" in variable:
            return str(variable["Fn::Sub"])
        assert isinstance(variable, str), variable
        return variable

    text = re.sub(r"\$\{([A-Za-z]+)\}", lambda m: value(variables[m.group(1)]) if m.group(1) in variables
                  else m.group(0), body)  # fmt: skip
    names = set(re.findall(r"\$\{([^}]+)\}", text))
    for name in names:  # every substitution names a parameter, a pseudo parameter or a resource (attribute)
        assert name.split(".")[0] in RESOURCES or name.startswith("AWS::"), name
    return dict(json.loads(text))  # each substitution left inside its JSON string


def _widget_alarms(dashboard: dict[str, Any]) -> list[str]:
    (widget,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    return [str(arn).removeprefix("${").removesuffix(".Arn}") for arn in widget["properties"]["alarms"]]


def test_dashboard_shows_every_self_alarm_that_exists() -> None:
    """The alarm widget lists every alarm of the stack; one that exists only under a condition (the stalled
    runs, with the schedules enabled) only when it does, else CloudFormation refuses the dashboard."""
    alarms = STACK.of_type("AWS::CloudWatch::Alarm")
    for enabled in (True, False):
        shown = _widget_alarms(_dashboard({"ScheduleEnabled": enabled}))
        existing = {name for name, alarm in alarms.items() if enabled or alarm.get("Condition") != "ScheduleEnabled"}
        assert sorted(shown) == sorted(existing), enabled
    assert {a.get("Condition") for a in alarms.values()} <= {None, "ScheduleEnabled"}


def test_dashboard_shows_every_functions_errors() -> None:
    (widget,) = [w for w in _dashboard()["widgets"] if w["properties"].get("title") == "Guard health: function errors"]
    shown = {m[3].removeprefix("${").removesuffix("}") for m in widget["properties"]["metrics"] if m[1] == "Errors"}
    assert shown == set(STACK.of_type("AWS::Serverless::Function"))


def test_traffic_check_alarms_read_the_metrics_the_function_writes() -> None:
    """The traffic check function's EMF metrics (namespace and service dimension of the shared Powertools
    Metrics, names given by its run's report) are what its alarms read; the stalled-run alarm exists when
    the function's schedule is enabled (tests/integration/test_traffic_check_alarms.py reads a real run's
    EMF output and drives both alarms)."""
    from deployguard.workflows import runtime
    from deployguard.workflows.reconciler import ReconcileRun

    written: list[str] = []
    ReconcileRun().report(lambda name, **_: written.append(name))
    variables = STACK.template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == runtime.METRICS_NAMESPACE
    assert variables["POWERTOOLS_SERVICE_NAME"] == runtime.SERVICE_NAME
    backlog = RESOURCES["TrafficCheckBacklogAlarm"]["Properties"]
    stalled = RESOURCES["TrafficCheckStalledAlarm"]["Properties"]
    for alarm, metric in ((backlog, "TrafficChecksDeferred"), (stalled, "TrafficChecks")):
        assert alarm["MetricName"] == metric and metric in written
        assert alarm["Namespace"] == runtime.METRICS_NAMESPACE
        assert alarm["Dimensions"] == [{"Name": "service", "Value": runtime.SERVICE_NAME}]
        assert alarm["Period"] == 60  # the function runs every minute
    # a backlog: checks left over in a run (no run at all is not a backlog: the stalled alarm's, on missing data)
    assert (backlog["Statistic"], backlog["ComparisonOperator"], backlog["Threshold"], backlog["TreatMissingData"]) == (
        "Maximum", "GreaterThanOrEqualToThreshold", 1, "notBreaching")  # fmt: skip
    assert (stalled["Statistic"], stalled["ComparisonOperator"], stalled["Threshold"], stalled["TreatMissingData"]) == (
        "SampleCount", "LessThanThreshold", 1, "breaching")  # fmt: skip
    schedule = RESOURCES["TrafficCheckFunction"]["Properties"]["Events"]["EveryMinute"]["Properties"]
    assert schedule["Schedule"] == "rate(1 minute)"
    assert RESOURCES["TrafficCheckStalledAlarm"]["Condition"] == schedule["State"]["Fn::If"][0]


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
                 "AlertsRaised", "NotificationsDelivered", "NotificationsFailed", "ExecutionsFailed",
                 "TrafficChecks", "TrafficRepairs", "TrafficChecksDeferred"):  # fmt: skip
        assert name in text, name
