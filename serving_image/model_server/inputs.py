"""Parse an /invocations body into a feature matrix, or refuse it with a status and a clear message.

application/json: {"instances": [[...], ...]} or {"instances": [{"feature": value, ...}, ...]} or a
bare list of instances. text/csv: one row of feature values per line, no header. Missing values
(null, or an empty CSV cell) become NaN, which the model handles. A categorical feature (the
model's `categorical_columns`) takes its category as a string (stripped; empty is missing); a
category the model never saw is answered like a missing value.

Rows come back as lists of numbers (what the compiled predictor takes). Well-formed bodies take a
fast path that checks every value's type in one pass; anything else falls through to the
value-by-value parser, whose error names the instance (or CSV line) and feature at fault.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Sequence
from itertools import chain
from typing import Any

import numpy as np
import orjson

from model_server.errors import BadRequestError
from model_server.estimator import FloatMatrix

Row = list[float]
# A row of a model with categorical columns: text in those, numbers (NaN for missing) elsewhere.
MixedRow = list[float | str]
_NULL = type(None)
# What a JSON row of a numeric model may hold on the fast path: numbers, and null for missing.
_NUMBERS_OR_NULL = frozenset({float, int, _NULL})

JSON_TYPES = {"application/json"}
CSV_TYPES = {"text/csv"}
SUPPORTED = sorted(JSON_TYPES | CSV_TYPES)


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header (no parameters), lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_instances(body: bytes, content_type: str | None, features: Sequence[str]) -> FloatMatrix:
    """A float matrix of shape (rows, len(features)); BadRequestError (400/415) otherwise."""
    rows = parse_rows(body, content_type, features)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))


def parse_rows(
    body: bytes, content_type: str | None, features: Sequence[str], categorical: Collection[str] = ()
) -> Sequence[Sequence[float | str]]:
    """One list of len(features) numbers per instance (NaN for missing), with the category's text
    for a feature in `categorical`; BadRequestError otherwise. Without categorical features every
    row is a list of floats (a `Row`)."""
    kind = media_type(content_type)
    rows: Sequence[Sequence[float | str]]
    if kind in JSON_TYPES:
        rows = _json_rows(body, features, frozenset(categorical))
    elif kind in CSV_TYPES:
        rows = _csv_rows(body, features, frozenset(categorical))
    else:
        shown = kind or "none"
        raise BadRequestError(415, f"unsupported Content-Type {shown!r}; send one of {SUPPORTED}")
    if not rows:
        raise BadRequestError(400, "no instances to predict: the request holds no rows")
    return rows


def _fast_rows(instances: list[Any], width: int) -> list[Row] | None:
    """`instances` itself when it is a non-empty list of lists of `width` ints/floats (with null
    for missing values: those rows are copied with NaN in their place), else None."""
    try:
        types = set(map(type, chain.from_iterable(instances)))
    except TypeError:  # an instance is not iterable (a number, null)
        return None
    if not types or not types <= _NUMBERS_OR_NULL or set(map(len, instances)) != {width}:
        return None
    if not all(type(item) is list for item in instances):
        return None
    if _NULL in types:
        nan = math.nan
        return [[nan if v is None else v for v in row] if None in row else row for row in instances]
    return instances


def _json_rows(
    body: bytes, features: Sequence[str], categorical: frozenset[str]
) -> Sequence[Sequence[float | str]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(400, f"body is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        if "instances" not in doc:
            raise BadRequestError(
                400,
                f'JSON object has no "instances" field (keys: {sorted(doc)[:10]}); send {{"instances": [...]}}',
            )
        doc = doc["instances"]
    if not isinstance(doc, list):
        raise BadRequestError(400, f'"instances" must be a list of instances, got {type(doc).__name__}')
    # The fast paths take numbers only: a categorical feature's value must be text (a number there
    # would not match the category "1" the model learned), so its rows take the full parser.
    fast = None if categorical else _fast_rows(doc, len(features))
    if fast is not None:
        return fast
    return [_instance(item, i, features, categorical) for i, item in enumerate(doc)]


def _instance(item: Any, index: int, features: Sequence[str], categorical: frozenset[str]) -> MixedRow:
    where = f"instance {index}"
    if isinstance(item, dict):
        missing = [f for f in features if f not in item]
        if missing:
            raise BadRequestError(
                400, f"{where} lacks features {missing}; the model expects {list(features)}"
            )
        extra = sorted(set(item) - set(features))
        if extra:
            raise BadRequestError(
                400, f"{where} has unknown features {extra}; the model expects {list(features)}"
            )
        return [_value(item[f], f"{where} feature {f!r}", f in categorical) for f in features]
    if isinstance(item, list):
        if len(item) != len(features):
            raise BadRequestError(
                400,
                f"{where} has {len(item)} values; the model expects {len(features)} features ({', '.join(features)})",
            )
        return [
            _value(v, f"{where} feature {f!r}", f in categorical) for v, f in zip(item, features, strict=True)
        ]
    raise BadRequestError(
        400,
        f"{where} is a {type(item).__name__}; expected a list of {len(features)} numbers or an object by feature name",
    )


def _value(value: Any, where: str, categorical: bool = False) -> float | str:
    if value is None:
        return math.nan
    if categorical:
        if not isinstance(value, str):
            raise BadRequestError(
                400, f"{where} is categorical: send its category as a string (or null), not {value!r}"
            )
        return _category(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(400, f"{where} is not a number: {value!r}")
    if math.isinf(value):
        raise BadRequestError(400, f"{where} is infinite")
    return float(value)


def _category(text: str) -> str | float:
    """A categorical cell: its category (stripped), NaN (missing) when empty."""
    return text.strip() or math.nan


def _fast_csv_rows(text: str, width: int) -> list[Row] | None:
    """Unquoted CSV of finite numbers, every row `width` wide; None sends it to the full parser."""
    if '"' in text:
        return None
    try:
        rows = [list(map(float, line.split(","))) for line in text.splitlines() if line.strip()]
    except ValueError:  # an empty cell or a non-number: the full parser says which
        return None
    if any(len(row) != width or math.inf in row or -math.inf in row for row in rows):
        return None
    return rows


def _csv_rows(
    body: bytes, features: Sequence[str], categorical: frozenset[str]
) -> Sequence[Sequence[float | str]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequestError(400, f"CSV body is not UTF-8 (byte {exc.start})") from None
    fast = None if categorical else _fast_csv_rows(text, len(features))
    if fast is not None:
        return fast
    rows: list[MixedRow] = []
    try:
        for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(features):
                raise BadRequestError(
                    400,
                    f"CSV line {line_no} has {len(row)} values; the model expects {len(features)} features "
                    f"({', '.join(features)}), no header row",
                )
            rows.append(
                [
                    _category(cell) if f in categorical else _csv_value(cell, line_no, f)
                    for cell, f in zip(row, features, strict=True)
                ]
            )
    except csv.Error as exc:
        raise BadRequestError(400, f"CSV body is not parseable: {exc}") from None
    return rows


def _csv_value(cell: str, line_no: int, feature: str) -> float:
    text = cell.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise BadRequestError(
            400, f"CSV line {line_no} feature {feature!r} is not a number: {cell!r}"
        ) from None
    if math.isinf(value):
        raise BadRequestError(400, f"CSV line {line_no} feature {feature!r} is infinite")
    return value
