"""Dataset validation: is this CSV something the model's training can use?

Pure logic over bytes; the handler fetches the object. Messages name the file, row and column.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass, field

from modelops.config import DataSchema, Task
from modelops.errors import DatasetInvalidError

_SNIFF_BYTES = 64 * 1024
# How CSV writers spell a missing value (numpy, R, SQL exports); never a real class or target.
_MISSING_MARKERS = {"nan", "na", "n/a", "null"}
# A categorical column with more distinct values than this is free text or an id, not a category.
MAX_CATEGORIES = 1000
Cell = float | str | None
# A classifier with more classes than this is refused (the trainer's artifact.MAX_CLASSES).
MAX_CLASSES = 100
# The trainer's stratified split puts at least one row of each class in the holdout and keeps
# the rest for training: it needs this many rows of every class (train.split_indices).
MIN_ROWS_PER_CLASS = 4


@dataclass(frozen=True)
class DatasetReport:
    rows: int
    columns: list[str]
    # Rows per label value (classification); empty for regression, whose every row can be
    # a distinct value: `target` summarises it instead (min, max, mean), so the report stays small
    # whatever the file's size (it is a Step Functions state: 256 KB at most).
    label_distribution: dict[str, int]
    # A few feature rows (feature order of the schema) for the canary's smoke predictions; a missing
    # value is None (JSON null: NaN is not JSON, and Step Functions and the server refuse it), a
    # categorical column's value its text.
    smoke_sample: list[list[Cell]] = field(default_factory=list)
    target: dict[str, float] | None = None


def validate_csv(
    data: bytes,
    schema: DataSchema,
    *,
    name: str,
    task: Task = "binary_classification",
    smoke_size: int = 20,
    seed: int = 0,
) -> DatasetReport:
    """Check `data` (a CSV file called `name`) against `schema` and the model's `task` (binary
    classification: exactly two label values; multiclass: 2 to MAX_CLASSES; each class at least
    MIN_ROWS_PER_CLASS rows; regression: numeric labels); DatasetInvalidError says what is wrong."""
    if not data.strip():
        raise DatasetInvalidError(f"{name}: file is empty")
    if len(data) > schema.max_bytes:
        raise DatasetInvalidError(
            f"{name}: {len(data)} bytes exceeds the schema's max_bytes {schema.max_bytes}"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetInvalidError(
            f"{name}: not UTF-8 text but UTF-16 (Excel's 'Unicode Text'); save it as 'CSV UTF-8 (comma delimited)'"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetInvalidError(
            f"{name}: not UTF-8 text (line {line}, byte {exc.start}); expected a CSV file saved as UTF-8"
        ) from None
    if "\x00" in text[:_SNIFF_BYTES]:
        raise DatasetInvalidError(f"{name}: contains NUL bytes; expected a CSV file")

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise DatasetInvalidError(f"{name}: cannot read a CSV header: {exc}") from None
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise DatasetInvalidError(f"{name}: duplicate column names {dupes}")
    if schema.label_column not in header:
        raise DatasetInvalidError(
            f"{name}: label column {schema.label_column!r} not found; columns are {header}"
        )
    missing = [c for c in schema.feature_columns if c not in header]
    if missing:
        raise DatasetInvalidError(f"{name}: feature columns {missing} missing; columns are {header}")
    expected = {schema.label_column, *schema.feature_columns}
    extra = [c for c in header if c not in expected]
    if extra:
        raise DatasetInvalidError(
            f"{name}: columns {extra} are not in the model's schema; update the model config or drop them"
        )

    label_idx = header.index(schema.label_column)
    feature_idx = [header.index(c) for c in schema.feature_columns]
    labels: dict[str, int] = {}
    low, high, total = math.inf, -math.inf, 0.0  # regression targets
    sample: list[list[Cell]] = []
    categorical = set(schema.categorical_columns)
    categories: dict[str, set[str]] = {c: set() for c in schema.categorical_columns}
    rng = random.Random(seed)
    rows = 0
    try:
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                if any("\n" in cell for cell in row):
                    raise DatasetInvalidError(
                        f"{name}: line {line_no}: a quoted field is never closed (it runs on to line "
                        f"{reader.line_num})"
                    )
                hint = " (a ',' inside an unquoted value?)" if len(row) > len(header) else ""
                raise DatasetInvalidError(
                    f"{name}: line {line_no} has {len(row)} fields, header has {len(header)}{hint}"
                )
            label = row[label_idx].strip()
            if label == "":
                raise DatasetInvalidError(f"{name}: line {line_no}: label {schema.label_column!r} is empty")
            if label.lower() in _MISSING_MARKERS:
                raise DatasetInvalidError(
                    f"{name}: line {line_no}: label {schema.label_column!r} is {label!r}, a missing value; "
                    "drop the row or fill the label in"
                )
            features: list[Cell] = []
            for col, idx in zip(schema.feature_columns, feature_idx, strict=True):
                if col in categorical:
                    features.append(_category(row[idx], categories[col], name=name, line=line_no, column=col))
                    continue
                value = _number(row[idx], name=name, line=line_no, column=col)
                features.append(None if math.isnan(value) else value)
            if task == "regression":
                value = _number(row[label_idx], name=name, line=line_no, column=schema.label_column)
                low, high, total = min(low, value), max(high, value), total + value
                if len(labels) < 2:  # two distinct values are all the checks below need
                    labels[label] = 1
            else:
                labels[label] = labels.get(label, 0) + 1
                if len(labels) > MAX_CLASSES:
                    raise DatasetInvalidError(
                        f"{name}: line {line_no}: label {schema.label_column!r} has more than "
                        f"{MAX_CLASSES} distinct values; a classifier supports at most {MAX_CLASSES} "
                        "(is the label column right, or is this a regression?)"
                    )
            rows += 1
            # Reservoir sampling keeps the smoke sample uniform without holding the file twice.
            if len(sample) < smoke_size:
                sample.append(features)
            else:
                j = rng.randrange(rows)
                if j < smoke_size:
                    sample[j] = features
    except csv.Error as exc:
        raise DatasetInvalidError(
            f"{name}: not parseable as CSV near line {reader.line_num}: {exc}"
        ) from None

    if rows < schema.min_rows:
        raise DatasetInvalidError(f"{name}: {rows} data rows, the model needs at least {schema.min_rows}")
    if len(labels) < 2:
        raise DatasetInvalidError(
            f"{name}: label {schema.label_column!r} has a single value {list(labels)}; cannot train"
        )
    if task == "binary_classification" and len(labels) > 2:
        shown = sorted(labels)[:5]
        raise DatasetInvalidError(
            f"{name}: label {schema.label_column!r} has {len(labels)} distinct values "
            f"{shown}{'...' if len(labels) > 5 else ''}; binary_classification needs exactly 2"
        )
    rare = {label: n for label, n in sorted(labels.items()) if n < MIN_ROWS_PER_CLASS}
    if task != "regression" and rare:
        raise DatasetInvalidError(
            f"{name}: label {schema.label_column!r} has classes with fewer than {MIN_ROWS_PER_CLASS} "
            f"rows {rare}; training needs at least {MIN_ROWS_PER_CLASS} of each (add rows or drop the class)"
        )
    if task == "regression":
        return DatasetReport(
            rows=rows,
            columns=header,
            label_distribution={},
            smoke_sample=sample,
            target={"min": low, "max": high, "mean": total / rows},
        )
    return DatasetReport(rows=rows, columns=header, label_distribution=labels, smoke_sample=sample)


def _category(cell: str, seen: set[str], *, name: str, line: int, column: str) -> str | None:
    """A categorical cell's text (stripped; None when empty), counted against MAX_CATEGORIES."""
    text = cell.strip()
    if not text:
        return None
    if text not in seen:
        if len(seen) >= MAX_CATEGORIES:
            raise DatasetInvalidError(
                f"{name}: line {line}: categorical column {column!r} has more than {MAX_CATEGORIES} "
                f"distinct values (free text or an id?); drop it from the features or group its values"
            )
        seen.add(text)
    return text


def _number(cell: str, *, name: str, line: int, column: str) -> float:
    if not cell.strip():
        return math.nan  # a missing value; the trainer's gradient boosting handles NaN
    try:
        value = float(cell)
    except ValueError:
        raise DatasetInvalidError(
            f"{name}: line {line}: column {column!r} is not a number: {cell!r}"
        ) from None
    if math.isinf(value):
        raise DatasetInvalidError(f"{name}: line {line}: column {column!r} is infinite")
    return value
