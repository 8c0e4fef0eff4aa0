"""IAM on the embedded AWS, opt-in (``EmbeddedAws(enforce_iam=True)``): moto enforces no IAM, so a permission
missing from template.yaml would pass every local test and fail only on AWS. With enforcement on, an AWS call
made while a template function's handler runs is refused (``AccessDenied``, as AWS answers) when that function's
role in template.yaml allows none of the call's IAM actions.

The roles are read from template.yaml itself, as SAM expands them: each function's ``Policies`` (inline
statements and SAM policy templates, whose actions are :data:`SAM_POLICY_TEMPLATES`, copied from
aws-sam-translator's ``policy_templates.json``; a policy template not listed there is an error, never a silent
grant), ``Fn::If`` decided by the template's conditions for the parameters given (:data:`DEPLOYED_PARAMETERS`
by default: every guard prefix set, as a deployment that guards Lambda, ECS and CodeDeploy has them), plus what
SAM adds itself (an SQS event source's poller actions). aws-sam-translator itself is not used: it lives in the
security tools' environment (``.venv-checkov``), not the application's, and its expansion needs the template
packaged first (``sam_expand.py``); the policy templates are the one part of it that matters here.

What is enforced, and what not:

- actions (``Action`` with IAM wildcards, case-insensitive; ``Deny`` wins over ``Allow``). Resources and
  conditions are not matched: a call allowed on another table or key passes. Missing actions are the gap moto
  hides; resources are checked by cfn-lint, checkov and the policy review.
- only calls of template functions' handlers (and of the threads they start through ``ThreadPoolExecutor``).
  The harness, the sample application, the clock's listeners (traffic) and calls AWS makes itself while serving
  a call (a Step Functions execution, an SNS delivery) are not a function's and pass.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import fnmatch
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.client
from botocore.exceptions import ClientError

from deployguard_local.template import Stack

# aws-sam-translator 1.115.0, samtranslator/policy_templates_data/policy_templates.json: the actions of the
# policy templates template.yaml uses (all statements of each)
SAM_POLICY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "AWSSecretsManagerGetSecretValuePolicy": ("secretsmanager:GetSecretValue",),
    "DynamoDBCrudPolicy": (
        "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
        "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
        "dynamodb:ConditionCheckItem",
    ),
    "DynamoDBReadPolicy": (
        "dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
    ),
    "LambdaInvokePolicy": ("lambda:InvokeFunction",),
    "S3ReadPolicy": (
        "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion",
        "s3:GetLifecycleConfiguration",
    ),
    "SNSPublishMessagePolicy": ("sns:Publish",),
    "SQSSendMessagePolicy": ("sqs:SendMessage*",),
    "SSMParameterReadPolicy": (
        "ssm:DescribeParameters", "ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath",
    ),
}  # fmt: skip

# SAM attaches AWSLambdaSQSQueueExecutionRole to a function with an SQS event source
SQS_EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")

# The parameters the roles are read for: a deployment that guards Lambda functions, ECS services and CodeDeploy
# applications (the guard statements are ``Fn::If`` on these). The values only need to be set: actions are
# enforced, not resources.
DEPLOYED_PARAMETERS: dict[str, str] = {
    "GuardedFunctionPrefix": "checkout-",
    "GuardedEcsServicePrefix": "prod/",
    "GuardedCodeDeployApplicationPrefix": "checkout-",
}

# botocore service name -> IAM action prefix, where they differ
_IAM_PREFIX = {"stepfunctions": "states", "elbv2": "elasticloadbalancing"}
# (IAM prefix, operation) -> the IAM action AWS authorises it as, where the names differ
_OPERATION_ACTION = {
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeAsync"): "lambda:InvokeFunction",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sns", "PublishBatch"): "sns:Publish",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("dynamodb", "TransactGetItems"): "dynamodb:GetItem",
}
_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
_NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}


class UnknownPolicyTemplate(ValueError):
    """template.yaml uses a SAM policy template :data:`SAM_POLICY_TEMPLATES` does not know."""


@dataclass(frozen=True)
class _Caller:
    function: str | None  # a template function's logical id; None: not a template function
    in_call: bool = False  # an AWS call of it is being served: calls now are AWS's own


_caller: contextvars.ContextVar[_Caller | None] = contextvars.ContextVar("deployguard_iam_caller", default=None)


@contextlib.contextmanager
def running_as(function: str | None) -> Iterator[None]:
    """Calls made meanwhile (this thread, and pools it submits to) are ``function``'s (a template function's
    logical id), or nobody's in particular (``None``: the harness, AWS itself)."""
    token = _caller.set(_Caller(function))
    try:
        yield
    finally:
        _caller.reset(token)


def current_function() -> str | None:
    caller = _caller.get()
    return caller.function if caller is not None and not caller.in_call else None


@dataclass
class RolePolicy:
    """The IAM actions a function's role allows and denies (patterns, lower case); its inline statements and
    SAM policy templates (name, parameters) as the template gives them, ``Fn::If`` decided."""

    function: str
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    templates: list[tuple[str, Any]] = field(default_factory=list)

    def allows(self, action: str) -> bool:
        wanted = action.lower()
        if any(fnmatch.fnmatchcase(wanted, pattern) for pattern in self.deny):
            return False
        return any(fnmatch.fnmatchcase(wanted, pattern) for pattern in self.allow)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _decide(value: Any, condition: Callable[[str], bool]) -> Any:
    """``value`` with every ``Fn::If`` replaced by its branch (``None`` for ``AWS::NoValue``)."""
    if isinstance(value, list):
        return [d for d in (_decide(v, condition) for v in value) if d is not None]
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return _decide(when_true if condition(name) else when_false, condition)
        if value == {"Ref": "AWS::NoValue"}:
            return None
        return {k: _decide(v, condition) for k, v in value.items()}
    return value


def _add_statement(policy: RolePolicy, statement: Any) -> None:
    if not isinstance(statement, dict) or "Effect" not in statement:
        raise ValueError(f"{policy.function}: a policy statement without Effect: {statement!r}")
    if "NotAction" in statement:
        raise ValueError(f"{policy.function}: NotAction is not enforced locally; use Action")
    actions = [str(a).lower() for a in _as_list(statement.get("Action"))]
    policy.statements.append(statement)
    (policy.allow if statement["Effect"] == "Allow" else policy.deny).extend(actions)


def role_policies(stack: Stack, parameters: Mapping[str, str] | None = None) -> dict[str, RolePolicy]:
    """Each ``AWS::Serverless::Function``'s role (logical id -> :class:`RolePolicy`), for ``parameters``
    (:data:`DEPLOYED_PARAMETERS` when not given) over the template's defaults."""
    chosen = Stack(root=stack.root, template=stack.template, parameters=dict(stack.parameters))
    chosen.parameters.update(DEPLOYED_PARAMETERS if parameters is None else parameters)
    roles: dict[str, RolePolicy] = {}
    for logical_id in stack.of_type("AWS::Serverless::Function"):
        properties = _decide(chosen.function_definition(logical_id), chosen.condition)
        policy = RolePolicy(logical_id)
        for item in _as_list(properties.get("Policies")):
            if isinstance(item, str):
                raise UnknownPolicyTemplate(f"{logical_id}: managed policy {item} is not known locally")
            if not isinstance(item, dict):
                continue
            if "Statement" in item:
                for statement in _as_list(item["Statement"]):
                    _add_statement(policy, statement)
                continue
            for name in item:
                if name not in SAM_POLICY_TEMPLATES:
                    raise UnknownPolicyTemplate(
                        f"{logical_id}: SAM policy template {name} is not in emulator.iam.SAM_POLICY_TEMPLATES; "
                        "add its actions from aws-sam-translator's policy_templates.json"
                    )
                policy.allow.extend(a.lower() for a in SAM_POLICY_TEMPLATES[name])
                policy.templates.append((name, item[name]))
        events = properties.get("Events") or {}
        if any(isinstance(e, dict) and e.get("Type") == "SQS" for e in events.values()):
            policy.allow.extend(a.lower() for a in SQS_EVENT_SOURCE_ACTIONS)
        roles[logical_id] = policy
    return roles


def call_actions(service_name: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """The IAM actions AWS authorises an API call as (all are needed)."""
    prefix = _IAM_PREFIX.get(service_name, service_name)
    if (prefix, operation) == ("dynamodb", "TransactWriteItems"):
        kinds = {kind for item in params.get("TransactItems", []) for kind in item}
        return sorted(_TRANSACT_WRITE[kind] for kind in kinds if kind in _TRANSACT_WRITE)
    return [_OPERATION_ACTION.get((prefix, operation), f"{prefix}:{operation}")]


@dataclass
class Refusal:
    function: str
    action: str
    operation: str


def _access_denied(service_name: str, operation: str, function: str, action: str) -> ClientError:
    code, status = {"sns": ("AuthorizationError", 403), "s3": ("AccessDenied", 403), "sqs": ("AccessDenied", 403)}.get(
        service_name, ("AccessDeniedException", 400)
    )
    message = (
        f"User: arn:aws:sts::123456789012:assumed-role/{function}Role/{function} is not authorized to perform: "
        f"{action} because no identity-based policy allows the {action} action"
    )
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)  # fmt: skip


class IamEnforcement:
    """Refuses the AWS calls of template functions that their roles do not allow (see the module's doc).
    :attr:`refused` lists what was refused, in order."""

    def __init__(self, roles: Mapping[str, RolePolicy]) -> None:
        self.roles = dict(roles)
        self.refused: list[Refusal] = []
        self._lock = threading.Lock()

    def check(self, service_name: str, operation: str, params: Mapping[str, Any]) -> None:
        function = current_function()
        role = self.roles.get(function) if function is not None else None
        if role is None or function is None:
            return
        for action in call_actions(service_name, operation, params):
            if action in _NO_PERMISSION_NEEDED or role.allows(action):
                continue
            with self._lock:
                self.refused.append(Refusal(function, action, operation))
            raise _access_denied(service_name, operation, function, action)

    def install(self) -> Callable[[], None]:
        """Patch botocore (every client) and thread pools (the caller carried into their threads); returns
        the undo."""
        original_call = botocore.client.BaseClient._make_api_call
        original_submit = concurrent.futures.ThreadPoolExecutor.submit
        enforcement = self

        def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            caller = _caller.get()
            if caller is None or caller.function is None or caller.in_call:
                return original_call(client, operation_name, api_params)
            enforcement.check(client.meta.service_model.service_name, operation_name, api_params)
            token = _caller.set(_Caller(caller.function, in_call=True))  # what AWS does meanwhile is its own
            try:
                return original_call(client, operation_name, api_params)
            finally:
                _caller.reset(token)

        def submit(pool: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            context = contextvars.copy_context()
            return original_submit(pool, context.run, fn, *args, **kwargs)

        botocore.client.BaseClient._make_api_call = make_api_call
        concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]

        def undo() -> None:
            botocore.client.BaseClient._make_api_call = original_call
            concurrent.futures.ThreadPoolExecutor.submit = original_submit  # type: ignore[method-assign]

        return undo
