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
        "TrafficCheckFunction",
        "LifecycleHookFunction",
        "DeploymentRecorderFunction",
        "NotificationRouterFunction",
        "RemediationApprovalFunction",
        "ConsoleReadFunction",
        "ConsoleWriteFunction",
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
    assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["AssessmentQueue", "QueueName"]}}} in tick["Policies"]
    assert not any("SQSSendMessagePolicy" in str(p) for p in shard["Policies"])  # only the tick hands out shards
    for logical_id, resource in STACK.of_type("AWS::Serverless::Function").items():
        assert resource["Properties"]["ReservedConcurrentExecutions"] >= 1, logical_id


def test_recorder_listens_to_codedeploy_state_changes() -> None:
    pattern = RESOURCES["DeploymentRecorderFunction"]["Properties"]["Events"]["CodeDeployStateChange"]["Properties"][
        "Pattern"
    ]
    assert pattern["source"] == ["aws.codedeploy"]
    assert "CodeDeploy Deployment State-change Notification" in pattern["detail-type"]


def test_layer_is_built_by_its_makefile_for_python311() -> None:
    """The recipe is run by tests/unit/test_cold_imports.py (its offline part) and by deployguard_local.cold_start."""
    layer = RESOURCES["DeployGuardLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "deployguard" / "__init__.py").is_file()
    recipe = (content / "Makefile").read_text()
    assert "build-DeployGuardLayer:" in recipe
    # the wheels are for the functions' architecture (pydantic_core, pyyaml and wrapt are compiled)
    platform = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
    architectures = STACK.template["Globals"]["Function"]["Architectures"]
    assert f"PLATFORM ?= {platform[architectures[0]]}" in recipe


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
    for name in ("Validate", "ShiftTraffic", "Assess", "Promote"):
        assert tasks[name]["Catch"][0]["Next"] == "Rollback"
    # approval before 100%: the token wait and the assessments side by side; any failure ends in rollback
    waiting = definition["States"]["AwaitApproval"]
    assert waiting["Type"] == "Parallel" and waiting["Catch"][0]["Next"] == "Rollback"
    token, watch = (branch["States"] for branch in waiting["Branches"])
    assert token["AwaitApproval"]["Resource"].endswith("waitForTaskToken")
    assert token["AwaitApproval"]["Catch"] == [
        {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "ApprovalExpired"}
    ]
    assert watch["AssessWhileAwaitingApproval"]["Retry"] and waiting["Next"] == "Promote"
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


# --------------------------------------------------------------------------- the console's read/write split

READ_VERBS = ("Get", "List", "Describe", "BatchGet", "Query", "Scan")
READ_POLICY_TEMPLATES = {"DynamoDBReadPolicy", "SSMParameterReadPolicy"}  # SAM policy templates that only read


def _policies(logical_id: str) -> list[dict[str, object]]:
    """The function's policies, conditional ones with both branches, ``AWS::NoValue`` left out."""
    found: list[dict[str, object]] = []
    pending: list[object] = list(RESOURCES[logical_id]["Properties"]["Policies"])
    while pending:
        policy = pending.pop()
        if isinstance(policy, dict) and "Fn::If" in policy:
            pending += policy["Fn::If"][1:]
        elif isinstance(policy, dict) and policy != {"Ref": "AWS::NoValue"}:
            found.append(policy)
    return found


def _actions(logical_id: str) -> set[str]:
    actions: set[str] = set()
    for policy in _policies(logical_id):
        pending: list[object] = list(policy.get("Statement", []))  # type: ignore[call-overload]
        while pending:
            statement = pending.pop()
            if isinstance(statement, dict) and "Fn::If" in statement:
                pending += statement["Fn::If"][1:]
            elif isinstance(statement, dict) and "Action" in statement:
                action = statement["Action"]
                actions |= set(action if isinstance(action, list) else [action])
    return actions


def _route_functions() -> dict[str, str]:
    """RouteKey -> the function its integration invokes."""
    integrations = {
        logical_id: resource["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]
        for logical_id, resource in STACK.of_type("AWS::ApiGatewayV2::Integration").items()
    }
    routes = [route["Properties"] for route in STACK.of_type("AWS::ApiGatewayV2::Route").values()]
    return {r["RouteKey"]: integrations[r["Target"]["Fn::Sub"][len("integrations/${") : -1]] for r in routes}


def test_console_reads_and_writes_are_separate_functions_with_separate_roles() -> None:
    assert _route_functions() == {
        "GET /api/{proxy+}": "ConsoleReadFunction",
        "GET /openapi.json": "ConsoleReadFunction",
        "GET /": "ConsoleReadFunction",
        "GET /static/{proxy+}": "ConsoleReadFunction",
        "POST /api/{proxy+}": "ConsoleWriteFunction",
    }
    read, write = RESOURCES["ConsoleReadFunction"]["Properties"], RESOURCES["ConsoleWriteFunction"]["Properties"]
    assert (read["Handler"], write["Handler"]) == ("app.read_handler", "app.write_handler")
    assert read["CodeUri"] == write["CodeUri"]  # one code, two roles
    assert "Role" not in read and "Role" not in write  # each gets its own role from its own Policies
    permissions = {
        p["Properties"]["FunctionName"]["Ref"]: p["Properties"]["SourceArn"]["Fn::Sub"]
        for p in STACK.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert permissions["ConsoleReadFunction"].endswith("/*/GET/*")
    assert permissions["ConsoleWriteFunction"].endswith("/*/POST/api/*")


def test_the_console_read_role_cannot_write() -> None:
    templates = {next(iter(p)) for p in _policies("ConsoleReadFunction") if "Statement" not in p}
    assert templates <= READ_POLICY_TEMPLATES, templates
    actions = _actions("ConsoleReadFunction")
    assert all(a.split(":", 1)[1].startswith(READ_VERBS) for a in actions), actions
    # what the write role holds and the read role must not
    write_templates = {next(iter(p)) for p in _policies("ConsoleWriteFunction") if "Statement" not in p}
    assert {"DynamoDBCrudPolicy", "SNSPublishMessagePolicy"} <= write_templates
    assert {"lambda:UpdateAlias", "codedeploy:StopDeployment", "states:StartExecution"} <= _actions(
        "ConsoleWriteFunction"
    )
    assert not {"lambda:UpdateAlias", "codedeploy:StopDeployment", "states:StartExecution"} & actions


def test_every_function_that_reads_ecs_deployment_targets_may_read_their_task_sets() -> None:
    for logical_id in STACK.of_type("AWS::Serverless::Function"):
        actions = _actions(logical_id)
        if "codedeploy:GetDeploymentTarget" in actions:
            assert "ecs:DescribeTaskSets" in actions, logical_id  # the blue task set's task definition
