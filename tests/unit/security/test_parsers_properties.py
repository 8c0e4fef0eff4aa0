"""Property-based tests (Hypothesis) of every parser of outside input: whatever arrives, the only
exception is the project's own (``DeployGuardError`` subclasses), naming what is wrong.

Inputs are arbitrary JSON-like documents, the sample events of ``events/`` with one part replaced
by arbitrary data, and arbitrary text. Few examples, no deadline: they stay fast in the suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployguard.alerts.expression import parse as parse_expression
from deployguard.alerts.fields import BUILTIN_FIELDS
from deployguard.analysis.scenario import parse_scenario_text
from deployguard.config import parse_config
from deployguard.exceptions import DeployGuardError, InvalidEventError
from deployguard.hooks.lifecycle import HookEvent
from deployguard.inbound import MAX_EVENT_BYTES, parse_event
from deployguard.notification.urlsafety import check_outbound
from deployguard.workflows.canary import CanaryTask
from deployguard.workflows.notification_router import parse_deployment_event, parse_sns
from deployguard.workflows.recorder import StateChangeDetail

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "events"
# 30 examples each in the suite; DG_HYPOTHESIS_EXAMPLES=1000 for a deeper run by hand
EXAMPLES = int(os.environ.get("DG_HYPOTHESIS_EXAMPLES", "30"))
FEW = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)


def _sample(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found += _paths(value, (*prefix, i))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def mutated(name: str) -> st.SearchStrategy[Any]:
    """The sample event ``name`` with one of its parts replaced by arbitrary JSON."""
    sample = _sample(name)
    paths = _paths(sample)
    return st.tuples(st.sampled_from(paths), json_values).map(lambda pv: _replace(sample, pv[0], pv[1]))


def only_our_errors(parse: Callable[[Any], Any], value: Any) -> None:
    try:
        parse(value)
    except DeployGuardError as exc:
        assert str(exc)  # says what is wrong
    # anything else propagates and fails the test


# --------------------------------------------------------------------------- events


@FEW
@given(json_values | mutated("sns_deployment_event.json"))
def test_sns_envelope(event: Any) -> None:
    only_our_errors(parse_sns, event)


@FEW
@given(st.text(max_size=200) | json_values.map(json.dumps) | mutated("sns_deployment_event.json").map(json.dumps))
def test_sns_message_as_deployment_event(message: str) -> None:
    only_our_errors(parse_deployment_event, message)


def test_sns_message_message_bodies_are_bounded() -> None:
    sample = json.loads(_sample("sns_deployment_event.json")["Records"][0]["Sns"]["Message"])
    sample["details"] = {"padding": "x" * MAX_EVENT_BYTES}
    with pytest.raises(InvalidEventError, match="at most 262144") as caught:
        parse_deployment_event(json.dumps(sample))
    assert caught.value.field == "(message)"


@FEW
@given(json_values | mutated("codedeploy_lifecycle_hook.json") | mutated("codedeploy_lifecycle_hook_ecs.json"))
def test_lifecycle_hook_event(event: Any) -> None:
    only_our_errors(lambda e: parse_event(HookEvent, e, "lifecycle hook event"), event)


@FEW
@given(json_values | mutated("codedeploy_state_change.json") | mutated("codedeploy_instance_state_change.json"))
def test_recorder_event_and_detail(event: Any) -> None:
    def parse(raw: Any) -> None:
        envelope = parse_event(EventBridgeModel, raw, "EventBridge event")
        parse_event(StateChangeDetail, envelope.detail, "CodeDeploy state-change detail")

    only_our_errors(parse, event)


@FEW
@given(json_values | mutated("schedule.json"))
def test_scheduled_event(event: Any) -> None:
    only_our_errors(lambda e: parse_event(EventBridgeModel, e, "scheduled event"), event)


@FEW
@given(json_values | mutated("canary_assess.json") | mutated("canary_validate.json"))
def test_canary_task(event: Any) -> None:
    only_our_errors(lambda e: parse_event(CanaryTask, e, "canary task"), event)


def _approval_task_model() -> Any:
    spec = importlib.util.spec_from_file_location("approval_app", ROOT / "functions/remediation_approval/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the model's annotations through it
    spec.loader.exec_module(module)
    return module.ApprovalTask


@FEW
@given(json_values | mutated("remediation_approval_run.json"))
def test_approval_task(event: Any) -> None:
    model = _approval_task_model()
    only_our_errors(lambda e: parse_event(model, e, "approval task"), event)


def _nested(depth: int) -> Any:
    document: Any = "deep"
    for _ in range(depth):
        document = [document]
    return {"Records": document}


@pytest.mark.parametrize(
    "document",
    [
        _nested(40),
        {"k": list(range(30_000))},
        {"Records": "x" * (MAX_EVENT_BYTES + 1)},
    ],
)
def test_events_over_the_bounds_are_refused_naming_them(document: Any) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_sns(document)
    assert caught.value.field == "(event)"


# --------------------------------------------------------------------------- configuration, scenarios, rules, URLs


@FEW
@given(st.text(max_size=300) | json_values.map(lambda v: yaml.safe_dump({"notifications": v, "services": v})))
def test_configuration_loader(text: str) -> None:
    only_our_errors(lambda t: parse_config(t, "conf.yaml"), text)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        ),
        "x: " + "y" * (1024 * 1024 + 1),
    ],
    ids=["deep", "billion-laughs", "large"],
)
def test_configuration_bombs_are_refused(text: str) -> None:
    with pytest.raises(DeployGuardError) as caught:
        parse_config(text, "conf.yaml")
    assert "file conf.yaml" in str(caught.value)


@FEW
@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_scenario_files(text: str) -> None:
    only_our_errors(lambda t: parse_scenario_text(t, "scenario.json"), text)


@FEW
@given(st.text(max_size=120) | st.text(alphabet="()not error_rate>5%²٣ ", max_size=300))
def test_rule_expressions(text: str) -> None:
    only_our_errors(lambda t: parse_expression(t, BUILTIN_FIELDS), text)


@FEW
@given(
    st.text(max_size=120)
    | st.builds(lambda h, p: f"https://{h}{p}", st.text(max_size=80), st.text(max_size=20))
    | st.builds(lambda h: f"https://{h}/x", st.from_regex(r"[0-9a-fx.:\[\]]{1,40}", fullmatch=True))
)
def test_outbound_urls(url: str) -> None:
    only_our_errors(lambda u: check_outbound(u, ["hooks.example.com", "*.example.com"], False,
                                             resolver=lambda host: ["93.184.216.34"]), url)  # fmt: skip
