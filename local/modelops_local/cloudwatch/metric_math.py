"""Metric math: parse and evaluate the expressions of GetMetricData queries and metric-math alarms.

The product's one expression is the guarded error rate `IF(req >= N, err / req)`; this module
covers the grammar it is written in, with the semantics of "Using metric math" (CloudWatch User
Guide):
- arithmetic `+ - * /` and unary `-` on scalars and time series; between two time series a value
  missing at a timestamp counts as 0, and a division by zero drops that datapoint;
- comparisons `== != < <= > >=` give 1 or 0 (missing counts as 0 between two time series);
- `IF(condition, trueValue[, falseValue])` as documented: a true condition with a missing
  trueValue datapoint gives 0, a false one with no falseValue (or no falseValue datapoint) drops it.
Any other function (FILL, SUM, METRICS, ...), `^`, `AND`/`OR`, arrays and strings are rejected with
MetricMathError naming them: nothing in modelops uses them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from modelops_local.cloudwatch.errors import MetricMathError

Series = dict[int, float]  # period start (epoch seconds) -> value
Value = Union[float, Series]  # noqa: UP007 (a runtime alias)

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|<=|>=|[-+*/<>(),]))"
)
ID_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
SUPPORTED_FUNCTIONS = frozenset({"IF"})


# --- syntax tree -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Ref:
    id: str


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Union[Num, Ref, Neg, BinOp, Call]  # noqa: UP007 (a runtime alias)


class MathContext(Protocol):
    """What an expression can see: the other queries of the same request."""

    def series(self, query_id: str) -> Series:
        """The time series of another query (MetricStat or expression) by Id."""
        ...


# --- parsing ---------------------------------------------------------------------------------------
def parse_expression(expression: str) -> Node:
    """The syntax tree of a metric math expression; MetricMathError with the position on bad syntax."""
    return _Parser(expression).parse()


def referenced_ids(node: Node) -> set[str]:
    """Query Ids the expression refers to."""
    if isinstance(node, Ref):
        return {node.id}
    if isinstance(node, Neg):
        return referenced_ids(node.operand)
    if isinstance(node, BinOp):
        return referenced_ids(node.left) | referenced_ids(node.right)
    if isinstance(node, Call):
        return set().union(*(referenced_ids(child) for child in node.args)) if node.args else set()
    return set()


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        stripped = expression.rstrip()
        while position < len(stripped):
            match = _TOKEN.match(stripped, position)
            if match is None or match.end() == position:
                bad = position + len(stripped[position:]) - len(stripped[position:].lstrip())
                raise MetricMathError(f"expression {expression!r}: unexpected character at {bad + 1}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        self.index = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise MetricMathError("expression is empty")
        node = self._comparison()
        if self.index < len(self.tokens):
            raise self._error("unexpected token")
        return node

    def _error(self, what: str) -> MetricMathError:
        if self.index < len(self.tokens):
            _, text, position = self.tokens[self.index]
            return MetricMathError(f"expression {self.expression!r}: {what} {text!r} at {position + 1}")
        return MetricMathError(f"expression {self.expression!r}: {what} at the end")

    def _peek(self) -> str | None:
        if self.index >= len(self.tokens):
            return None
        kind, text, _ = self.tokens[self.index]
        return text if kind == "op" else None

    def _take(self, op: str) -> None:
        if self._peek() != op:
            raise self._error(f"expected {op!r}, found")
        self.index += 1

    def _binary(self, ops: tuple[str, ...], inner: Callable[[], Node]) -> Node:
        node = inner()
        while (op := self._peek()) in ops:
            self.index += 1
            node = BinOp(str(op), node, inner())
        return node

    def _comparison(self) -> Node:
        return self._binary(("==", "!=", "<=", ">=", "<", ">"), self._additive)

    def _additive(self) -> Node:
        return self._binary(("+", "-"), self._multiplicative)

    def _multiplicative(self) -> Node:
        return self._binary(("*", "/"), self._unary)

    def _unary(self) -> Node:
        if self._peek() == "-":
            self.index += 1
            return Neg(self._unary())
        if self._peek() == "+":
            self.index += 1
            return self._unary()
        return self._atom()

    def _atom(self) -> Node:
        if self.index >= len(self.tokens):
            raise self._error("expression ends too early")
        kind, text, _ = self.tokens[self.index]
        if kind == "number":
            self.index += 1
            return Num(float(text))
        if kind == "name":
            return self._name(text)
        if text == "(":
            self.index += 1
            node = self._comparison()
            self._take(")")
            return node
        raise self._error("unexpected token")

    def _name(self, text: str) -> Node:
        self.index += 1
        if self._peek() == "(":
            if text not in SUPPORTED_FUNCTIONS:
                raise MetricMathError(
                    f"expression {self.expression!r}: function {text} is not supported by the local "
                    f"CloudWatch (supported: {', '.join(sorted(SUPPORTED_FUNCTIONS))})"
                )
            self.index += 1
            args: list[Node] = []
            if self._peek() != ")":
                args.append(self._comparison())
                while self._peek() == ",":
                    self.index += 1
                    args.append(self._comparison())
            self._take(")")
            return Call(text, tuple(args))
        if not ID_PATTERN.match(text):
            raise MetricMathError(
                f"expression {self.expression!r}: {text!r} is not a valid id (ids start with a lowercase letter)"
            )
        return Ref(text)


# --- evaluation ------------------------------------------------------------------------------------
def evaluate_expression(expression: str | Node, ctx: MathContext) -> Series:
    """The time series an expression yields; MetricMathError if it yields a scalar or refers to an
    unknown id."""
    node = parse_expression(expression) if isinstance(expression, str) else expression
    result = _Evaluator(ctx).eval(node)
    if not isinstance(result, dict):
        raise MetricMathError("the final result of an expression must be a time series, not a scalar")
    return dict(sorted(result.items()))


def _divide(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


_ARITHMETIC: dict[str, Callable[[float, float], float | None]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "==": lambda a, b: float(a == b),
    "!=": lambda a, b: float(a != b),
    "<": lambda a, b: float(a < b),
    "<=": lambda a, b: float(a <= b),
    ">": lambda a, b: float(a > b),
    ">=": lambda a, b: float(a >= b),
}


def _mapped(fn: Callable[[float], float | None], value: Value) -> Value:
    if isinstance(value, dict):
        return _map_series(fn, value)
    result = fn(value)
    if result is None:
        raise MetricMathError(f"the scalar computation on {value} has no value")
    return result


def _map_series(fn: Callable[[float], float | None], series: Series) -> Series:
    out: Series = {}
    for ts, v in series.items():
        result = fn(v)
        if result is not None:
            out[ts] = result
    return out


def _combine(op: str, left: Value, right: Value) -> Value:
    fn = _ARITHMETIC[op]
    if isinstance(left, dict) and isinstance(right, dict):
        return _series_op(fn, left, right)
    if isinstance(left, dict):
        scalar_r = float(right)  # type: ignore[arg-type]
        return _map_series(lambda v: fn(v, scalar_r), left)
    if isinstance(right, dict):
        scalar_l = float(left)
        return _map_series(lambda v: fn(scalar_l, v), right)
    result = fn(left, right)
    if result is None:
        raise MetricMathError(f"{left} {op} {right} has no value (division by zero?)")
    return result


def _series_op(fn: Callable[[float, float], float | None], left: Series, right: Series) -> Series:
    out: Series = {}
    for ts in sorted(set(left) | set(right)):
        result = fn(left.get(ts, 0.0), right.get(ts, 0.0))
        if result is not None:
            out[ts] = result
    return out


class _Evaluator:
    def __init__(self, ctx: MathContext) -> None:
        self.ctx = ctx

    def eval(self, node: Node) -> Value:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Ref):
            return dict(self.ctx.series(node.id))
        if isinstance(node, Neg):
            return _mapped(operator.neg, self.eval(node.operand))
        if isinstance(node, BinOp):
            return _combine(node.op, self.eval(node.left), self.eval(node.right))
        return self._if(node.args)

    def _if(self, args: tuple[Node, ...]) -> Value:
        if len(args) not in (2, 3):
            raise MetricMathError(f"IF takes 2 or 3 arguments, got {len(args)}")
        condition = self.eval(args[0])
        when_true = self.eval(args[1])
        when_false = self.eval(args[2]) if len(args) == 3 else None
        if not isinstance(condition, dict):
            if condition:
                return when_true
            return when_false if when_false is not None else {}
        out: Series = {}
        for ts, flag in condition.items():
            if flag:
                out[ts] = when_true.get(ts, 0.0) if isinstance(when_true, dict) else float(when_true)
            elif isinstance(when_false, dict):
                if ts in when_false:
                    out[ts] = when_false[ts]
            elif when_false is not None:
                out[ts] = float(when_false)
        return out
