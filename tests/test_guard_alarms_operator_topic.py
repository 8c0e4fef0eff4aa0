"""Out of the box every self-alarm tells someone: with OperatorTopicArn left empty the stack creates
OperatorTopic (CloudWatch may publish to it) and every alarm's ALARM and OK actions point at it; with a
topic given, at that one. Resolved as CloudFormation would, on the embedded AWS created from template.yaml."""

from __future__ import annotations

from pathlib import Path

from deployguard.aws import clients
from deployguard_local.emulator import EmbeddedAws
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[1]
ALARM = "AWS::CloudWatch::Alarm"


def test_by_default_every_alarm_tells_the_operator_topic_the_stack_created() -> None:
    with EmbeddedAws() as aws:
        stack = aws.stack
        assert stack.condition("CreateOperatorTopic") and not stack.condition("HasOperatorTopic")
        topic = stack.ref("OperatorTopic")
        assert topic in [t["TopicArn"] for t in clients.client("sns").list_topics()["Topics"]]
        alarms = stack.of_type(ALARM)
        assert len(alarms) >= 10
        for logical_id, alarm in alarms.items():
            props = stack.resolve(alarm["Properties"])
            assert props["AlarmActions"] == [topic], logical_id
            assert props["OKActions"] == [topic], logical_id
        assert stack.resolve(stack.template["Outputs"]["OperatorTopicArn"]["Value"]) == topic
        policy = stack.resolve(stack.resources["OperatorTopicPolicy"]["Properties"])
        statement, deny = policy["PolicyDocument"]["Statement"]  # CloudWatch may publish; nobody else
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:PrincipalIsAWSService": "false"}}
        assert (
            statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and statement["Action"] == "sns:Publish"
        )
        assert policy["Topics"] == [topic] and statement["Resource"] == topic


def test_a_topic_given_is_the_one_every_alarm_tells_and_none_is_created() -> None:
    given = "arn:aws:sns:us-east-1:123456789012:oncall"
    stack = Stack.load(ROOT, parameters={"OperatorTopicArn": given})
    assert not stack.condition("CreateOperatorTopic")
    for name in ("OperatorTopic", "OperatorTopicPolicy"):
        assert stack.resources[name]["Condition"] == "CreateOperatorTopic"
    for logical_id, alarm in stack.of_type(ALARM).items():
        for key in ("AlarmActions", "OKActions"):
            assert stack.resolve(alarm["Properties"][key]) == [given], (logical_id, key)
    assert stack.resolve(stack.template["Outputs"]["OperatorTopicArn"]["Value"]) == given
