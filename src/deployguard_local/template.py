"""Reading template.yaml the way CloudFormation would, for the embedded AWS.

The embedded AWS creates its tables, topic, queue, functions and state machine
from the template itself (and the ASL file it points at), so the local system and
the deployed one cannot drift apart.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NO_VALUE = object()


# libyaml's parser when PyYAML has it (about 8x faster than the pure-Python one: every embedded AWS reads
# the template), the same constructors
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _CfnLoader(_SafeLoader):
    """YAML loader that understands CloudFormation's short-form intrinsics (!Ref, !Sub ...)."""


def _intrinsic(loader: _SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


_parsed: dict[tuple[Path, int, int], dict[str, Any]] = {}


def load_template(path: Path) -> dict[str, Any]:
    """The template as a new dict (the caller may change it), parsed once per process and file version."""
    stat = path.stat()
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        with path.open(encoding="utf-8") as fh:
            _parsed[key] = yaml.load(fh, Loader=_CfnLoader)
    return copy.deepcopy(_parsed[key])


@dataclass
class Stack:
    """A template with its parameters, conditions and physical names resolved."""

    root: Path
    template: dict[str, Any]
    stack_name: str = "deployguard-local"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    parameters: dict[str, str] = field(default_factory=dict)
    physical: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, **kwargs: Any) -> Stack:
        stack = cls(root=root, template=load_template(root / "template.yaml"), **kwargs)
        for name, spec in stack.template.get("Parameters", {}).items():
            stack.parameters.setdefault(name, str(spec.get("Default", "")))
        return stack

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def set_physical(self, logical_id: str, **attributes: str) -> None:
        self.physical.setdefault(logical_id, {}).update(attributes)

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical and "Ref" in self.physical[name]:
            return self.physical[name]["Ref"]
        raise KeyError(f"template.yaml: !Ref {name} names nothing the embedded AWS has created")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.physical[logical_id][attribute]
        except KeyError as exc:
            raise KeyError(f"template.yaml: !GetAtt {logical_id}.{attribute} is not known locally") from exc

    def resolve(self, value: Any) -> Any:
        """Evaluate intrinsic functions in ``value`` (Ref, GetAtt, Sub, If, Equals, Not)."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub_var(m.group(1), extra), text)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _sub_var(self, name: str, extra: dict[str, Any]) -> str:
        if name in extra:
            return str(extra[name])
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.get_att(logical, attribute)
        return str(self.ref(name))

    def function_definition(self, logical_id: str) -> dict[str, Any]:
        """A function's properties merged over the template's Globals."""
        props = dict(self.resources[logical_id]["Properties"])
        globals_ = dict(self.template.get("Globals", {}).get("Function", {}))
        env = dict(globals_.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        merged = {**globals_, **props}
        merged["Environment"] = {"Variables": env}
        return merged

    def state_machine_definition(self, logical_id: str) -> str:
        props = self.resources[logical_id]["Properties"]
        text = (self.root / props["DefinitionUri"]).read_text(encoding="utf-8")
        substitutions = self.resolve(props.get("DefinitionSubstitutions", {}))
        for name, value in substitutions.items():
            text = text.replace("${" + name + "}", str(value))
        json.loads(text)  # a substitution must leave valid JSON
        return text
