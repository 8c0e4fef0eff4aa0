"""Expand ``template.yaml`` with AWS SAM's own translator, offline, for checkov (``make checkov``).

Runs in the security tools' environment (``.venv-checkov``, pinned in
``requirements-checkov.txt``), not the application's:

    .venv-checkov/bin/python src/deployguard_local/sam_expand.py template.yaml build/template.expanded.json

Resource ``Metadata`` (checkov suppressions, each with its reason) is passed through to
the resources SAM generates, so a suppression stays next to the resource it is about.
Managed policies are never looked up by name (the template names none): no AWS account
or network is needed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class _NoManagedPolicyLookup:
    """SAM asks for managed policy ARNs only for policies given by name; the template gives none."""

    def load(self) -> dict[str, str]:
        return {}


_PACKAGE_BUCKET = "s3://deployguard-package"


def _as_packaged(document: dict[str, Any], base: Path) -> None:
    """What ``sam package`` does before the transform: code to S3 URIs, state machine definitions inlined."""
    for resource in document.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"{_PACKAGE_BUCKET}/{properties[key].strip('/')}.zip"
        definition = properties.get("DefinitionUri")
        if isinstance(definition, str) and not definition.startswith("s3://"):
            text = (base / definition).read_text(encoding="utf-8")
            substitutions = properties.get("DefinitionSubstitutions") or {}
            for name, value in list(substitutions.items()):
                if isinstance(value, str | int | float):  # literal values; intrinsics stay substitutions
                    text = text.replace("${" + name + "}", str(value))
                    del substitutions[name]
            properties["Definition"] = json.loads(text)
            del properties["DefinitionUri"]


def expand(template_path: Path) -> dict[str, Any]:
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # pseudo parameters only; nothing is called
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    document = yaml_parse(template_path.read_text(encoding="utf-8"))
    _as_packaged(document, template_path.parent)
    expanded: dict[str, Any] = transform(document, {}, _NoManagedPolicyLookup(), passthrough_metadata=True)
    return expanded


# Actions that change nothing, or that AWS only grants on "*" (no resource-level permission)
_READ_VERBS = ("Get", "List", "Describe", "BatchGet", "Query", "Scan")
_ANY_RESOURCE_ONLY = {
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:PutMetricData",
    # a task token is itself the capability: Step Functions grants callbacks on "*"
    "states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat",
    # Step Functions' log delivery (vended logs): CloudWatch Logs supports no resource-level permission
    # for these, so SAM's Logging grants them on "*" (the log group itself is named in the state machine)
    "logs:CreateLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery", "logs:PutResourcePolicy",
}  # fmt: skip
_KMS_THROUGH_A_SERVICE = {"kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKey*"}


def _branches(value: Any) -> list[Any]:
    """Both outcomes of an ``Fn::If`` (recursively), else the value itself."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        return [*_branches(when_true), *_branches(when_false)]
    return [value]


def _statements(expanded: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in expanded.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        documents = []
        if resource.get("Type") == "AWS::IAM::Role":
            documents = [p.get("PolicyDocument", {}) for p in properties.get("Policies", []) if isinstance(p, dict)]
        elif resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [properties.get("PolicyDocument", {})]
        for document in documents:
            for statement in document.get("Statement", []):
                for branch in _branches(statement):
                    if isinstance(branch, dict) and "Effect" in branch:
                        found.append((logical_id, branch))
    return found


def mutating_actions_on_any_resource(expanded: dict[str, Any]) -> list[str]:
    """``role: action`` for every Allow of a mutating action on ``*`` in the expanded template's inline policies."""
    problems: list[str] = []
    for logical_id, statement in _statements(expanded):
        if statement.get("Effect") != "Allow":
            continue
        resources = [r for raw in _as_list(statement.get("Resource")) for r in _branches(raw)]
        if "*" not in resources:
            continue
        for action in _as_list(statement.get("Action")):
            verb = str(action).split(":", 1)[-1]
            if verb.startswith(_READ_VERBS) or action in _ANY_RESOURCE_ONLY:
                continue
            if action in _KMS_THROUGH_A_SERVICE and "kms:ViaService" in json.dumps(statement.get("Condition", {})):
                continue
            problems.append(f"{logical_id}: {action} on *")
    return problems


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: sam_expand.py TEMPLATE OUTPUT", file=sys.stderr)
        return 2
    expanded = expand(Path(argv[0]))
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expanded, indent=1, sort_keys=True, default=str), encoding="utf-8")
    statements = _statements(expanded)
    print(f"{argv[0]}: {len(expanded.get('Resources', {}))} resources, {len(statements)} IAM statements "
          f"after SAM expansion -> {out}")  # fmt: skip
    problems = mutating_actions_on_any_resource(expanded)
    for problem in problems:
        print(f"IAM: mutating action on every resource: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
