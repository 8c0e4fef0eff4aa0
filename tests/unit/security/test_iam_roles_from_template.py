"""The functions' roles as the embedded AWS enforces them (emulator.iam, read from template.yaml), and what the
roles must allow beyond what a local run calls: a customer managed key (KmsKeyArn) on the topics and queues a
function writes to (moto encrypts nothing, so only the template can tell)."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import pytest

from deployguard_local.emulator.iam import (
    DEPLOYED_PARAMETERS,
    SAM_POLICY_TEMPLATES,
    RolePolicy,
    UnknownPolicyTemplate,
    call_actions,
    role_policies,
)
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[3]
STACK = Stack.load(ROOT)
WITH_KEY = {
    **DEPLOYED_PARAMETERS,
    "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
ROLES = role_policies(STACK, WITH_KEY)


def test_the_roles_the_audit_found_short_allow_what_their_functions_call() -> None:
    wanted = {
        "CanaryStepFunction": ["lambda:InvokeFunction", "cloudwatch:DescribeAlarms", "states:SendTaskSuccess"],
        "RemediationApprovalFunction": ["states:SendTaskSuccess", "states:SendTaskFailure"],
        "ConsoleWriteFunction": ["secretsmanager:GetSecretValue", "codedeploy:GetDeployment"],
    }
    for function, actions in wanted.items():
        assert [a for a in actions if not ROLES[function].allows(a)] == [], function
    # the console reads no ECS deployment's group, targets or task sets: abort asks GetDeployment only
    assert not ROLES["ConsoleWriteFunction"].allows("codedeploy:GetDeploymentTarget")


def test_without_a_guard_prefix_the_guard_statements_are_left_out() -> None:
    unguarded = role_policies(STACK, {})  # the template's defaults: no prefix, nothing guarded
    assert not unguarded["CanaryStepFunction"].allows("lambda:InvokeFunction")
    assert not unguarded["CanaryStepFunction"].allows("lambda:UpdateAlias")
    assert unguarded["CanaryStepFunction"].allows("cloudwatch:DescribeAlarms")


def _target(reference: Any) -> str | None:
    """The logical id a GetAtt/Ref/Sub in a policy names, if it is a topic or queue of the template."""
    text = json.dumps(reference)
    kinds = ("AWS::SNS::Topic", "AWS::SQS::Queue")
    return next((name for name, r in STACK.resources.items() if r["Type"] in kinds and f'"{name}"' in text), None)


def _writes_to(function: str, role: RolePolicy) -> set[str]:
    found = {_target(parameters) for name, parameters in role.templates
             if name in ("SQSSendMessagePolicy", "SNSPublishMessagePolicy")}  # fmt: skip
    found |= {_target(s.get("Resource")) for s in role.statements
              if {"sns:publish", "sqs:sendmessage"} & {str(a).lower() for a in s.get("Action", [])}}  # fmt: skip
    on_failure = STACK.function_definition(function).get("EventInvokeConfig", {})
    found.add(_target(on_failure.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")))
    return {name for name in found if name is not None}


def _under_the_customer_key(name: str) -> bool:
    key = STACK.resources[name]["Properties"].get("KmsMasterKeyId")
    return isinstance(key, dict) and key.get("Fn::If", [None, None])[1] == {"Ref": "KmsKeyArn"}


def _kms_through(role: RolePolicy, service: str) -> bool:
    for statement in role.statements:
        actions = [str(a) for a in statement.get("Action", [])] if isinstance(statement.get("Action"), list) else [
            str(statement.get("Action"))]  # fmt: skip
        via = json.dumps(statement.get("Condition", {}))
        allowed = statement["Effect"] == "Allow" and {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(actions)
        if allowed and f"{service}.${{AWS::Region}}.amazonaws.com" in via:
            return True
    return False


def test_every_writer_of_a_topic_or_queue_under_the_customer_key_may_use_the_key_through_that_service() -> None:
    missing = []
    for function, role in ROLES.items():
        for name in sorted(_writes_to(function, role)):
            if not _under_the_customer_key(name):
                continue
            service = "sns" if STACK.resources[name]["Type"] == "AWS::SNS::Topic" else "sqs"
            if not _kms_through(role, service):
                missing.append(f"{function} -> {name} (kms via {service})")
    assert missing == []
    # what the audit found missing, checked by name
    assert _kms_through(ROLES["NotificationRouterFunction"], "sqs")
    assert _kms_through(ROLES["ReportWriterFunction"], "sqs")
    assert _kms_through(ROLES["ConsoleWriteFunction"], "sns")


def test_report_writer_uses_only_the_customer_key_when_one_is_given() -> None:
    kms = [s for s in ROLES["ReportWriterFunction"].statements if "kms:Decrypt" in s["Action"]]
    assert kms and all(s["Resource"] == {"Ref": "KmsKeyArn"} for s in kms)


def test_an_action_is_matched_with_wildcards_case_insensitively_and_a_deny_wins() -> None:
    role = RolePolicy("F", allow=["sqs:sendmessage*", "dynamodb:*"], deny=["dynamodb:deletetable"])
    assert role.allows("sqs:SendMessage") and role.allows("sqs:SendMessageBatch") and role.allows("dynamodb:Query")
    assert not role.allows("dynamodb:DeleteTable") and not role.allows("sns:Publish")


def test_a_call_is_authorised_as_the_actions_aws_checks() -> None:
    assert call_actions("lambda", "Invoke", {}) == ["lambda:InvokeFunction"]
    assert call_actions("stepfunctions", "SendTaskSuccess", {}) == ["states:SendTaskSuccess"]
    assert call_actions("elbv2", "DescribeTargetGroups", {}) == ["elasticloadbalancing:DescribeTargetGroups"]
    items = [{"Put": {}}, {"Update": {}}, {"ConditionCheck": {}}]
    assert call_actions("dynamodb", "TransactWriteItems", {"TransactItems": items}) == [
        "dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]  # fmt: skip


def test_a_policy_template_not_known_locally_is_an_error_not_a_grant() -> None:
    template = json.loads(json.dumps(STACK.template))
    template["Resources"]["ConsoleReadFunction"]["Properties"]["Policies"].append({"KinesisCrudPolicy": {}})
    with pytest.raises(UnknownPolicyTemplate, match="KinesisCrudPolicy"):
        role_policies(Stack(root=ROOT, template=template, parameters=dict(STACK.parameters)))


def test_the_policy_templates_match_aws_sam_translators_own() -> None:
    """Against the translator of the security tools' environment (``make checkov`` creates .venv-checkov)."""
    found = glob.glob(str(ROOT / ".venv-checkov/lib/python3*/site-packages/samtranslator/policy_templates_data/"
                                 "policy_templates.json"))  # fmt: skip
    if not found:
        pytest.skip("no .venv-checkov here (make checkov creates it)")
    templates = json.loads(Path(found[0]).read_text(encoding="utf-8"))["Templates"]
    for name, actions in SAM_POLICY_TEMPLATES.items():
        theirs = [a for s in templates[name]["Definition"]["Statement"] for a in s["Action"]]
        assert sorted(theirs) == sorted(actions), name
