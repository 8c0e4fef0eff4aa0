"""template.yaml and the state machine hold the promises the README makes about them."""

from __future__ import annotations

import json
from pathlib import Path

from deployguard.storage import keys
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[2]
STACK = Stack.load(ROOT)
RESOURCES = STACK.resources


def test_table_is_durable_encrypted_expiring_and_keyed_for_the_access_patterns() -> None:
    table = RESOURCES["DeploymentsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": keys.TTL_ATTRIBUTE, "Enabled": True}
    assert [k["AttributeName"] for k in table["KeySchema"]] == [keys.PK, keys.SK]
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {keys.GSI1: [keys.GSI1_PK, keys.GSI1_SK], keys.GSI2: [keys.GSI2_PK, keys.GSI2_SK]}


def test_topic_is_encrypted_and_router_has_a_dead_letter_queue() -> None:
    assert "KmsMasterKeyId" in RESOURCES["DeploymentEventsTopic"]["Properties"]
    router = RESOURCES["NotificationRouterFunction"]["Properties"]
    sns_event = router["Events"]["DeploymentEvents"]["Properties"]
    assert sns_event["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["NotificationDeadLetterQueue", "Arn"]}
    assert router["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"] == "SQS"


def test_every_function_is_a_thin_handler_with_a_least_privilege_policy() -> None:
    functions = STACK.of_type("AWS::Serverless::Function")
    assert set(functions) == {
        "CanaryStepFunction",
        "AssessorFunction",
        "AssessorShardFunction",
        "LifecycleHookFunction",
        "DeploymentRecorderFunction",
        "NotificationRouterFunction",
        "RemediationApprovalFunction",
        "ConsoleApiFunction",
        "ReportWriterFunction",
    }
    for logical_id, resource in functions.items():
        props = resource["Properties"]
        handler_file = ROOT / props["CodeUri"] / (props["Handler"].split(".")[0] + ".py")
        assert handler_file.is_file(), logical_id
        assert len(handler_file.read_text().splitlines()) < 80, f"{logical_id}: handlers stay thin"
        assert props["Policies"], logical_id
        for policy in props["Policies"]:
            assert policy != "AdministratorAccess" and "FullAccess" not in str(policy), logical_id
    assert STACK.template["Globals"]["Function"]["Runtime"] == "python3.11"


def test_schedule_is_every_minute_and_switchable() -> None:
    schedule = RESOURCES["AssessorFunction"]["Properties"]["Events"]["EveryMinute"]["Properties"]
    assert schedule["Schedule"] == "rate(1 minute)"
    assert schedule["State"] == {"Fn::If": ["ScheduleEnabled", "ENABLED", "DISABLED"]}


def test_fan_out_queue_is_encrypted_with_a_dead_letter_queue_and_every_function_has_reserved_concurrency() -> None:
    queue = RESOURCES["AssessmentQueue"]["Properties"]
    assert "KmsMasterKeyId" in queue
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["AssessmentDeadLetterQueue", "Arn"]}
    assert "KmsMasterKeyId" in RESOURCES["AssessmentDeadLetterQueue"]["Properties"]
    shard = RESOURCES["AssessorShardFunction"]["Properties"]
    source = shard["Events"]["Shards"]["Properties"]
    assert source["Queue"] == {"Fn::GetAtt": ["AssessmentQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * shard["Timeout"]
    assert source["ScalingConfig"]["MaximumConcurrency"] <= shard["ReservedConcurrentExecutions"]
    tick = RESOURCES["AssessorFunction"]["Properties"]
    assert tick["Environment"]["Variables"]["ASSESSMENT_QUEUE_URL"] == {"Ref": "AssessmentQueue"}
    assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["AssessmentQueue", "QueueName"]}}} in tick[
        "Policies"
    ]
    assert not any("SQSSendMessagePolicy" in str(p) for p in shard["Policies"])  # only the tick hands out shards
    for logical_id, resource in STACK.of_type("AWS::Serverless::Function").items():
        assert resource["Properties"]["ReservedConcurrentExecutions"] >= 1, logical_id


def test_recorder_listens_to_codedeploy_state_changes() -> None:
    pattern = RESOURCES["DeploymentRecorderFunction"]["Properties"]["Events"]["CodeDeployStateChange"]["Properties"][
        "Pattern"
    ]
    assert pattern["source"] == ["aws.codedeploy"]
    assert "CodeDeploy Deployment State-change Notification" in pattern["detail-type"]


def test_layer_is_built_with_python311() -> None:
    layer = RESOURCES["DeployGuardLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.11"
    assert (ROOT / layer["Properties"]["ContentUri"] / "deployguard" / "__init__.py").is_file()


def test_every_task_retries_with_backoff_and_catches_into_rollback() -> None:
    definition = json.loads((ROOT / "statemachine" / "canary.asl.json").read_text())
    substitutions = RESOURCES["CanaryStateMachine"]["Properties"]["DefinitionSubstitutions"]
    text = json.dumps(definition)
    for name in substitutions:
        assert "${" + name + "}" in text
    tasks = {n: s for n, s in definition["States"].items() if s["Type"] == "Task"}
    assert set(tasks) >= {"Validate", "ShiftTraffic", "Assess", "Promote", "Rollback", "NotifyOutcome"}
    for name, state in tasks.items():
        assert state["Retry"] and all(r.get("BackoffRate", 1) > 1 for r in state["Retry"]), name
        assert state["Catch"], name
    for name in ("Validate", "ShiftTraffic", "Assess", "Promote", "AwaitApproval"):
        assert tasks[name]["Catch"][0]["Next"] == "Rollback"
    choices = {c["StringEquals"]: c["Next"] for c in definition["States"]["RouteVerdict"]["Choices"]}
    assert choices == {
        "wait": "WaitForMetrics",
        "advance": "ShiftTraffic",
        "promote": "Promote",
        "await_approval": "AwaitApproval",
        "rollback": "Rollback",
        "hold": "Rollback",
        "done": "NotifyOutcome",
    }
    assert definition["States"]["RouteVerdict"]["Default"] == "Rollback"
