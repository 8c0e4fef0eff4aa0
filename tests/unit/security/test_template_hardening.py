"""template.yaml: least privilege by default, failures kept, data retained, encryption everywhere.

checkov itself runs on the SAM-expanded template in ``make checkov`` (part of ``make test``);
these tests hold the same promises on the template as the embedded AWS reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployguard_local.sam_expand import mutating_actions_on_any_resource
from deployguard_local.template import Stack

ROOT = Path(__file__).resolve().parents[3]
GUARDED = {
    "GuardedFunctionPrefix": "checkout-",
    "GuardedEcsServicePrefix": "shop/",
    "GuardedCodeDeployApplicationPrefix": "checkout",
}
MUTATING = {
    "lambda:UpdateAlias", "lambda:PutFunctionConcurrency", "lambda:PutProvisionedConcurrencyConfig",
    "lambda:InvokeFunction", "ecs:UpdateService", "codedeploy:StopDeployment",
    "codedeploy:PutLifecycleEventHookExecutionStatus", "codedeploy:ContinueDeployment",
}  # fmt: skip


def _stack(**parameters: str) -> Stack:
    stack = Stack.load(ROOT)
    stack.parameters.update(parameters)
    return stack


def _statements(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Inline statements of every function, with conditions resolved for the stack's parameters."""
    found: dict[str, list[dict[str, Any]]] = {}
    for logical_id, resource in stack.of_type("AWS::Serverless::Function").items():
        for policy in resource["Properties"]["Policies"]:
            if isinstance(policy, dict) and "Statement" in policy:
                statements = [s for s in policy["Statement"] if not (isinstance(s, dict) and "Fn::If" in s)]
                conditional = [s for s in policy["Statement"] if isinstance(s, dict) and "Fn::If" in s]
                resolved = [stack.resolve(s) for s in conditional]
                found[logical_id] = statements + [s for s in resolved if isinstance(s, dict) and "Effect" in s]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_no_mutating_action_on_any_resource_whatever_the_parameters() -> None:
    for parameters in ({}, GUARDED):
        stack = _stack(**parameters)
        as_policies = {
            f"{fn}Role": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": statements}}}
            for fn, statements in _statements(stack).items()
        }
        assert mutating_actions_on_any_resource({"Resources": as_policies}) == []


def test_empty_parameters_mean_nothing_is_guarded() -> None:
    for fn, statements in _statements(_stack()).items():
        granted = {a for s in statements for a in _actions(s)}
        assert not granted & MUTATING, f"{fn}: {sorted(granted & MUTATING)} without anything to guard"


def test_guarded_resources_are_scoped_by_their_prefix() -> None:
    statements = _statements(_stack(**GUARDED))
    scopes = {
        "lambda:UpdateAlias": ":function:checkout-*",
        "ecs:UpdateService": ":service/shop/*",
        "codedeploy:StopDeployment": ":deploymentgroup:checkout*",
        "codedeploy:PutLifecycleEventHookExecutionStatus": ":deploymentgroup:checkout*",
        "lambda:InvokeFunction": ":function:checkout-*",
    }
    seen: set[str] = set()
    for fn, items in statements.items():
        for statement in items:
            for action in _actions(statement):
                if action in scopes:
                    seen.add(action)
                    assert str(statement["Resource"]).endswith(scopes[action]), (fn, action, statement["Resource"])
    assert seen == set(scopes)


def test_read_and_write_statements_are_split() -> None:
    for fn, items in _statements(_stack(**GUARDED)).items():
        for statement in items:
            actions = _actions(statement)
            mutating = [a for a in actions if a in MUTATING]
            assert not mutating or len(mutating) == len(actions), f"{fn}: {statement['Sid']} mixes read and write"


ASYNC_FUNCTIONS = [
    "AssessorFunction", "LifecycleHookFunction", "DeploymentRecorderFunction", "NotificationRouterFunction",
    "TrafficCheckFunction",
]  # fmt: skip


@pytest.mark.parametrize("function", ASYNC_FUNCTIONS)
def test_every_asynchronously_invoked_function_has_an_on_failure_destination(function: str) -> None:
    properties = _stack().resources[function]["Properties"]
    on_failure = properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS" and on_failure["Destination"]["Fn::GetAtt"][1] == "Arn"
    assert properties["ReservedConcurrentExecutions"] >= 1


def test_tables_and_queues_holding_data_are_retained_and_encrypted() -> None:
    stack = _stack()
    for kind in ("AWS::DynamoDB::Table", "AWS::SQS::Queue"):
        for logical_id, resource in stack.of_type(kind).items():
            assert resource.get("DeletionPolicy") == "Retain", logical_id
            assert resource.get("UpdateReplacePolicy") == "Retain", logical_id
            encryption = ("SSESpecification", "KmsMasterKeyId", "SqsManagedSseEnabled")
            properties = {k: stack.resolve(v) for k, v in resource["Properties"].items() if k in encryption}
            encrypted = (
                properties.get("SSESpecification", {}).get("SSEEnabled")
                or properties.get("KmsMasterKeyId")
                or properties.get("SqsManagedSseEnabled")
            )
            assert encrypted, logical_id
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with_key = _stack(KmsKeyArn=key)
    encrypted_by_key = ["DeploymentsTable", "DeploymentEventsTopic", "NotificationDeadLetterQueue"]
    encrypted_by_key.append("FunctionFailureQueue")
    for logical_id in encrypted_by_key:
        properties = with_key.resolve(with_key.resources[logical_id]["Properties"])
        assert key in (properties.get("KmsMasterKeyId"), properties.get("SSESpecification", {}).get("KMSMasterKeyId"))


def test_every_checkov_suppression_has_a_reason() -> None:
    for logical_id, resource in _stack().resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV") and len(skip.get("comment", "")) > 20, logical_id
