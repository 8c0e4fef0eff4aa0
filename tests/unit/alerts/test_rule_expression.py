from __future__ import annotations

import pytest

from deployguard.alerts.expression import Unit, parse, tokenize
from deployguard.alerts.fields import BUILTIN_FIELDS
from deployguard.exceptions import ExpressionError

F = BUILTIN_FIELDS


def ev(text: str, baseline: dict[str, float | None] | None = None, **values: float | str | None) -> bool | None:
    return parse(text, F).evaluate(values, baseline or {})


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("health_score > 70", 71, True),
        ("health_score > 70", 70, False),
        ("health_score >= 70", 70, True),
        ("health_score >= 70", 69.9, False),
        ("health_score < 70", 69, True),
        ("health_score < 70", 70, False),
        ("health_score <= 70", 70, True),
        ("health_score <= 70", 70.1, False),
        ("health_score == 70", 70.0, True),
        ("health_score == 70", 71, False),
        ("health_score != 70", 71, True),
        ("health_score != 70", 70, False),
        ("70 > health_score", 60, True),  # a number on the left
    ],
)
def test_each_comparison_operator(text: str, value: float, expected: bool) -> None:
    assert ev(text, health_score=value) is expected


def test_percentages_follow_the_unit_of_the_field() -> None:
    assert ev("error_rate > 5%", error_rate=0.06) is True  # ratio: 5% == 0.05
    assert ev("error_rate > 5%", error_rate=0.04) is False
    assert ev("cpu_utilization > 90%", cpu_utilization=91) is True  # percent: 90% == 90
    assert ev("cpu_utilization > 90%", cpu_utilization=0.95) is False
    assert ev("health_score < 70%", health_score=69) is True
    assert ev("error_rate > 0.05", error_rate=0.06) is True  # a plain ratio works too


def test_and_or_not_and_parentheses() -> None:
    overload = "cpu_utilization > 90% and memory_utilization > 95%"
    assert ev(overload, cpu_utilization=95, memory_utilization=96) is True
    assert ev(overload, cpu_utilization=95, memory_utilization=90) is False
    assert ev("error_rate > 5% or health_score < 70", error_rate=0.01, health_score=60) is True
    assert ev("error_rate > 5% or health_score < 70", error_rate=0.01, health_score=80) is False
    assert ev("not health_score >= 70", health_score=60) is True
    assert ev("not (health_score >= 70 or error_rate > 5%)", health_score=80, error_rate=0) is False
    # and binds tighter than or
    assert ev("health_score < 10 and error_rate > 5% or throttles > 0", health_score=90, error_rate=0, throttles=1)
    assert not ev(
        "health_score < 10 and (error_rate > 5% or throttles > 0)", health_score=90, error_rate=0, throttles=1
    )
    assert ev("NOT health_score > 90 AND error_rate < 1%", health_score=80, error_rate=0) is True  # keywords any case


def test_relative_changes_against_the_baseline() -> None:
    p99 = "response_time_p99 increase > 50% vs baseline"
    assert ev(p99, {"response_time_p99": 100}, response_time_p99=151) is True
    assert ev(p99, {"response_time_p99": 100}, response_time_p99=150) is False
    assert ev(p99, {"response_time_p99": 100}, response_time_p99=40) is False
    tput = "throughput decrease > 30%"  # 'vs baseline' is implied
    assert ev(tput, {"throughput": 1000}, throughput=650) is True
    assert ev(tput, {"throughput": 1000}, throughput=800) is False
    assert ev("throughput change >= 20%", {"throughput": 100}, throughput=120) is True
    assert ev("throughput change >= 20%", {"throughput": 100}, throughput=80) is True
    assert ev("throughput change < 10%", {"throughput": 100}, throughput=105) is True  # a change is always a percentage


def test_unknown_values_are_unknown_and_follow_kleene_logic() -> None:
    assert ev("error_rate > 5%") is None
    assert ev("response_time_p99 increase > 50%", response_time_p99=300) is None  # no baseline
    assert ev("response_time_p99 increase > 50%", {"response_time_p99": 0}, response_time_p99=3) is None
    assert ev("error_rate > 5% or health_score < 70", health_score=60) is True
    assert ev("error_rate > 5% and health_score < 70", health_score=80) is False
    assert ev("error_rate > 5% and health_score < 70", health_score=60) is None
    assert ev("not error_rate > 5%") is None
    # zero events at the baseline are known: a surge from none is beyond any ratio, none against none no change
    assert ev("failed_authentications increase > 200%", {"failed_authentications": 0}, failed_authentications=30)
    assert ev("error_rate increase > 50%", {"error_rate": 0}, error_rate=0) is False


def test_text_fields_compare_with_equality() -> None:
    assert ev('event == "deployment.failed"', event="deployment.failed") is True
    assert ev("event != 'deployment.failed'", event="rollback.failed") is True
    assert ev('environment == "production" and health_score < 85', environment="staging", health_score=80) is False


def test_conversion_rate_drop_and_security_fields() -> None:
    assert ev("conversion_rate_drop > 15%", conversion_rate_drop=0.2) is True
    assert ev("security_violations > 0 or failed_authentications > 50", failed_authentications=51) is True


def test_tokenizer_positions() -> None:
    tokens = tokenize("cpu_utilization >= 90% and (x<1)")
    assert [(t.kind, t.text, t.column) for t in tokens][:4] == [
        ("ident", "cpu_utilization", 1),
        ("op", ">=", 17),
        ("number", "90", 20),
        ("percent", "%", 22),
    ]
    assert tokens[-1].kind == "end"


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("cpu_utilisation > 90%", 1, "unknown field 'cpu_utilisation' (did you mean 'cpu_utilization'?)"),
        ("error_rate > 5% and", 20, "expected a field name"),
        ("error_rate > 5% &&  health_score < 70", 17, "unexpected character '&'"),
        ("error_rate = 5%", 12, "use == to compare"),
        ("(error_rate > 5%", 17, "expected ')'"),
        ("error_rate > 5% health_score", 17, "expected 'and', 'or'"),
        ("error_rate 5%", 12, "expected a comparison operator"),
        ('event == "deployment.failed', 10, "unterminated string"),
        ("response_time_p99 > 5%", 21, "a percentage means nothing for 'response_time_p99'"),
        ('health_score > "high"', 16, "field 'health_score' is a number, compared with text"),
        ("event == 5", 10, "a number compared with a text field"),
        ('event > "a"', 7, "text is compared with == or !="),
        ("throughput decrease == 30%", 21, "not =="),
        ("throughput increase > 50% vs yesterday", 30, "expected 'baseline'"),
        ("event increase > 5%", 1, "is text"),
        ("5 > 3", 1, "needs at least one field"),
        ("cpu_utilization > health_score", 17, "comparing percent with score"),
        ("1.2.3 > error_rate", 1, "malformed number"),
        ("", 1, "empty expression"),
        ("__import__('os').system('true')", 17, "unexpected character '.'"),  # never reaches Python
        ("__import__ > 1", 1, "unknown field '__import__'"),
    ],
)
def test_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text, F)
    assert info.value.column == column, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"column {column}: ")


def test_custom_fields_extend_the_language() -> None:
    fields = {**F, "checkout_failures": Unit.COUNT}
    assert parse("checkout_failures > 3", fields).evaluate({"checkout_failures": 4}, {}) is True
    assert parse("checkout_failures > 3", fields).fields == frozenset({"checkout_failures"})
