"""Property-based tests (hypothesis; bounded, deterministic profile in tests/conftest.py).

Parsers: whatever arrives, the only exception is the documented one (RequestError, ConfigError,
DatasetInvalidError), and valid generated input round-trips. Patch builders: a Deployment patch
touches only the intended fields, pins the image by digest, is idempotent, and never drops the
variant's selector and labels.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from modelops.canary import ALARM_KINDS, VARIANTS, alarm_name, parse_alarm_name
from modelops.config import TASK_METRICS, DataSchema, ModelConfig, load_config_file, parse_config
from modelops.dataset import MIN_ROWS_PER_CLASS, validate_csv
from modelops.deployments import (
    RUN_ANNOTATION,
    VERSION_ANNOTATION,
    image_patch,
    replicas_patch,
    require_digest,
)
from modelops.errors import ConfigError, DatasetInvalidError, KubeInvalidError, RequestError
from modelops.steps.alarms import handle_alarm
from modelops.steps.rollout import _unpinned_patch
from modelops.triggers import (
    MODEL_NAME_RE,
    PipelineRequest,
    model_from_key,
    parse_alarm_event,
    parse_execution_input,
    parse_trigger,
)

from tests.conftest import load_event

ROOT = Path(__file__).resolve().parents[3]
BUCKET = "modelops-pipeline-bucket"
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")

# --- strategies ------------------------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
model_names = st.from_regex(MODEL_NAME_RE, fullmatch=True)
# S3 keys: up to 1024 bytes of UTF-8, any characters but control ones (long ones drawn on purpose:
# the random ones stay short)
file_names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300).filter(
    lambda name: not name.endswith("/")
) | st.integers(500, 970).map(lambda n: f"{'x' * n}.csv")
k8s_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
digests = st.from_regex(r"\A[0-9a-f]{64}\Z").map(
    lambda hexes: f"123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving@sha256:{hexes}"
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (tuple of keys / indexes) into a JSON document."""
    out = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            out += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            out += paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one to three places deleted or replaced by arbitrary JSON."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(doc)))
        if not where:
            doc = draw(json_values)
            continue
        parent = doc
        try:
            for part in where[:-1]:
                parent = parent[part]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this place
    return doc


# --- triggers (S3 events, schedules, manual starts) -----------------------------------------------
S3_EVENT = load_event("s3_object_created.json")
S3_EVENT["detail"]["bucket"]["name"] = BUCKET
TRIGGERS = [S3_EVENT, load_event("schedule.json"), load_event("manual_start.json")]


def _parse_or_refuse(event: Any) -> PipelineRequest | None:
    try:
        request = parse_trigger(event, bucket=BUCKET)
    except RequestError as exc:
        assert str(exc)
        return None
    assert EXECUTION_NAME.fullmatch(request.execution_name())
    return request


@given(json_values)
def test_any_json_trigger_parses_or_is_a_request_error(event):
    _parse_or_refuse(event)


@given(st.sampled_from(TRIGGERS).flatmap(mutated))
def test_a_damaged_trigger_parses_or_is_a_request_error(event):
    _parse_or_refuse(event)


@given(
    model=model_names,
    name=file_names,
    size=st.integers(1, 5 * 1024**4),
    etag=st.from_regex(r"\A[0-9a-f]{32}(-[0-9]{1,5})?\Z"),
    version=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64),
)
def test_an_object_created_event_round_trips_to_the_execution(model, name, size, etag, version):
    key = f"incoming/{model}/{name}"
    assume(len(key.encode()) <= 1024)  # the longest key S3 allows
    event = copy.deepcopy(S3_EVENT)
    event["detail"]["object"] = {"key": key, "size": size, "etag": etag}
    if version is not None:
        event["detail"]["object"]["version-id"] = version
    # When parsed (twice: a redelivery)
    request = parse_trigger(event, bucket=BUCKET)
    again = parse_trigger(copy.deepcopy(event), bucket=BUCKET)
    # Then it names the model and the object, its execution name is valid and stable, and what
    # start_pipeline passes as execution input is what ResolveRequest reads back
    assert (request.model, request.trigger) == (model, "s3")
    assert request.dataset is not None and (request.dataset.key, request.dataset.version_id) == (key, version)
    assert request.execution_name() == again.execution_name()
    assert EXECUTION_NAME.fullmatch(request.execution_name())
    assert parse_execution_input(json.loads(request.model_dump_json()), bucket=BUCKET) == request


@given(model=model_names, name=file_names)
def test_model_from_key_inverts_the_incoming_prefix(model, name):
    assert model_from_key(f"incoming/{model}/{name}") == model


@given(st.text(max_size=80))
def test_any_key_maps_to_a_valid_model_or_is_refused(key):
    try:
        model = model_from_key(key)
    except RequestError:
        return
    assert MODEL_NAME_RE.fullmatch(model) and key.startswith(f"incoming/{model}/")


@given(
    model=model_names,
    slot=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    other=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_each_schedule_slot_is_its_own_run(model, slot, other):
    def event(moment: datetime) -> dict[str, str]:
        return {
            "source": "modelops.schedule",
            "model": model,
            "scheduled_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    first = parse_trigger(event(slot), bucket=BUCKET)
    assert first.execution_name() == parse_trigger(event(slot), bucket=BUCKET).execution_name()
    second = parse_trigger(event(other), bucket=BUCKET)
    assert (first.execution_name() == second.execution_name()) == (
        slot.replace(microsecond=0) == other.replace(microsecond=0)
    )


@given(
    model=model_names,
    name=st.none() | file_names,
    reason=st.text(max_size=500),
    request_id=st.text(min_size=1, max_size=128),
)
def test_a_manual_start_round_trips_to_the_execution(model, name, reason, request_id):
    payload: dict[str, Any] = {"model": model, "reason": reason, "request_id": request_id}
    if name is not None:
        payload["dataset_key"] = f"incoming/{model}/{name}"
    request = parse_trigger(payload, bucket=BUCKET)
    assert (request.model, request.reason) == (model, reason)
    assert (request.dataset.key if request.dataset else None) == payload.get("dataset_key")
    assert parse_execution_input(json.loads(request.model_dump_json()), bucket=BUCKET) == request


@given(st.sampled_from([load_event("execution_input.json")]).flatmap(mutated) | json_values)
def test_any_execution_input_parses_or_is_a_request_error(raw):
    try:
        request = parse_execution_input(raw, bucket=BUCKET)
    except RequestError:
        return
    assert request.dataset is None or request.dataset.key.startswith(f"incoming/{request.model}/")


# --- alarm events ----------------------------------------------------------------------------------
ALARM_EVENT = load_event("alarm_state_change.json")


class _NoModels:
    def get_model_document(self, model: str) -> None:
        return None


@given(st.sampled_from([ALARM_EVENT]).flatmap(mutated) | json_values)
def test_any_alarm_event_is_handled_or_is_a_request_error(event):
    try:
        result = handle_alarm(event, store=_NoModels(), callbacks=None, alarm_prefix="modelops-")
    except RequestError as exc:
        assert str(exc).startswith(
            ("malformed CloudWatch Alarm State Change event: ", "event must be a JSON")
        )
        return
    assert result["action"] == "ignored"


@given(
    prefix=st.sampled_from(["modelops-", "prod-ml-", "x-"]),
    model=model_names,
    variant=st.sampled_from(VARIANTS),
    kind=st.sampled_from(ALARM_KINDS),
    state=st.sampled_from(["OK", "ALARM", "INSUFFICIENT_DATA"]),
    reason=st.text(max_size=200),
)
def test_alarm_names_and_events_round_trip(prefix, model, variant, kind, state, reason):
    name = alarm_name(prefix, model, variant, kind)
    assert parse_alarm_name(name, prefix) == (model, variant, kind)
    event = copy.deepcopy(ALARM_EVENT)
    event["detail"]["alarmName"] = name
    event["detail"]["state"] = {"value": state, "reason": reason}
    parsed = parse_alarm_event(event)
    assert (parsed.alarm_name, parsed.state, parsed.reason) == (name, state, reason)


# --- model config documents ------------------------------------------------------------------------
CHURN = load_config_file(ROOT / "models" / "churn.yaml").to_document()


@given(mutated(CHURN))
def test_a_damaged_config_parses_or_is_a_config_error(document):
    try:
        config = parse_config(document)
    except ConfigError as exc:
        assert str(exc).startswith("model config is invalid: ")
        return
    assert parse_config(config.to_document()) == config


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid config documents: churn.yaml with its fields varied within their documented bounds."""
    doc = copy.deepcopy(CHURN)
    doc["name"] = draw(model_names)
    features = draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9_]{0,15}\Z"), min_size=1, max_size=8, unique=True))
    doc["data"]["schema"].update(
        feature_columns=features,
        label_column=draw(st.from_regex(r"\A[A-Z][A-Za-z0-9_]{0,15}\Z")),  # never one of the features
        min_rows=draw(st.integers(10, 10**6)),
    )
    task = draw(st.sampled_from(sorted(TASK_METRICS)))
    doc["data"]["task"] = task
    doc["training"]["objective"]["metric"] = draw(st.sampled_from(TASK_METRICS[task]))
    doc["training"]["hyperparameters"] = draw(
        st.dictionaries(
            st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda k: k != "algorithm"),  # training.algorithm
            st.booleans() | st.integers(-1000, 1000) | st.floats(-10, 10) | st.text(max_size=10),
            max_size=4,
        )
    )
    doc["canary"].update(replicas=None, percent=None)
    doc["canary"][draw(st.sampled_from(["replicas", "percent"]))] = draw(st.integers(1, 50))
    periods = draw(st.integers(1, 100))
    doc["alarms"].update(evaluation_periods=periods, datapoints_to_alarm=draw(st.integers(1, periods)))
    doc["schedule"]["expression"] = draw(
        st.none()
        | st.builds("rate({} {})".format, st.integers(1, 60), st.sampled_from(["minutes", "hours", "days"]))
    )
    return doc


@given(configs())
def test_a_valid_config_round_trips(document):
    config = parse_config(document)
    assert isinstance(config, ModelConfig)
    assert parse_config(config.to_document()) == config
    assert config.to_document() == parse_config(json.loads(json.dumps(config.to_document()))).to_document()


@given(
    data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    suffix=st.sampled_from([".yaml", ".json"]),
)
def test_any_config_file_loads_or_is_a_config_error(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(data)
        try:
            load_config_file(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


# --- datasets --------------------------------------------------------------------------------------
SCHEMA = DataSchema(label_column="y", feature_columns=["a", "b", "c"], min_rows=10)


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_bytes_validate_or_are_a_dataset_error(data):
    try:
        validate_csv(data, SCHEMA, name="d.csv")
    except DatasetInvalidError as exc:
        assert str(exc).startswith("d.csv: ")


@given(
    order=st.permutations(["a", "b", "c", "y"]),
    rows=st.lists(
        st.tuples(
            st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=3, max_size=3),
            st.sampled_from(["0", "1"]),
        ),
        min_size=10,
        max_size=60,
    ),
    smoke=st.integers(1, 20),
)
def test_a_valid_dataset_reports_every_row(order, rows, smoke):
    # Both classes, each with the rows a stratified split needs (fewer is refused, tested apart).
    assume(all(sum(1 for _, lab in rows if lab == label) >= MIN_ROWS_PER_CLASS for label in ("0", "1")))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(order)
    for features, label in rows:
        cells = {"a": repr(features[0]), "b": repr(features[1]), "c": repr(features[2]), "y": label}
        writer.writerow([cells[column] for column in order])
    report = validate_csv(buf.getvalue().encode(), SCHEMA, name="d.csv", smoke_size=smoke)
    assert report.rows == len(rows)
    assert report.label_distribution == {
        label: sum(1 for _, lab in rows if lab == label) for label in ("0", "1")
    }
    assert len(report.smoke_sample) == min(smoke, len(rows))
    assert all(sample in [features for features, _ in rows] for sample in report.smoke_sample)


# --- Deployment patch builders -----------------------------------------------------------------------
@st.composite
def deployments(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A Deployment of one variant with 1-4 containers, and the name of the model's container."""
    variant = draw(st.sampled_from(["stable", "canary"]))
    names = draw(st.lists(k8s_names, min_size=1, max_size=4, unique=True))
    containers = []
    for name in names:
        container: dict[str, Any] = {
            "name": name,
            "image": draw(st.sampled_from(["nginx:1.27", "x@sha256:" + "a" * 64])),
        }
        env = []
        if draw(st.booleans()):
            env.append({"name": "LOG_LEVEL", "value": "info"})
        if draw(st.booleans()):
            env.append(
                {"name": "MODELOPS_VERSION", "value": draw(st.text(max_size=5))}
                if draw(st.booleans())
                else {"name": "MODELOPS_VERSION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            )
        if env:
            container["env"] = draw(st.permutations(env))
        containers.append(container)
    labels = {"app": "churn", "variant": variant}
    template_meta: dict[str, Any] = {"labels": dict(labels)}
    if draw(st.booleans()):
        template_meta["annotations"] = draw(
            st.dictionaries(
                st.sampled_from(["a/b", VERSION_ANNOTATION, RUN_ANNOTATION, "x"]), st.text(max_size=5)
            )
        )
    deployment = {
        "metadata": {"name": f"churn-{variant}", "namespace": "models", "labels": {"app": "churn"}},
        "spec": {
            "replicas": draw(st.integers(0, 10)),
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": template_meta, "spec": {"containers": containers}},
        },
    }
    return deployment, draw(st.sampled_from(names))


def _fields_outside_the_patch(deployment: dict[str, Any], container: str) -> dict[str, Any]:
    """Everything an image patch must leave alone: the Deployment minus the model container's image
    and MODELOPS_VERSION value, the replicas and the two modelops annotations."""
    doc = copy.deepcopy(deployment)
    spec = doc["spec"]
    spec.pop("replicas", None)
    annotations = spec["template"]["metadata"].get("annotations") or {}
    for key in (VERSION_ANNOTATION, RUN_ANNOTATION):
        annotations.pop(key, None)
    spec["template"]["metadata"]["annotations"] = annotations
    for item in spec["template"]["spec"]["containers"]:
        if item["name"] == container:
            item.pop("image")
            for env in item.get("env") or []:
                if env["name"] == "MODELOPS_VERSION" and "value" in env:
                    env["value"] = None
    return doc


@given(
    deployments(),
    digests,
    st.none() | st.integers(0, 10),
    st.none() | st.text(min_size=1, max_size=8),
    st.none() | st.text(min_size=1, max_size=12),
)
def test_an_image_patch_touches_only_the_image_and_what_goes_with_it(
    target, image, replicas, version, run_id
):
    deployment, container = target
    ops = image_patch(
        deployment, container=container, image=image, replicas=replicas, version=version, run_id=run_id
    )
    patched = jsonpatch.apply_patch(deployment, ops)
    # The first op guards the container's name; the image is pinned by digest
    assert ops[0]["op"] == "test" and ops[0]["value"] == container
    (model,) = [c for c in patched["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    assert model["image"] == image and require_digest(model["image"]) == image
    # Only the intended fields changed: the selector and variant labels (and every other container) stay
    assert _fields_outside_the_patch(patched, container) == _fields_outside_the_patch(deployment, container)
    assert patched["spec"]["selector"] == deployment["spec"]["selector"]
    assert (
        patched["spec"]["template"]["metadata"]["labels"]
        == deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert patched["spec"]["replicas"] == (deployment["spec"]["replicas"] if replicas is None else replicas)
    annotations = patched["spec"]["template"]["metadata"].get("annotations") or {}
    for key, value in ((VERSION_ANNOTATION, version), (RUN_ANNOTATION, run_id)):
        if value is not None:
            assert annotations[key] == value
    for env in model.get("env") or []:
        if env["name"] == "MODELOPS_VERSION" and "value" in env and version is not None:
            assert env["value"] == version
    # Idempotent: the same ops again, or the patch rebuilt from the result, change nothing more
    assert jsonpatch.apply_patch(patched, ops) == patched
    rebuilt = image_patch(
        patched, container=container, image=image, replicas=replicas, version=version, run_id=run_id
    )
    assert jsonpatch.apply_patch(patched, rebuilt) == patched


@given(deployments(), digests)
def test_an_image_patch_never_lands_on_a_renamed_container(target, image):
    deployment, container = target
    ops = image_patch(deployment, container=container, image=image)
    moved = copy.deepcopy(deployment)
    index = [c["name"] for c in moved["spec"]["template"]["spec"]["containers"]].index(container)
    moved["spec"]["template"]["spec"]["containers"][index]["name"] = container + "-old"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)


@given(deployments(), st.text(max_size=120))
def test_only_a_digest_pinned_image_is_patched_in(target, image):
    deployment, container = target
    assume(not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", image))
    with pytest.raises(KubeInvalidError):
        image_patch(deployment, container=container, image=image)


@given(
    deployments(),
    st.sampled_from(["churn:v1", "registry.local/churn:latest", "x@sha256:" + "b" * 64]),
    st.integers(0, 10),
    st.none() | st.text(min_size=1, max_size=8),
)
def test_the_rollback_patch_restores_exactly_the_recorded_image(target, previous, replicas, version):
    deployment, container = target
    ops = _unpinned_patch(deployment, container, previous, replicas, version, "run-1")
    patched = jsonpatch.apply_patch(deployment, ops)
    (model,) = [c for c in patched["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    assert model["image"] == previous and patched["spec"]["replicas"] == replicas
    assert _fields_outside_the_patch(patched, container) == _fields_outside_the_patch(deployment, container)
    assert jsonpatch.apply_patch(patched, ops) == patched


@given(deployments(), st.integers(0, 100))
def test_a_replicas_patch_changes_only_the_replicas(target, replicas):
    deployment, _ = target
    patched = jsonpatch.apply_patch(deployment, replicas_patch(replicas))
    assert patched["spec"]["replicas"] == replicas
    assert {**patched, "spec": {**patched["spec"], "replicas": None}} == {
        **deployment,
        "spec": {**deployment["spec"], "replicas": None},
    }


# --- traffic weights (modelops.traffic) -------------------------------------------------------------
_service_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@st.composite
def _routes(draw: Any) -> tuple[dict[str, Any], str, str]:
    """An HTTPRoute with other rules and backends around one rule naming both Services."""
    stable, canary = draw(st.lists(_service_names, min_size=2, max_size=2, unique=True))
    others = draw(st.lists(_service_names.filter(lambda n: n not in (stable, canary)), max_size=3))

    def ref(name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "port": draw(st.integers(1, 65535))}
        if draw(st.booleans()):
            body["weight"] = draw(st.integers(0, 1000))
        return body

    refs = [ref(stable), ref(canary), *(ref(n) for n in others)]
    refs = draw(st.permutations(refs))
    rules = [{"backendRefs": [ref(n) for n in others]} for _ in range(draw(st.integers(0, 2)))]
    rules.insert(
        draw(st.integers(0, len(rules))), {"matches": [{"path": {"value": "/"}}], "backendRefs": refs}
    )
    route = {
        "metadata": {"name": "r", "namespace": "models", "labels": {"app": "churn"}},
        "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": "churn"}], "rules": rules},
    }
    return route, stable, canary


@given(routes=_routes(), percent=st.integers(0, 100))
def test_weight_patches_change_only_the_two_weights_and_are_idempotent(routes, percent):
    from modelops.traffic import http_route_canary_share, http_route_weight_patch

    route, stable, canary = routes
    ops = http_route_weight_patch(route, stable=stable, canary=canary, canary_percent=percent)
    # every write is guarded by a test of its backendRef's name
    for test, write in zip(ops[::2], ops[1::2], strict=True):
        assert test["op"] == "test" and write["path"] == test["path"].removesuffix("/name") + "/weight"
    patched = jsonpatch.apply_patch(route, ops)
    assert http_route_canary_share(patched, stable=stable, canary=canary) == float(percent)

    # nothing but weights of the two Services changed (labels, parents, matches, other backends)
    def without_our_weights(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        for rule in doc["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                if ref["name"] in (stable, canary) and {r["name"] for r in rule["backendRefs"]} >= {
                    stable,
                    canary,
                }:
                    ref.pop("weight", None)
        return doc

    assert without_our_weights(patched) == without_our_weights(route)
    assert http_route_weight_patch(patched, stable=stable, canary=canary, canary_percent=percent) == []
    assert jsonpatch.apply_patch(patched, ops) == patched
