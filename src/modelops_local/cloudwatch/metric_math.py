"""Metric math: parse and evaluate the expressions of GetMetricData queries and metric-math alarms.

Semantics follow "Using metric math" (CloudWatch User Guide):
- arithmetic `+ - * / ^` and unary `-` on scalars, time series and arrays; between two time series
  a value missing at a timestamp counts as 0, and a division by zero drops that datapoint;
- comparisons `== != < <= > >=` and `AND`/`&&`, `OR`/`||` give 1 or 0 (missing counts as 0 between
  two time series);
- `IF(condition, trueValue[, falseValue])` as documented: a true condition with a missing
  trueValue datapoint gives 0, a false one with no falseValue (or no falseValue datapoint) drops it;
- `FILL(ts, value|ts|REPEAT|LINEAR)`, `ABS`, `CEIL`, `FLOOR`, `LOG`, `LOG10`, `SUM`/`AVG`/`MIN`/`MAX`
  (of a time series: a scalar; of an array `[a, b]`: a time series), `METRICS([filter])`,
  `PERIOD(id)`, `TIME_SERIES(scalar)`.
Any other function is rejected with MetricMathError naming it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from modelops_local.cloudwatch.errors import MetricMathError

Series = dict[int, float]  # period start (epoch seconds) -> value
Value = Union[float, Series, list[Series]]  # noqa: UP007 (a runtime alias)

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<string>\"[^\"]*\")|(?P<op>==|!=|<=|>=|&&|\|\||[-+*/^<>(),\[\]]))"
)
ID_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_KEYWORDS = {"AND": "&&", "OR": "||"}
_FILL_MODES = {"REPEAT", "LINEAR"}
SUPPORTED_FUNCTIONS = frozenset(
    {"IF", "FILL", "ABS", "CEIL", "FLOOR", "LOG", "LOG10", "SUM", "AVG", "MIN", "MAX", "METRICS", "PERIOD"}
    | {"TIME_SERIES"}
)


# --- syntax tree -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Ref:
    id: str


@dataclass(frozen=True)
class Word:
    """A bare uppercase keyword argument such as REPEAT or LINEAR."""

    word: str


@dataclass(frozen=True)
class Text:
    text: str


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


@dataclass(frozen=True)
class Array:
    items: tuple[Node, ...]


Node = Union[Num, Ref, Word, Text, Neg, BinOp, Call, Array]  # noqa: UP007 (a runtime alias)


class MathContext(Protocol):
    """What an expression can see: the other queries of the same request."""

    grid: list[int]  # every period start of the request, ascending

    def series(self, query_id: str) -> Series:
        """The time series of another query (MetricStat or expression) by Id."""
        ...

    def metric_ids(self) -> list[str]:
        """Ids of the request's MetricStat queries, in request order."""
        ...

    def period_of(self, query_id: str) -> int:
        """The period in seconds of a MetricStat query."""
        ...


# --- parsing ---------------------------------------------------------------------------------------
def parse_expression(expression: str) -> Node:
    """The syntax tree of a metric math expression; MetricMathError with the position on bad syntax."""
    return _Parser(expression).parse()


def referenced_ids(node: Node) -> set[str]:
    """Query Ids the expression refers to directly (METRICS() refers to every metric implicitly)."""
    if isinstance(node, Ref):
        return {node.id}
    if isinstance(node, Neg):
        return referenced_ids(node.operand)
    if isinstance(node, BinOp):
        return referenced_ids(node.left) | referenced_ids(node.right)
    if isinstance(node, Call | Array):
        children = node.args if isinstance(node, Call) else node.items
        return set().union(*(referenced_ids(child) for child in children)) if children else set()
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
        node = self._or()
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
        if kind == "name" and text in _KEYWORDS:
            return _KEYWORDS[text]
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

    def _or(self) -> Node:
        return self._binary(("||",), self._and)

    def _and(self) -> Node:
        return self._binary(("&&",), self._comparison)

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
        base = self._atom()
        if self._peek() == "^":
            self.index += 1
            return BinOp("^", base, self._unary())
        return base

    def _atom(self) -> Node:
        if self.index >= len(self.tokens):
            raise self._error("expression ends too early")
        kind, text, _ = self.tokens[self.index]
        if kind == "number":
            self.index += 1
            return Num(float(text))
        if kind == "string":
            self.index += 1
            return Text(text[1:-1])
        if kind == "name":
            return self._name(text)
        if text == "(":
            self.index += 1
            node = self._or()
            self._take(")")
            return node
        if text == "[":
            self.index += 1
            items = [self._or()]
            while self._peek() == ",":
                self.index += 1
                items.append(self._or())
            self._take("]")
            return Array(tuple(items))
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
                args.append(self._or())
                while self._peek() == ",":
                    self.index += 1
                    args.append(self._or())
            self._take(")")
            return Call(text, tuple(args))
        if text in _FILL_MODES:
            return Word(text)
        if not ID_PATTERN.match(text):
            raise MetricMathError(
                f"expression {self.expression!r}: {text!r} is not a valid id (ids start with a lowercase letter)"
            )
        return Ref(text)


# --- evaluation ------------------------------------------------------------------------------------
def evaluate_expression(expression: str | Node, ctx: MathContext) -> Series:
    """The single time series an expression yields; MetricMathError if it yields a scalar or an array
    of several time series, or refers to an unknown id."""
    node = parse_expression(expression) if isinstance(expression, str) else expression
    result = _Evaluator(ctx).eval(node)
    if isinstance(result, list):
        if len(result) != 1:
            raise MetricMathError(f"expression yields {len(result)} time series; expected exactly one")
        result = result[0]
    if not isinstance(result, dict):
        raise MetricMathError("the final result of an expression must be a time series, not a scalar")
    return dict(sorted(result.items()))


def _divide(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def _power(a: float, b: float) -> float | None:
    try:
        result = a**b
    except (OverflowError, ZeroDivisionError):
        return None
    return result if isinstance(result, float | int) and math.isfinite(result) else None


_ARITHMETIC: dict[str, Callable[[float, float], float | None]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "^": _power,
    "==": lambda a, b: float(a == b),
    "!=": lambda a, b: float(a != b),
    "<": lambda a, b: float(a < b),
    "<=": lambda a, b: float(a <= b),
    ">": lambda a, b: float(a > b),
    ">=": lambda a, b: float(a >= b),
    "&&": lambda a, b: float(bool(a) and bool(b)),
    "||": lambda a, b: float(bool(a) or bool(b)),
}


def _mapped(fn: Callable[[float], float | None], value: Value) -> Value:
    if isinstance(value, list):
        return [_map_series(fn, s) for s in value]
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
    if isinstance(left, list) or isinstance(right, list):
        lefts = left if isinstance(left, list) else None
        rights = right if isinstance(right, list) else None
        if lefts is not None and rights is not None:
            if len(lefts) != len(rights):
                raise MetricMathError(
                    f"operator {op}: arrays of different sizes ({len(lefts)}, {len(rights)})"
                )
            return [_series_op(fn, a, b) for a, b in zip(lefts, rights, strict=True)]
        if lefts is not None:
            return [_as_series(_combine(op, item, right)) for item in lefts]
        assert rights is not None
        return [_as_series(_combine(op, left, item)) for item in rights]
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


def _as_series(value: Value) -> Series:
    if not isinstance(value, dict):
        raise MetricMathError("expected a time series")
    return value


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
        if isinstance(node, Array):
            items = [self.eval(item) for item in node.items]
            series: list[Series] = []
            for item in items:
                if isinstance(item, list):
                    series.extend(item)
                elif isinstance(item, dict):
                    series.append(item)
                else:
                    raise MetricMathError("an array [...] may hold only time series")
            return series
        if isinstance(node, Call):
            return self._call(node)
        raise MetricMathError(f"{node} cannot be used as a value here")

    def _call(self, node: Call) -> Value:
        name, args = node.name, node.args
        if name == "IF":
            return self._if(args)
        if name == "FILL":
            return self._fill(args)
        if name == "METRICS":
            return self._metrics(args)
        if name == "PERIOD":
            if len(args) != 1 or not isinstance(args[0], Ref):
                raise MetricMathError("PERIOD takes one metric id")
            return float(self.ctx.period_of(args[0].id))
        if name == "TIME_SERIES":
            value = self._one_arg(name, args)
            if not isinstance(value, float | int):
                raise MetricMathError("TIME_SERIES takes a scalar")
            return dict.fromkeys(self.ctx.grid, float(value))
        unary: dict[str, Callable[[float], float | None]] = {
            "ABS": abs,
            "CEIL": lambda v: float(math.ceil(v)),
            "FLOOR": lambda v: float(math.floor(v)),
            "LOG": lambda v: math.log(v) if v > 0 else None,
            "LOG10": lambda v: math.log10(v) if v > 0 else None,
        }
        if name in unary:
            return _mapped(unary[name], self._one_arg(name, args))
        return self._aggregate(name, self._one_arg(name, args))

    def _one_arg(self, name: str, args: tuple[Node, ...]) -> Value:
        if len(args) != 1:
            raise MetricMathError(f"{name} takes exactly one argument, got {len(args)}")
        return self.eval(args[0])

    def _aggregate(self, name: str, value: Value) -> Value:
        reducers: dict[str, Callable[[list[float]], float]] = {
            "SUM": math.fsum,
            "AVG": lambda xs: math.fsum(xs) / len(xs),
            "MIN": min,
            "MAX": max,
        }
        reduce = reducers[name]
        if isinstance(value, dict):
            if not value:
                raise MetricMathError(f"{name} of a time series with no datapoints has no value")
            return float(reduce(list(value.values())))
        if isinstance(value, list):
            out: Series = {}
            for ts in sorted(set().union(*value)) if value else []:
                # SUM and AVG count a missing value as 0; MIN and MAX look at the values present.
                present = [s[ts] for s in value if ts in s]
                out[ts] = float(
                    reduce([s.get(ts, 0.0) for s in value] if name in ("SUM", "AVG") else present)
                )
            return out
        return float(value)

    def _metrics(self, args: tuple[Node, ...]) -> Value:
        if len(args) > 1 or (args and not isinstance(args[0], Text)):
            raise MetricMathError('METRICS takes no argument or one string, as in METRICS("errors")')
        needle = args[0].text if args and isinstance(args[0], Text) else ""
        return [dict(self.ctx.series(i)) for i in self.ctx.metric_ids() if needle in i]

    def _if(self, args: tuple[Node, ...]) -> Value:
        if len(args) not in (2, 3):
            raise MetricMathError(f"IF takes 2 or 3 arguments, got {len(args)}")
        condition = self.eval(args[0])
        when_true = self.eval(args[1])
        when_false = self.eval(args[2]) if len(args) == 3 else None
        if isinstance(condition, list) or isinstance(when_true, list) or isinstance(when_false, list):
            raise MetricMathError("IF does not take arrays of time series")
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

    def _fill(self, args: tuple[Node, ...]) -> Value:
        if len(args) != 2:
            raise MetricMathError(f"FILL takes 2 arguments, got {len(args)}")
        target = self.eval(args[0])
        how: Value | str = args[1].word if isinstance(args[1], Word) else self.eval(args[1])
        if isinstance(target, list):
            return [self._fill_one(s, how) for s in target]
        if not isinstance(target, dict):
            raise MetricMathError("FILL takes a time series or an array of them")
        return self._fill_one(target, how)

    def _fill_one(self, series: Series, how: Value | str) -> Series:
        out = dict(series)
        known = sorted(series)
        for ts in self.ctx.grid:
            if ts in out:
                continue
            if isinstance(how, dict):
                if ts in how:
                    out[ts] = how[ts]
            elif isinstance(how, float | int):
                out[ts] = float(how)
            elif how == "REPEAT":
                earlier = [t for t in known if t < ts]
                if earlier:
                    out[ts] = series[earlier[-1]]
            elif how == "LINEAR":
                earlier = [t for t in known if t < ts]
                later = [t for t in known if t > ts]
                if earlier and later:
                    a, b = earlier[-1], later[0]
                    out[ts] = series[a] + (series[b] - series[a]) * (ts - a) / (b - a)
            else:
                raise MetricMathError(
                    "FILL's second argument must be a scalar, a time series, REPEAT or LINEAR"
                )
        return dict(sorted(out.items()))
