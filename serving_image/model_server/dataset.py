"""Read the training channel: one or more CSV files with a header row, numeric feature columns
(and text ones, for the columns asked for as categorical).

Empty feature cells become NaN (gradient boosting handles missing values); anything else that is not
a number, in a numeric column, is an error naming the file, line and column. A categorical column's
cell is its stripped text.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_server.errors import TrainingDataError
from model_server.estimator import Matrix


@dataclass(frozen=True)
class Table:
    """Rows of every CSV file in a channel, in file then line order."""

    columns: tuple[str, ...]  # the feature columns asked for, in that order
    # shape (rows, len(columns)): float64, or object (floats and text) when some columns are categorical
    values: Matrix
    labels: list[str]  # the label cell of each row, stripped
    files: tuple[str, ...]  # file names relative to the channel folder
    categorical: frozenset[str] = frozenset()  # the columns read as text


def channel_csv_files(channel_dir: Path, channel: str) -> list[Path]:
    """Every *.csv file under the channel folder (recursively, sorted); TrainingDataError if none."""
    if not channel_dir.is_dir():
        raise TrainingDataError(f"channel {channel!r} is missing: no folder {channel_dir}")
    files = sorted(p for p in channel_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        found = sorted(p.name for p in channel_dir.rglob("*") if p.is_file())[:10]
        raise TrainingDataError(f"channel {channel!r} has no .csv files in {channel_dir} (found: {found})")
    return files


def read_table(
    files: Sequence[Path],
    *,
    root: Path,
    label_column: str,
    columns: Sequence[str],
    categorical: Collection[str] = (),
) -> Table:
    """Read `columns` (as floats, those in `categorical` as text) and `label_column` (as text) from
    every file."""
    text_columns = frozenset(c for c in columns if c in categorical)
    rows: list[list[Any]] = []
    labels: list[str] = []
    names = []
    for path in files:
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        names.append(name)
        _read_file(path, name, label_column, columns, text_columns, rows, labels)
    if not rows:
        raise TrainingDataError(f"no data rows in {', '.join(names)} (only a header?)")
    values: Matrix
    if text_columns:
        values = np.empty((len(rows), len(columns)), dtype=object)
        values[:] = rows
    else:
        values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return Table(
        columns=tuple(columns), values=values, labels=labels, files=tuple(names), categorical=text_columns
    )


def _read_file(
    path: Path,
    name: str,
    label_column: str,
    columns: Sequence[str],
    text_columns: frozenset[str],
    rows: list[list[Any]],
    labels: list[str],
) -> None:
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise TrainingDataError(f"cannot read {name}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TrainingDataError(f"{name} is empty (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TrainingDataError(f"{name}: cannot read the CSV header: {exc}") from None
        if label_column not in header:
            raise TrainingDataError(f"label column {label_column!r} not found in {name} (columns: {header})")
        missing = [c for c in columns if c not in header]
        if missing:
            raise TrainingDataError(f"feature columns {missing} not found in {name} (columns: {header})")
        label_idx = header.index(label_column)
        idx = [header.index(c) for c in columns]
        try:
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise TrainingDataError(
                        f"{name} line {line_no} has {len(row)} fields, the header has {len(header)}"
                    )
                label = row[label_idx].strip()
                if not label:
                    raise TrainingDataError(f"{name} line {line_no}: label column {label_column!r} is empty")
                rows.append(
                    [
                        _category(row[i]) if col in text_columns else _cell(row[i], name, line_no, col)
                        for i, col in zip(idx, columns, strict=True)
                    ]
                )
                labels.append(label)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TrainingDataError(
                f"{name} is not parseable as CSV near line {reader.line_num}: {exc}"
            ) from None


def _category(cell: str) -> str | float:
    """A categorical cell: its stripped text, NaN when empty (the encoder's missing value)."""
    return cell.strip() or math.nan


def _cell(cell: str, name: str, line: int, column: str) -> float:
    text = cell.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise TrainingDataError(f"{name} line {line}: column {column!r} is not a number: {cell!r}") from None
    if math.isinf(value):
        raise TrainingDataError(f"{name} line {line}: column {column!r} is infinite")
    return value
