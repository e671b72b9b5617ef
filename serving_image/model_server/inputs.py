"""Parse an /invocations body into a feature matrix, or refuse it with a status and a clear message.

application/json: {"instances": [[...], ...]} or {"instances": [{"feature": value, ...}, ...]} or a
bare list of instances. text/csv: one row of feature values per line, no header. Missing values
(null, or an empty CSV cell) become NaN, which the model handles.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_server.errors import BadRequestError

JSON_TYPES = {"application/json"}
CSV_TYPES = {"text/csv"}
SUPPORTED = sorted(JSON_TYPES | CSV_TYPES)


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header (no parameters), lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_instances(body: bytes, content_type: str | None, features: Sequence[str]) -> np.ndarray:
    """A float matrix of shape (rows, len(features)); BadRequestError (400/415) otherwise."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        rows = _json_rows(body, features)
    elif kind in CSV_TYPES:
        rows = _csv_rows(body, features)
    else:
        shown = kind or "none"
        raise BadRequestError(415, f"unsupported Content-Type {shown!r}; send one of {SUPPORTED}")
    if not rows:
        raise BadRequestError(400, "no instances to predict: the request holds no rows")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))


def _json_rows(body: bytes, features: Sequence[str]) -> list[list[float]]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
    return [_instance(item, i, features) for i, item in enumerate(doc)]


def _instance(item: Any, index: int, features: Sequence[str]) -> list[float]:
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
        return [_value(item[f], f"{where} feature {f!r}") for f in features]
    if isinstance(item, list):
        if len(item) != len(features):
            raise BadRequestError(
                400,
                f"{where} has {len(item)} values; the model expects {len(features)} features ({', '.join(features)})",
            )
        return [_value(v, f"{where} feature {f!r}") for v, f in zip(item, features, strict=True)]
    raise BadRequestError(
        400,
        f"{where} is a {type(item).__name__}; expected a list of {len(features)} numbers or an object by feature name",
    )


def _value(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(400, f"{where} is not a number: {value!r}")
    if math.isinf(value):
        raise BadRequestError(400, f"{where} is infinite")
    return float(value)


def _csv_rows(body: bytes, features: Sequence[str]) -> list[list[float]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequestError(400, f"CSV body is not UTF-8 (byte {exc.start})") from None
    rows = []
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
            rows.append([_csv_value(cell, line_no, f) for cell, f in zip(row, features, strict=True)])
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
