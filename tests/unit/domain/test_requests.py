from __future__ import annotations

import copy

import pytest
from modelops.errors import RequestError
from modelops.triggers import PipelineRequest, parse_trigger, queued_request, restore_request

from tests.conftest import load_event

BUCKET = "modelops-pipeline-bucket"


def test_s3_event_becomes_request_with_stable_name():
    # Given the sample S3 Object Created event
    event = load_event("s3_object_created.json")
    # When parsed twice (a redelivery)
    first = parse_trigger(event, bucket=BUCKET)
    second = parse_trigger(copy.deepcopy(event), bucket=BUCKET)
    # Then both map to the same execution name: the redelivery starts nothing new
    assert first.model == "churn" and first.trigger == "s3"
    assert first.dataset is not None and first.dataset.key == "incoming/churn/2026-11-22.csv"
    assert first.execution_name() == second.execution_name()
    assert len(first.execution_name()) <= 80


def test_new_object_version_is_a_new_run():
    event = load_event("s3_object_created.json")
    other = copy.deepcopy(event)
    other["detail"]["object"]["version-id"] = "another-version"
    assert (
        parse_trigger(event, bucket=BUCKET).execution_name()
        != parse_trigger(other, bucket=BUCKET).execution_name()
    )


@pytest.mark.parametrize(
    ("key", "size", "message"),
    [
        ("elsewhere/churn/a.csv", 10, "outside incoming/"),
        ("incoming/churn/", 0, "no file under"),
        ("incoming/churn/sub/", 0, "folder marker"),
        ("incoming/Bad_Model/a.csv", 10, "not a valid model name"),
        ("incoming/churn/a.csv", 0, "is empty"),
    ],
)
def test_s3_events_we_refuse(key, size, message):
    event = load_event("s3_object_created.json")
    event["detail"]["object"].update({"key": key, "size": size})
    with pytest.raises(RequestError, match=message):
        parse_trigger(event, bucket=BUCKET)


def test_event_from_another_bucket_refused():
    with pytest.raises(RequestError, match="not the pipeline bucket"):
        parse_trigger(load_event("s3_object_created.json"), bucket="other")


def test_malformed_s3_event_lists_fields():
    event = load_event("s3_object_created.json")
    del event["detail"]["object"]["key"]
    with pytest.raises(RequestError, match=r"detail\.object\.key"):
        parse_trigger(event, bucket=BUCKET)


def test_schedule_slot_is_the_idempotency_key():
    event = load_event("schedule.json")
    a = parse_trigger(event, bucket=BUCKET)
    b = parse_trigger(dict(event), bucket=BUCKET)
    c = parse_trigger({**event, "scheduled_time": "2026-11-29T06:00:00Z"}, bucket=BUCKET)
    assert a.trigger == "schedule"
    assert a.execution_name() == b.execution_name() != c.execution_name()


def test_manual_start_fields_checked_one_by_one():
    with pytest.raises(RequestError) as err:
        parse_trigger({"model": 3, "dataset_key": ["x"]}, bucket=BUCKET)
    assert "model:" in str(err.value) and "dataset_key:" in str(err.value)


def test_manual_dataset_must_belong_to_the_model():
    with pytest.raises(RequestError, match="not under incoming/churn/"):
        parse_trigger({"model": "churn", "dataset_key": "incoming/fraud/x.csv"}, bucket=BUCKET)


def test_manual_request_id_makes_retries_idempotent():
    event = load_event("manual_start.json")
    assert (
        parse_trigger(event, bucket=BUCKET).execution_name()
        == parse_trigger(dict(event), bucket=BUCKET).execution_name()
    )


def test_documented_execution_input_parses():
    request = PipelineRequest.model_validate(load_event("execution_input.json"))
    assert request.model == "churn"


def test_queued_request_gets_its_own_name():
    original = parse_trigger(load_event("s3_object_created.json"), bucket=BUCKET)
    follow = queued_request(original, "churn-s3-abc")
    assert follow.trigger == "queued" and follow.execution_name() != original.execution_name()


def test_a_coalesced_upload_runs_on_the_newest_data_but_a_named_manual_dataset_is_kept():
    # Given an S3 trigger and a manual start naming its dataset, both coalesced
    upload = parse_trigger(load_event("s3_object_created.json"), bucket=BUCKET)
    manual = parse_trigger(
        {"model": "churn", "dataset_key": "incoming/churn/pinned.csv", "request_id": "r1"}, bucket=BUCKET
    )
    # When their follow-up runs are made
    # Then the upload's follow-up resolves the newest object when it starts; the manual one keeps its file
    assert queued_request(upload, "holder").dataset is None
    assert queued_request(manual, "holder").dataset == manual.dataset


def test_non_object_event_refused():
    with pytest.raises(RequestError, match="JSON object"):
        parse_trigger(["not", "a", "dict"], bucket=BUCKET)


def test_a_drift_alarm_in_alarm_becomes_a_drift_request_keyed_by_its_episode():
    # Given the sample drift alarm event (events/drift_alarm_state_change.json)
    event = load_event("drift_alarm_state_change.json")

    # When parsed with the stack's alarm prefix
    request = parse_trigger(event, bucket="b", alarm_prefix="modelops-")

    # Then it is a drift run of churn, on the newest data, keyed by when the alarm entered ALARM
    assert (request.model, request.trigger, request.dataset) == ("churn", "drift", None)
    assert request.idempotency_key == "drift|churn|2026-12-04T10:05:02.000+0000"
    assert request.reason.startswith("drift alarm modelops-churn-drift in ALARM since")
    # and a redelivery of the same event is the same execution
    assert parse_trigger(copy.deepcopy(event), bucket="b", alarm_prefix="modelops-").execution_name() == (
        request.execution_name()
    )


def test_a_restore_request_names_only_a_version_and_stays_a_restore_when_coalesced():
    request = restore_request("churn", "3", now=False, reason="", requested_by="arn:x", request_id="r1")
    assert request.trigger == "restore" and request.restore is not None and request.dataset is None
    assert request.execution_name().startswith("churn-restore-")
    # parsed back as the execution input, and coalesced behind a running holder, it is still a restore
    follow_up = queued_request(PipelineRequest.model_validate(request.model_dump(mode="json")), "holder")
    assert PipelineRequest.model_validate(follow_up.model_dump(mode="json")).restore == request.restore


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": {"value": "OK", "timestamp": "t"}}, "went to OK; only ALARM retrains"),
        ({"alarmName": "modelops-churn-canary-error-rate"}, "is not one of this stack's drift alarms"),
        ({"alarmName": "other-churn-drift"}, "is not one of this stack's drift alarms"),
    ],
)
def test_other_alarm_changes_are_not_triggers(change: dict, message: str):
    event = load_event("drift_alarm_state_change.json")
    event["detail"] = {**event["detail"], **change}
    with pytest.raises(RequestError, match=message):
        parse_trigger(event, bucket="b", alarm_prefix="modelops-")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"restore": None}, "a restore request has trigger 'restore' and a 'restore' section"),
        ({"trigger": "manual"}, "a restore request has trigger 'restore' and a 'restore' section"),
        (
            {"dataset": {"key": "incoming/churn/a.csv"}},
            "a restore request trains nothing and names no dataset",
        ),
        (
            {"restore": {"version": "3", "now": True, "reason": ""}},
            "restore.now skips the canary and needs a reason",
        ),
    ],
)
def test_a_malformed_restore_request_is_refused(change, message):
    document = restore_request(
        "churn", "3", now=False, reason="", requested_by="", request_id="r1"
    ).model_dump(mode="json")
    with pytest.raises(ValueError, match=message):
        PipelineRequest.model_validate({**document, **change})
