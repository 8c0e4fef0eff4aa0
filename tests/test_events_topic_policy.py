"""Who may publish on the deployment events topic (the router pages on what arrives there): only the roles
of the guard's own functions whose policies publish to it; everyone else is denied by the topic policy, even
a principal whose IAM policy allows sns:Publish on every topic. Read from template.yaml as CloudFormation
resolves it (SAM names a function's generated role ``<function>Role``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[1]


def _publishers(stack: Stack) -> set[str]:
    """The functions whose policies let them publish to DeploymentEventsTopic."""
    found = set()
    for logical_id, resource in stack.of_type("AWS::Serverless::Function").items():
        for policy in resource["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "SNSPublishMessagePolicy" in policy:
                assert policy["SNSPublishMessagePolicy"] == {"TopicName": {"Fn::GetAtt": ["DeploymentEventsTopic",
                                                                                          "TopicName"]}}  # fmt: skip
                found.add(logical_id)
    return found


def _roles(values: list[Any]) -> set[str]:
    roles = set()
    for value in values:
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn" and logical_id.endswith("FunctionRole"), value
        roles.add(logical_id.removesuffix("Role"))
    return roles


def test_only_the_functions_that_publish_may_publish_and_everyone_else_is_denied() -> None:
    stack = Stack.load(ROOT)
    publishers = _publishers(stack)
    assert {
        "CanaryStepFunction",
        "AssessorFunction",
        "DeploymentRecorderFunction",
        "ConsoleWriteFunction",
    } <= publishers
    assert "NotificationRouterFunction" not in publishers and "ConsoleReadFunction" not in publishers
    (policy,) = [p for p in stack.of_type("AWS::SNS::TopicPolicy").values()
                 if p["Properties"]["Topics"] == [{"Ref": "DeploymentEventsTopic"}]]  # fmt: skip
    assert "Condition" not in policy  # always: with or without a customer key or operator topic
    # the Deny alone: the functions' IAM policies grant Publish (an Allow naming roles the stack just created
    # can fail SNS's principal validation while IAM propagates)
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    topic = {"Ref": "DeploymentEventsTopic"}
    assert (deny["Effect"], deny["Principal"], deny["Action"], deny["Resource"]) == ("Deny", "*", "sns:Publish", topic)
    (condition,) = deny["Condition"].items()
    assert condition[0] == "ArnNotEquals" and list(condition[1]) == ["aws:PrincipalArn"]
    assert _roles(condition[1]["aws:PrincipalArn"]) == publishers


def test_only_cloudwatch_alarms_of_this_account_publish_on_the_operator_topic() -> None:
    stack = Stack.load(ROOT)
    policy = stack.resources["OperatorTopicPolicy"]["Properties"]["PolicyDocument"]
    allow, deny = policy["Statement"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sns:Publish")
    assert deny["Condition"] == {"Bool": {"aws:PrincipalIsAWSService": "false"}}
