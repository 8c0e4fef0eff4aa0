"""The rule language refuses what it cannot handle with an error naming the rule and the column."""

from __future__ import annotations

import pytest

from deployguard.alerts.expression import MAX_EXPRESSION_LENGTH, MAX_NESTING, Unit, parse
from deployguard.config import parse_config
from deployguard.exceptions import ConfigError, ExpressionError

FIELDS = {"error_rate": Unit.RATIO, "cpu_utilization": Unit.PERCENT, "event": Unit.TEXT}


def _rule_config(expression: str) -> str:
    return f"alerting:\n  rules:\n    - name: deep\n      expression: '{expression}'\n      severity: error\n"


@pytest.mark.parametrize(
    "text",
    ["(" * 250 + "error_rate > 5%" + ")" * 250, "not " * 400 + "error_rate > 5%", "(not " * 200 + "error_rate > 1"],
)
def test_deep_nesting_is_an_error_with_the_column(text: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text, FIELDS)
    assert f"nested more than {MAX_NESTING} deep" in str(caught.value) and caught.value.column > 1


def test_nesting_up_to_the_limit_parses() -> None:
    text = "(" * MAX_NESTING + "error_rate > 5%" + ")" * MAX_NESTING
    assert parse(text, FIELDS).evaluate({"error_rate": 0.1}, {}) is True
    assert parse("not " * MAX_NESTING + "error_rate > 5%", FIELDS).evaluate({"error_rate": 0.1}, {}) is True


def test_a_thousand_nots_are_refused_by_length() -> None:
    with pytest.raises(ExpressionError, match=f"at most {MAX_EXPRESSION_LENGTH}"):
        parse("not " * 1000 + "error_rate > 5%", FIELDS)


def test_length_limit() -> None:
    text = " or ".join(["error_rate > 5%"] * 200)
    assert len(text) > MAX_EXPRESSION_LENGTH
    with pytest.raises(ExpressionError, match=f"at most {MAX_EXPRESSION_LENGTH}") as caught:
        parse(text, FIELDS)
    assert caught.value.column == MAX_EXPRESSION_LENGTH + 1


@pytest.mark.parametrize(
    ("text", "column"),
    [("error_rate > ²", 14), ("error_rate > 5²", 14), ("error_rate > ٣", 14), ("érror_rate > 5", 1),
     ("error_rate > 5 and cpu_utilization > \uff190", 38), ("error_rate\u00a0> 5", 11)],
)  # fmt: skip
def test_non_ascii_digits_and_letters_are_clean_errors(text: str, column: int) -> None:
    with pytest.raises(ExpressionError, match=r"only ASCII|malformed number") as caught:
        parse(text, FIELDS)
    assert caught.value.column == column


def test_huge_numbers_are_refused() -> None:
    with pytest.raises(ExpressionError, match="too large"):
        parse("error_rate > " + "9" * 400, FIELDS)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [("(" * 250 + "error_rate > 5%" + ")" * 250, "nested more than"), ("not " * 1000 + "error_rate > 5%", "at most"),
     ("error_rate > ²", "only ASCII")],
)  # fmt: skip
def test_the_configuration_loader_names_the_rule_and_column(expression: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_rule_config(expression), "conf.yaml")
    message = str(caught.value)
    assert "file conf.yaml" in message and "rules.0.expression" in message and "rule 'deep'" in message
    assert "column " in message and fragment in message
