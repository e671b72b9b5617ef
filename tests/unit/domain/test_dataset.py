from __future__ import annotations

import json
import re

import pytest
from modelops.config import DataSchema
from modelops.dataset import validate_csv
from modelops.errors import DatasetInvalidError

SCHEMA = DataSchema(label_column="y", feature_columns=["a", "b"], min_rows=10)


def _csv(rows: int, header: str = "a,b,y") -> bytes:
    lines = [header] + [f"{i},{i * 2.5},{i % 2}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_valid_dataset_reports_rows_labels_and_a_smoke_sample():
    report = validate_csv(_csv(50), SCHEMA, name="d.csv", smoke_size=5)
    assert report.rows == 50
    assert report.label_distribution == {"0": 25, "1": 25}
    assert len(report.smoke_sample) == 5 and all(len(r) == 2 for r in report.smoke_sample)


def test_column_order_does_not_matter_and_empty_cells_are_missing():
    data = b"y,b,a\n" + b"\n".join(f"{i % 2},,{i}".encode() for i in range(20)) + b"\n"
    report = validate_csv(data, SCHEMA, name="d.csv")
    assert report.rows == 20


def test_a_missing_value_in_the_smoke_sample_is_null_not_nan():
    # Given rows whose only missing cell is in either column, in the sample the canary is sent
    data = b"a,b,y\n" + b"\n".join(
        (f"{i},,{i % 2}" if i % 3 == 0 else f",{i},{i % 2}" if i % 3 == 1 else f"{i},{i},{i % 2}").encode()
        for i in range(30)
    )
    # When the dataset is validated with room for every row in the sample
    report = validate_csv(data, SCHEMA, name="d.csv", smoke_size=30)
    # Then each missing cell is None, and the sample is strict JSON (what Step Functions carries)
    assert next(r for r in report.smoke_sample if r[1] is None) == [0.0, None]
    assert next(r for r in report.smoke_sample if r[0] is None) == [None, 1.0]
    assert json.loads(json.dumps(report.smoke_sample, allow_nan=False)) == report.smoke_sample


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file is empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (_csv(50, header="a,b,label"), "label column 'y' not found"),
        (_csv(50, header="a,c,y"), r"feature columns \['b'\] missing"),
        (
            b"a,b,y,extra\n" + b"\n".join(b"1,2,0,9" for _ in range(20)),
            r"columns \['extra'\] are not in the model's schema",
        ),
        (_csv(5), "5 data rows, the model needs at least 10"),
        (b"a,b,y\n" + b"\n".join(b"1,2,1" for _ in range(20)), "single value"),
        (b"a,b,y\n1,2\n", "line 2 has 2 fields"),
        (b"a,b,y\n" + b"\n".join(b"1,x,0" for _ in range(20)), "column 'b' is not a number: 'x'"),
        (b"a,a,y\n1,2,0\n", "duplicate column names"),
    ],
)
def test_bad_datasets_say_what_is_wrong(data, message):
    with pytest.raises(DatasetInvalidError, match=message):
        validate_csv(data, SCHEMA, name="d.csv")


def test_too_large_for_schema():
    schema = DataSchema(label_column="y", feature_columns=["a", "b"], min_rows=10, max_bytes=100)
    with pytest.raises(DatasetInvalidError, match="exceeds the schema's max_bytes"):
        validate_csv(_csv(50), schema, name="d.csv")


def test_a_regression_dataset_is_summarised_not_counted_per_value():
    # Given 20,000 rows whose targets are all different (a regression model's usual data)
    lines = ["a,b,y"] + [f"{i},{i * 0.5},{i * 0.001 - 3}" for i in range(20_000)]
    report = validate_csv(("\n".join(lines) + "\n").encode(), SCHEMA, name="r.csv", task="regression")
    # Then the report holds the target's range and mean, not one entry per value: it stays a few
    # hundred bytes as a Step Functions state (256 KB at most) whatever the file's size
    assert report.rows == 20_000 and report.label_distribution == {}
    assert report.target == pytest.approx({"min": -3.0, "max": 16.999, "mean": 6.9995})


def test_a_regression_target_with_a_single_value_is_refused():
    lines = ["a,b,y"] + [f"{i},{i},4.5" for i in range(20)]
    with pytest.raises(DatasetInvalidError, match="label 'y' has a single value \\['4.5'\\]; cannot train"):
        validate_csv(("\n".join(lines) + "\n").encode(), SCHEMA, name="r.csv", task="regression")


CATEGORICAL = DataSchema(
    label_column="y", feature_columns=["a", "plan"], categorical_columns=["plan"], min_rows=10
)


def test_a_categorical_column_is_text_and_an_empty_cell_is_missing():
    # Given a categorical column holding words (one empty cell, one padded) beside a numeric one
    plans = ["basic", " plus ", "premium", ""]
    data = b"a,plan,y\n" + b"\n".join(f"{i},{plans[i % 4]},{i % 2}".encode() for i in range(20))
    # When validated with every row in the smoke sample
    report = validate_csv(data, CATEGORICAL, name="d.csv", smoke_size=20)
    # Then the sample carries the stripped text, None where empty, and stays strict JSON
    assert report.rows == 20
    assert [r[1] for r in report.smoke_sample[:4]] == ["basic", "plus", "premium", None]
    assert report.smoke_sample[0][0] == 0.0
    assert json.loads(json.dumps(report.smoke_sample, allow_nan=False)) == report.smoke_sample


def test_a_numeric_column_beside_a_categorical_one_keeps_its_checks():
    data = b"a,plan,y\n" + b"\n".join(f"{'x' if i == 3 else i},gold,{i % 2}".encode() for i in range(20))
    with pytest.raises(DatasetInvalidError, match=r"^d.csv: line 5: column 'a' is not a number: 'x'$"):
        validate_csv(data, CATEGORICAL, name="d.csv")


def test_a_categorical_column_with_too_many_distinct_values_is_refused():
    from modelops.dataset import MAX_CATEGORIES

    # Given a free-text column: every row a new value
    data = b"a,plan,y\n" + b"\n".join(f"{i},note {i},{i % 2}".encode() for i in range(MAX_CATEGORIES + 5))
    # When validated  Then the error names the file, the line where the cap was passed and the column
    with pytest.raises(DatasetInvalidError) as err:
        validate_csv(data, CATEGORICAL, name="d.csv")
    assert str(err.value).startswith(
        f"d.csv: line {MAX_CATEGORIES + 2}: categorical column 'plan' has more than {MAX_CATEGORIES} distinct values"
    )
    # And at the cap exactly, the column is accepted
    ok = b"a,plan,y\n" + b"\n".join(
        f"{i},v{i % MAX_CATEGORIES},{i % 2}".encode() for i in range(MAX_CATEGORIES + 5)
    )
    assert validate_csv(ok, CATEGORICAL, name="d.csv").rows == MAX_CATEGORIES + 5


def _labelled(labels: list[str]) -> bytes:
    return ("a,b,y\n" + "".join(f"{i},{i / 2},{label}\n" for i, label in enumerate(labels))).encode()


def test_a_multiclass_dataset_reports_its_classes_by_name():
    labels = ["gold", "silver", "bronze"] * 10
    report = validate_csv(_labelled(labels), SCHEMA, name="d.csv", task="multiclass_classification")
    assert report.label_distribution == {"gold": 10, "silver": 10, "bronze": 10}


@pytest.mark.parametrize(
    ("labels", "task", "message"),
    [
        (["gold", "silver", "bronze"] * 10, "binary_classification", "3 distinct values"),
        (
            ["gold"] * 10 + ["silver"] * 10 + ["bronze"] * 3,
            "multiclass_classification",
            "classes with fewer than 4 rows {'bronze': 3}; training needs at least 4 of each",
        ),
        (["yes"] * 20 + ["no"] * 2, "binary_classification", "fewer than 4 rows {'no': 2}"),
        (
            [f"c{i}" for i in range(101)] * 4,
            "multiclass_classification",
            "more than 100 distinct values; a classifier supports at most 100",
        ),
    ],
)
def test_labels_the_task_cannot_train_on_are_refused_before_training(labels, task, message):
    with pytest.raises(DatasetInvalidError, match=re.escape(message)):
        validate_csv(_labelled(labels), SCHEMA, name="d.csv", task=task)
