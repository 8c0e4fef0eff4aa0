"""The alert rule language: a tokenizer, a recursive-descent parser and an evaluator.

User text is never handed to Python's ``eval``: it is tokenized, parsed into a small
AST and type-checked against the known fields at load time, then evaluated by
walking that tree. Grammar::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | primary
    primary    := "(" expression ")" | comparison
    comparison := FIELD change OP NUMBER "%" ["vs" "baseline"]  relative to the baseline (metric fields only)
                | operand OP operand
    change     := "increase" | "decrease" | "change"
    operand    := FIELD | NUMBER ["%"] | STRING
    OP         := ">" | ">=" | "<" | "<=" | "==" | "!="

Limits: an expression is at most :data:`MAX_EXPRESSION_LENGTH` characters and nests
parentheses and ``not`` at most :data:`MAX_NESTING` deep; only ASCII digits, letters and
``_`` make numbers and names. Anything else is an :class:`ExpressionError` with the
column, never a ``RecursionError`` or ``ValueError``.

Examples: ``error_rate > 5%``, ``cpu_utilization > 90% and memory_utilization > 95%``,
``response_time_p99 increase > 50% vs baseline``, ``throughput decrease > 30%``,
``event == "deployment.failed"``, ``not (health_score >= 70)``.

Percentages follow the unit of the field they are compared with: ``5%`` is 0.05 for a
ratio (``error_rate``) and 90 for a field measured in percent (``cpu_utilization``).
Evaluation is three-valued: a comparison over a value that is not known (no metric,
no baseline, not an event) is *unknown*; ``and``/``or``/``not`` follow Kleene logic, and
a rule fires only when its expression is *true*. A baseline of zero events (a count or a rate) is
known: against it none is no change and any other value a change beyond every ratio (a surge from
none); a latency or gauge of zero measured nothing (unknown).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from deployguard.exceptions import ExpressionError

MAX_EXPRESSION_LENGTH = 2000
MAX_NESTING = 32
_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | _DIGITS


class Unit(StrEnum):
    """What a field's numbers mean; decides what ``N%`` is and which comparisons make sense."""

    RATIO = "ratio"  # 0..1 (error_rate); 5% == 0.05
    PERCENT = "percent"  # 0..100 (cpu_utilization); 90% == 90
    SCORE = "score"  # 0..100 (health_score); 70% == 70
    MILLISECONDS = "milliseconds"
    COUNT = "count"
    NUMBER = "number"
    TEXT = "text"

    @property
    def numeric(self) -> bool:
        return self is not Unit.TEXT

    def percent(self, value: float) -> float | None:
        """``value%`` in this unit, or None when a percentage means nothing for it."""
        if self is Unit.RATIO:
            return value / 100.0
        if self in (Unit.PERCENT, Unit.SCORE):
            return value
        return None


# --------------------------------------------------------------------------- tokens

TokenKind = Literal["number", "percent", "ident", "string", "op", "lparen", "rparen", "end"]

KEYWORDS = frozenset({"and", "or", "not", "increase", "decrease", "change", "vs", "baseline"})
OPERATORS = (">=", "<=", "==", "!=", ">", "<")


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    column: int  # 1-based

    @property
    def keyword(self) -> str | None:
        return self.text.lower() if self.kind == "ident" and self.text.lower() in KEYWORDS else None


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long, at most {MAX_EXPRESSION_LENGTH} are allowed",
            MAX_EXPRESSION_LENGTH + 1,
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch in " \t\r\n":
            i += 1
        elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            j = i
            while j < n and (text[j] in _DIGITS or text[j] == "."):
                j += 1
            literal = text[i:j]
            if literal.count(".") > 1:
                raise ExpressionError(f"malformed number {literal!r}", col)
            if j < n and (text[j] in _NAME_START or text[j].isalnum()):
                raise ExpressionError(f"malformed number {text[i : j + 1]!r}", col)
            if not math.isfinite(float(literal)):
                raise ExpressionError(f"number {literal[:20]}... is too large", col)
            tokens.append(Token("number", literal, col))
            i = j
        elif ch in _NAME_START:
            j = i
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            tokens.append(Token("ident", text[i:j], col))
            i = j
        elif ch in "\"'":
            j = text.find(ch, i + 1)
            if j < 0:
                raise ExpressionError("unterminated string", col)
            tokens.append(Token("string", text[i + 1 : j], col))
            i = j + 1
        elif ch == "%":
            tokens.append(Token("percent", "%", col))
            i += 1
        elif ch == "(":
            tokens.append(Token("lparen", "(", col))
            i += 1
        elif ch == ")":
            tokens.append(Token("rparen", ")", col))
            i += 1
        else:
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is None:
                hint = " (use == to compare)" if ch == "=" else " (use 'and' / 'or')" if ch in "&|" else ""
                if not ch.isascii():
                    hint = " (only ASCII digits, letters and '_' make numbers and names)"
                raise ExpressionError(f"unexpected character {ch!r}{hint}", col)
            tokens.append(Token("op", op, col))
            i += len(op)
    tokens.append(Token("end", "", n + 1))
    return tokens


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Field:
    name: str
    unit: Unit
    column: int


@dataclass(frozen=True)
class Constant:
    value: float | str
    column: int
    is_percent: bool = False


Operand = Field | Constant


@dataclass(frozen=True)
class Compare:
    left: Operand
    op: str
    right: Operand
    column: int


@dataclass(frozen=True)
class Relative:
    """``field increase|decrease|change OP ratio vs baseline``: the relative change against the baseline."""

    field: Field
    direction: Literal["increase", "decrease", "change"]
    op: str
    threshold: float  # a ratio: 50% == 0.5
    column: int


@dataclass(frozen=True)
class Not:
    operand: Node
    column: int


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    operands: tuple[Node, ...]
    column: int


Node = Compare | Relative | Not | BoolOp


@dataclass(frozen=True)
class Expression:
    """A parsed, type-checked expression."""

    source: str
    root: Node

    @property
    def fields(self) -> frozenset[str]:
        found: set[str] = set()
        _collect_fields(self.root, found)
        return frozenset(found)

    @property
    def uses_baseline(self) -> bool:
        return _any_relative(self.root)

    def evaluate(self, values: Mapping[str, float | str | None], baseline: Mapping[str, float | None]) -> bool | None:
        """True, False, or None when the values needed are not known."""
        return _evaluate(self.root, values, baseline)

    def true_branches(
        self, values: Mapping[str, float | str | None], baseline: Mapping[str, float | None]
    ) -> list[str]:
        """The branches of a top-level ``or`` that are true, as text (``error_rate > 5%``); the whole expression
        when it is not an ``or`` (and true): which condition fired."""
        branches = self.root.operands if isinstance(self.root, BoolOp) and self.root.op == "or" else (self.root,)
        return [render(b) for b in branches if _evaluate(b, values, baseline) is True]


def render(node: Node) -> str:
    """A node as the rule language writes it."""
    if isinstance(node, Compare):
        return f"{_render_operand(node.left)} {node.op} {_render_operand(node.right)}"
    if isinstance(node, Relative):
        return f"{node.field.name} {node.direction} {node.op} {node.threshold * 100:g}% vs baseline"
    if isinstance(node, Not):
        inner = render(node.operand)
        return f"not ({inner})" if isinstance(node.operand, BoolOp) else f"not {inner}"
    parts = [f"({render(c)})" if isinstance(c, BoolOp) else render(c) for c in node.operands]
    return f" {node.op} ".join(parts)


def _render_operand(operand: Operand) -> str:
    if isinstance(operand, Field):
        return operand.name
    if isinstance(operand.value, str):
        return '"' + operand.value + '"'
    return f"{operand.value:g}" + ("%" if operand.is_percent else "")


def _collect_fields(node: Node, out: set[str]) -> None:
    if isinstance(node, Compare):
        for side in (node.left, node.right):
            if isinstance(side, Field):
                out.add(side.name)
    elif isinstance(node, Relative):
        out.add(node.field.name)
    elif isinstance(node, Not):
        _collect_fields(node.operand, out)
    else:
        for child in node.operands:
            _collect_fields(child, out)


def _any_relative(node: Node) -> bool:
    if isinstance(node, Relative):
        return True
    if isinstance(node, Compare):
        return False
    if isinstance(node, Not):
        return _any_relative(node.operand)
    return any(_any_relative(c) for c in node.operands)


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, Unit], no_baseline: Collection[str] = ()) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.fields = fields
        self.no_baseline = no_baseline
        self.depth = 0

    def _nest(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"nested more than {MAX_NESTING} deep (parentheses and 'not')", column)

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def _take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _expected(self, what: str) -> ExpressionError:
        tok = self.tok
        found = "end of expression" if tok.kind == "end" else repr(tok.text)
        return ExpressionError(f"expected {what}, found {found}", tok.column)

    def parse(self) -> Expression:
        if self.tok.kind == "end":
            raise ExpressionError("empty expression", 1)
        root = self._or()
        if self.tok.kind != "end":
            raise self._expected("'and', 'or' or the end of the expression")
        return Expression(self.text, root)

    def _or(self) -> Node:
        first = self._and()
        operands = [first]
        while self.tok.keyword == "or":
            self._take()
            operands.append(self._and())
        return first if len(operands) == 1 else BoolOp("or", tuple(operands), _column(first))

    def _and(self) -> Node:
        first = self._not()
        operands = [first]
        while self.tok.keyword == "and":
            self._take()
            operands.append(self._not())
        return first if len(operands) == 1 else BoolOp("and", tuple(operands), _column(first))

    def _not(self) -> Node:
        if self.tok.keyword == "not":
            col = self._take().column
            self._nest(col)
            operand = self._not()
            self.depth -= 1
            return Not(operand, col)
        return self._primary()

    def _primary(self) -> Node:
        if self.tok.kind == "lparen":
            self._nest(self._take().column)
            inner = self._or()
            if self.tok.kind != "rparen":
                raise self._expected("')'")
            self._take()
            self.depth -= 1
            return inner
        return self._comparison()

    def _operand(self) -> Operand:
        tok = self.tok
        if tok.kind == "number":
            self._take()
            if self.tok.kind == "percent":
                self._take()
                return Constant(float(tok.text), tok.column, is_percent=True)
            return Constant(float(tok.text), tok.column)
        if tok.kind == "string":
            self._take()
            return Constant(tok.text, tok.column)
        if tok.kind == "ident" and tok.keyword is None:
            self._take()
            return self._field(tok)
        raise self._expected("a field name, a number or a quoted string")

    def _field(self, tok: Token) -> Field:
        unit = self.fields.get(tok.text)
        if unit is None:
            close = difflib.get_close_matches(tok.text, list(self.fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExpressionError(f"unknown field {tok.text!r}{hint}", tok.column)
        return Field(tok.text, unit, tok.column)

    def _op(self) -> Token:
        if self.tok.kind != "op":
            raise self._expected("a comparison operator (> >= < <= == !=)")
        return self._take()

    def _comparison(self) -> Node:
        left = self._operand()
        if self.tok.keyword in ("increase", "decrease", "change"):
            return self._relative(left)
        op = self._op()
        right = self._operand()
        return self._check_compare(Compare(left, op.text, right, _operand_column(left)), op)

    def _relative(self, left: Operand) -> Relative:
        direction_tok = self._take()
        if not isinstance(left, Field):
            raise ExpressionError(f"'{direction_tok.text}' needs a field before it", direction_tok.column)
        if not left.unit.numeric:
            raise ExpressionError(f"field {left.name!r} is text: it cannot increase or decrease", left.column)
        if left.name in self.no_baseline:  # a deployment's or an assessment's own value: nothing to compare with
            raise ExpressionError(
                f"field {left.name!r} has no baseline: '{direction_tok.text}' compares a metric with the "
                f"baseline's, which {left.name!r} never has (compare its value instead: {left.name} < N)",
                left.column,
            )
        op = self._op()
        if op.text in ("==", "!="):
            raise ExpressionError(f"a relative change is compared with > >= < <=, not {op.text}", op.column)
        quantity = self.tok
        if quantity.kind != "number":
            raise self._expected("a percentage such as 50%")
        self._take()
        threshold = float(quantity.text)
        if self.tok.kind != "percent":  # a bare number would be read as a ratio: 500 == +50,000%
            raise ExpressionError(
                f"a relative change of {left.name!r} is a percentage: write {quantity.text}% (a change of "
                f"{quantity.text} percent), or compare the value itself ({left.name} > {quantity.text})",
                quantity.column,
            )
        self._take()
        threshold /= 100.0
        if self.tok.keyword == "vs":
            self._take()
            if self.tok.keyword != "baseline":
                raise self._expected("'baseline' after 'vs'")
            self._take()
        direction = direction_tok.text.lower()
        assert direction in ("increase", "decrease", "change")
        return Relative(left, direction, op.text, threshold, left.column)  # type: ignore[arg-type]

    @staticmethod
    def _check_compare(node: Compare, op: Token) -> Compare:
        left, right = node.left, node.right
        if isinstance(left, Constant) and isinstance(right, Constant):
            raise ExpressionError("a comparison needs at least one field", left.column)
        units = [s.unit for s in (left, right) if isinstance(s, Field)]
        text = any(not u.numeric for u in units) or any(
            isinstance(s, Constant) and isinstance(s.value, str) for s in (left, right)
        )
        if text:
            for side, other in ((left, right), (right, left)):
                if isinstance(side, Field) and side.unit.numeric:
                    where = other.column if isinstance(other, Constant) else side.column
                    raise ExpressionError(f"field {side.name!r} is a number, compared with text", where)
                if isinstance(side, Constant) and not isinstance(side.value, str):
                    raise ExpressionError("a number compared with a text field", side.column)
            if op.text not in ("==", "!="):
                raise ExpressionError(f"text is compared with == or !=, not {op.text}", op.column)
            return node
        if len(units) == 2 and units[0] != units[1]:
            raise ExpressionError(f"comparing {units[0].value} with {units[1].value}", op.column)
        unit = units[0]
        for side in (left, right):
            if isinstance(side, Constant) and side.is_percent and unit.percent(1.0) is None:
                field = left if isinstance(left, Field) else right
                assert isinstance(field, Field)
                raise ExpressionError(
                    f"a percentage means nothing for {field.name!r} (measured in {unit.value})", side.column
                )
        return node


def _column(node: Node) -> int:
    return node.column


def _operand_column(operand: Operand) -> int:
    return operand.column


def parse(text: str, fields: Mapping[str, Unit], no_baseline: Collection[str] = ()) -> Expression:
    """Parse and type-check ``text``; raises :class:`ExpressionError` with the column. ``no_baseline``: the
    fields that never have a baseline (a relative change of one can never be evaluated: an error)."""
    return _Parser(text, fields, no_baseline).parse()


# --------------------------------------------------------------------------- evaluation


def _operand_value(operand: Operand, unit: Unit | None, values: Mapping[str, float | str | None]) -> float | str | None:
    if isinstance(operand, Field):
        return values.get(operand.name)
    if operand.is_percent and isinstance(operand.value, float) and unit is not None:
        return unit.percent(operand.value)
    return operand.value


def _compare(left: float | str, op: str, right: float | str) -> bool:
    if op == "==":
        return left == right if isinstance(left, str) else math.isclose(float(left), float(right), rel_tol=1e-9)
    if op == "!=":
        return not _compare(left, "==", right)
    a, b = float(left), float(right)
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    return a <= b


def _evaluate(
    node: Node, values: Mapping[str, float | str | None], baseline: Mapping[str, float | None]
) -> bool | None:
    if isinstance(node, Compare):
        unit = next((s.unit for s in (node.left, node.right) if isinstance(s, Field)), None)
        left = _operand_value(node.left, unit, values)
        right = _operand_value(node.right, unit, values)
        if left is None or right is None:
            return None
        if isinstance(left, str) != isinstance(right, str):
            return None
        return _compare(left, node.op, right)
    if isinstance(node, Relative):
        current = values.get(node.field.name)
        base = baseline.get(node.field.name)
        if not isinstance(current, int | float) or base is None:
            return None
        if base == 0:
            if node.field.unit not in (Unit.COUNT, Unit.RATIO):  # a latency or gauge of zero measured nothing
                return None
            # events against a baseline of none: no change, or one beyond any ratio (a surge from zero)
            change = 0.0 if current == 0 else math.copysign(math.inf, float(current))
        else:
            change = (float(current) - base) / abs(base)
        if node.direction == "decrease":
            change = -change
        elif node.direction == "change":
            change = abs(change)
        return _compare(change, node.op, node.threshold)
    if isinstance(node, Not):
        inner = _evaluate(node.operand, values, baseline)
        return None if inner is None else not inner
    results = [_evaluate(child, values, baseline) for child in node.operands]
    if node.op == "and":
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False
