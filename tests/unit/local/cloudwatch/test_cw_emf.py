"""EMF lines become metric datums exactly as the embedded metric format specification describes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from modelops_local.cloudwatch import EmfError, parse_emf_line

SPEC_EXAMPLE = {
    "_aws": {
        "Timestamp": 1574109732004,
        "CloudWatchMetrics": [
            {
                "Namespace": "lambda-function-metrics",
                "Dimensions": [["functionVersion"]],
                "Metrics": [{"Name": "time", "Unit": "Milliseconds"}],
            }
        ],
    },
    "functionVersion": "$LATEST",
    "time": 100,
    "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
}


def _pod_line(**overrides: object) -> str:
    doc: dict[str, object] = {
        "_aws": {
            "Timestamp": 1795860000000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "ModelOps",
                    "Dimensions": [["Model", "Variant"], ["Model", "Variant", "Version"]],
                    "Metrics": [
                        {"Name": "Requests", "Unit": "Count", "StorageResolution": 1},
                        {"Name": "Errors", "Unit": "Count", "StorageResolution": 1},
                        {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
                    ],
                }
            ],
        },
        "Model": "churn",
        "Variant": "canary",
        "Version": "7",
        "Requests": 20,
        "Errors": 3,
        "Latency": [12.5, 40, 7],
    }
    doc.update(overrides)
    return json.dumps(doc)


def test_the_specification_example_yields_its_one_metric():
    # Given the valid example from the EMF specification
    line = json.dumps(SPEC_EXAMPLE)
    # When parsed
    [datum] = parse_emf_line(line)
    # Then it is the `time` metric of the function version, at the document's timestamp
    assert datum.namespace == "lambda-function-metrics"
    assert datum.name == "time"
    assert datum.dimensions == (("functionVersion", "$LATEST"),)
    assert datum.values == (100.0,)
    assert datum.unit == "Milliseconds"
    assert datum.storage_resolution == 60
    assert datum.timestamp == datetime(2019, 11, 18, 20, 42, 12, 4000, tzinfo=UTC)


def test_every_dimension_set_makes_its_own_metric_and_arrays_keep_every_value():
    # Given a pod line with two dimension sets and three metrics, one of them an array
    datums = parse_emf_line(_pod_line())
    # Then each metric appears once per dimension set
    assert len(datums) == 6
    keys = {(d.name, d.dimensions) for d in datums}
    assert ("Errors", (("Model", "churn"), ("Variant", "canary"))) in keys
    assert ("Errors", (("Model", "churn"), ("Variant", "canary"), ("Version", "7"))) in keys
    latency = next(d for d in datums if d.name == "Latency")
    assert latency.values == (12.5, 40.0, 7.0)
    assert latency.storage_resolution == 1


def test_several_directives_each_contribute():
    # Given two directives in one document
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    doc["_aws"]["CloudWatchMetrics"].append(
        {"Namespace": "other", "Dimensions": [[]], "Metrics": [{"Name": "time"}]}
    )
    # When parsed
    datums = parse_emf_line(json.dumps(doc))
    # Then the second has no dimensions and the default unit
    assert [(d.namespace, d.dimensions, d.unit) for d in datums] == [
        ("lambda-function-metrics", (("functionVersion", "$LATEST"),), "Milliseconds"),
        ("other", (), "None"),
    ]


def test_to_metric_data_is_a_put_metric_data_entry():
    # Given a parsed datum  When turned into a PutMetricData entry  Then every field is carried over
    [datum] = parse_emf_line(json.dumps(SPEC_EXAMPLE))
    assert datum.to_metric_data() == {
        "MetricName": "time",
        "Dimensions": [{"Name": "functionVersion", "Value": "$LATEST"}],
        "Timestamp": datum.timestamp,
        "Values": [100.0],
        "Unit": "Milliseconds",
        "StorageResolution": 60,
    }


def test_a_missing_timestamp_uses_the_receive_time_or_is_an_error():
    # Given a document without _aws.Timestamp
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    del doc["_aws"]["Timestamp"]
    line = json.dumps(doc)
    # When parsed without a receive time  Then the error names the member
    with pytest.raises(EmfError, match=r"_aws\.Timestamp"):
        parse_emf_line(line)
    # When parsed with one  Then that time is used
    received = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_emf_line(line, received_at=received)[0].timestamp == received


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("GET /ping 200", "not a JSON object"),
        ("[1, 2]", "root must be a JSON object"),
        (json.dumps({"time": 1}), "_aws: missing"),
        (_pod_line(Variant=3), "dimension 'Variant'"),
        (_pod_line(Errors="3"), "metric 'Errors': '3' is not a number"),
        (_pod_line(Errors=True), "metric 'Errors': True is not a number"),
        (_pod_line(Latency=list(range(101))), "101 values, at most 100"),
        (_pod_line(Requests=None), "metric 'Requests': None is not a number"),
        (_pod_line().replace('"Errors": 3', '"Errors": NaN'), "NaN is not a valid JSON number"),
        (
            _pod_line().replace(
                '"Unit": "Count", "StorageResolution": 1}, {"Name": "Errors"',
                '"Unit": "ms"}, {"Name": "Errors"',
            ),
            "'ms' is not a CloudWatch unit",
        ),
        (
            _pod_line().replace('"StorageResolution": 1', '"StorageResolution": 5'),
            "StorageResolution: 5 must be 1 or 60",
        ),
        (_pod_line().replace('"Namespace": "ModelOps"', '"Namespace": "AWS/EC2"'), "reserved for AWS"),
    ],
)
def test_invalid_lines_raise_an_error_naming_the_problem(line: str, message: str):
    # Given an invalid line  When parsed  Then EmfError says what is wrong
    with pytest.raises(EmfError) as err:
        parse_emf_line(line)
    assert message in str(err.value)


def test_a_metric_without_its_member_is_an_error():
    # Given a directive naming a metric the root does not have
    doc = json.loads(_pod_line())
    del doc["Latency"]
    # When parsed  Then the missing member is named
    with pytest.raises(EmfError, match="metric 'Latency': the root has no member"):
        parse_emf_line(json.dumps(doc))


def test_a_histogram_member_keeps_values_with_their_counts():
    # Given a histogram as AWS's EMF library writes it (Values, Counts, Max, Min, Count, Sum)
    line = json.dumps(
        {
            **SPEC_EXAMPLE,
            "time": {"Values": [1.0, 3.0], "Counts": [5, 2], "Max": 3.0, "Min": 1.0, "Count": 7, "Sum": 11.0},
        }
    )

    # When parsed
    [datum] = parse_emf_line(line)

    # Then the datum carries both, and its PutMetricData entry has Values and Counts
    assert (datum.values, datum.counts) == ((1.0, 3.0), (5.0, 2.0))
    entry = datum.to_metric_data()
    assert (entry["Values"], entry["Counts"]) == ([1.0, 3.0], [5.0, 2.0])


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ({"Values": [1.0]}, "needs Values and Counts arrays"),
        ({"Values": [1.0, 2.0], "Counts": [1]}, "2 Values but 1 Counts"),
        ({"Values": [1.0], "Counts": [-1]}, "Counts must be >= 0"),
        ({"Values": list(range(101)), "Counts": [1] * 101}, "101 Values, at most 100"),
    ],
)
def test_a_malformed_histogram_is_an_error(member: dict, message: str):
    with pytest.raises(EmfError, match=message):
        parse_emf_line(json.dumps({**SPEC_EXAMPLE, "time": member}))
