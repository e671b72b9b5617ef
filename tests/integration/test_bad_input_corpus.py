"""The bad-input corpus (tests/corpus/, see its README): every malformed file goes through the real
entry point and must (a) fail with the exact message a user sees and (b) change nothing beyond what
the design allows: no execution started (or one that failed with that reason), no Deployment
patched, no lock held, no model config, alarm, schedule or training job created.

One moto world serves the module (the workflow harness of tests/integration/workflow: the real
state machine in moto's interpreter, the real handlers, the Kubernetes test double); every case
compares a snapshot of that world taken before it with one taken after.
"""

from __future__ import annotations

import copy
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from modelops import wiring
from modelops.adapters.aws import client as cached_client
from modelops.adapters.s3 import S3Objects
from modelops.steps.resolve import resolve
from moto import mock_aws

from modelops_cli.main import main as cli
from modelops_local.moto_patches import MotoPatches
from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, churn_rows
from tests.conftest import load_event
from tests.integration.fake_kube import FakeKube, deployment
from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.harness import (
    BUCKET,
    REGION,
    ROOT,
    STACK,
    TABLE,
    Context,
    Harness,
    function_arn,
)
from tests.train_program import TrainRun, run_train
from tests.waiting import wait_for

CORPUS = ROOT / "tests" / "corpus"
FOLDERS = (
    "s3_events",
    "schedule",
    "manual_start",
    "execution_input",
    "model_config",
    "datasets",
    "training",
    "alarm_events",
)
MODELS = ("churn", "live", "idle")  # live: the rollout on_alarm cases run against; idle: never gets data


@dataclass(frozen=True)
class Case:
    folder: str
    spec: dict[str, Any]

    @property
    def file(self) -> str:
        return str(self.spec["file"])

    @property
    def path(self) -> Path:
        return CORPUS / self.folder / self.file

    @property
    def stem(self) -> str:
        return self.file.rsplit(".", 1)[0]

    def message(self, file: str = "{file}") -> str:
        """The expected message, `{file}` replaced by the path the file was given as."""
        return str(self.spec["expect_message"]).replace("{file}", file)


def manifest(folder: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load((CORPUS / folder / "cases.yaml").read_text())["cases"])


def cases(folder: str) -> list[Any]:
    return [pytest.param(Case(folder, spec), id=spec["file"].rsplit(".", 1)[0]) for spec in manifest(folder)]


def test_every_corpus_file_has_one_case_that_names_what_is_wrong():
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(FOLDERS)
    total = 0
    for folder in FOLDERS:
        specs = manifest(folder)
        files = sorted(p.name for p in (CORPUS / folder).iterdir() if p.name != "cases.yaml")
        assert sorted(s["file"] for s in specs) == files, f"{folder}: files and cases.yaml differ"
        contents = [(CORPUS / folder / name).read_bytes() for name in files]
        assert len(set(contents)) == len(contents), f"{folder}: two cases are the same file"
        for spec in specs:
            assert spec.get("about"), spec
            assert spec["expect_field"] in spec["expect_message"], spec
        total += len(specs)
    assert total >= 50


# --- the world ---------------------------------------------------------------------------------------
class World:
    def __init__(self, harness: Harness, kube: FakeKube) -> None:
        self.h = harness
        self.kube = kube
        self.cw = boto3.client("cloudwatch", region_name=REGION)
        self.scheduler = boto3.client("scheduler", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)

    def snapshot(self) -> dict[str, Any]:
        """Everything a bad input must not change: the state table (configs, locks, rollouts, pending
        requests, history), executions, Deployments, alarms, schedules and training jobs."""
        items = {}
        for page in self.h.ddb.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
            for item in page["Items"]:
                items[f"{item['pk']['S']} {item['sk']['S']}"] = json.dumps(item, sort_keys=True)
        executions = {}
        for page in self.h.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.h.state_machine_arn
        ):
            executions.update({e["name"]: e["status"] for e in page["executions"]})
        return {
            "table": items,
            "executions": executions,
            "deployments": json.dumps(self.kube.deployments, sort_keys=True),
            "alarms": sorted(a["AlarmName"] for a in self.cw.describe_alarms()["MetricAlarms"]),
            "schedules": sorted(
                s["Name"] for s in self.scheduler.list_schedules(GroupName=STACK)["Schedules"]
            ),
            "training_jobs": sorted(
                j["TrainingJobName"] for j in self.sagemaker.list_training_jobs()["TrainingJobSummaries"]
            ),
        }

    @staticmethod
    def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """What differs, by kind: {} when nothing changed."""
        out: dict[str, Any] = {}
        added = sorted(set(after["table"]) - set(before["table"]))
        removed = sorted(set(before["table"]) - set(after["table"]))
        changed = sorted(
            k for k in set(after["table"]) & set(before["table"]) if after["table"][k] != before["table"][k]
        )
        if added:
            out["table_added"] = added
        if removed:
            out["table_removed"] = removed
        if changed:
            out["table_changed"] = changed
        new = {n: s for n, s in after["executions"].items() if before["executions"].get(n) != s}
        if new:
            out["executions"] = new
        for key in ("deployments", "alarms", "schedules", "training_jobs"):
            if before[key] != after[key]:
                out[key] = after[key]
        return out

    def locks(self) -> list[str]:
        return [m for m in MODELS if self.h.store().lock_holder(m) is not None]

    def notifications(self) -> list[str]:
        """Messages published to the notification topic since the last call (received and deleted)."""
        bodies = []
        while True:
            messages = self.h.sqs.receive_message(QueueUrl=self.h.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return bodies
            for m in messages:
                bodies.append(m["Body"])
                self.h.sqs.delete_message(QueueUrl=self.h.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def object_created(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload `body` and return the EventBridge Object Created event S3 sends for it."""
        etag = self.h.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        event = load_event("s3_object_created.json")
        event["resources"] = [f"arn:aws:s3:::{BUCKET}"]
        event["detail"]["bucket"]["name"] = BUCKET
        event["detail"]["object"] = {"key": key, "size": len(body), "etag": etag, "sequencer": "0A1B2C3D4E5F"}
        return event


def user_cause(cause: str) -> str:
    """A failed execution's cause as the user reads it: a Lambda error's errorMessage, else the text."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    return str(parsed["errorMessage"]) if isinstance(parsed, dict) and "errorMessage" in parsed else cause


def churn_csv(rows: int, seed: int) -> bytes:
    columns = [*CHURN_FEATURES, CHURN_LABEL]
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in churn_rows(rows, seed)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    patch = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "MODELOPS_STACK": STACK,
    }.items():
        patch.setenv(key, value)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)
    kube = FakeKube()
    for model in MODELS:
        kube.add(deployment(f"{model}-stable", "stable", OLD, 3))
        kube.add(deployment(f"{model}-canary", "canary", OLD, 0))
    try:
        with (
            mock_aws(
                config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
            ),
            MotoPatches() as patches,
        ):
            harness = Harness(kube, patch, patches)
            with wiring.installed(harness.services()):
                # What `sam deploy` leaves for the CLI: the stack parameter and the schedule group.
                boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=STACK)
                boto3.client("ssm", region_name=REGION).put_parameter(
                    Name=f"/modelops/{STACK}/stack",
                    Type="String",
                    Value=json.dumps(
                        {
                            "stack_name": STACK,
                            "table": TABLE,
                            "bucket": BUCKET,
                            "state_machine_arn": harness.state_machine_arn,
                            "start_function_arn": function_arn("start_pipeline"),
                            "schedule_group": STACK,
                            "scheduler_role_arn": harness.role_arn,
                            "alarm_prefix": f"{STACK}-",
                            "metric_namespace": "ModelOps",
                        }
                    ),
                )
                for model in MODELS:
                    harness.put_model(
                        name=model,
                        kubernetes__stable_deployment=f"{model}-stable",
                        kubernetes__canary_deployment=f"{model}-canary",
                        kubernetes__service=model,
                        kubernetes__canary_service=f"{model}-canary",
                        canary__bake_seconds=300,  # only an alarm (or the module's end) ends live's bake
                        canary__watch_seconds=1,
                        canary__min_requests=0,
                    )
                yield World(harness, kube)
    finally:
        patch.undo()
        cached_client.cache_clear()


# --- start_pipeline: S3 events and schedules (answered and notified, never raised) -----------------------
def _answered_and_notified(world: World, case: Case) -> None:
    event = json.loads(case.path.read_text())
    world.notifications()
    before = world.snapshot()
    # When the event reaches start_pipeline
    result = world.h.start(event)
    # Then it is answered with the error, the message is published, and nothing changed
    assert result == {"started": False, "error": case.spec["expect_error"], "message": case.message()}
    assert world.notifications() == [case.message()]
    assert world.changes(before, world.snapshot()) == {}
    assert world.locks() == []


@pytest.mark.parametrize("case", cases("s3_events"))
def test_s3_event_is_refused_and_starts_nothing(world, case):
    _answered_and_notified(world, case)


@pytest.mark.parametrize("case", cases("schedule"))
def test_schedule_payload_is_refused_and_starts_nothing(world, case):
    _answered_and_notified(world, case)


# --- start_pipeline invoked directly, and `modelops start` ---------------------------------------------------
CLI_FLAGS = {"model": "--model", "dataset_key": "--data", "reason": "--reason", "request_id": "--request-id"}


@pytest.mark.parametrize("case", cases("manual_start"))
def test_manual_start_is_raised_back_and_starts_nothing(world, case, capsys):
    payload = json.loads(case.path.read_text())
    before = world.snapshot()
    # When start_pipeline is invoked with the payload  Then the error is raised back to the caller
    with pytest.raises(Exception) as raised:
        world.h.start(payload)
    assert (type(raised.value).__name__, str(raised.value)) == (case.spec["expect_error"], case.message())
    assert world.changes(before, world.snapshot()) == {}
    if case.spec["cli"]:
        # And `modelops start` with the same values prints it and exits 1
        assert set(payload) <= set(CLI_FLAGS) and all(isinstance(v, str) and v for v in payload.values())
        argv = [arg for key, value in payload.items() for arg in (CLI_FLAGS[key], value)]
        capsys.readouterr()
        assert cli(["start", *argv]) == 1
        captured = capsys.readouterr()
        assert captured.err == f"error: {case.spec['expect_error']}: {case.message()}\n"
        assert captured.out == ""
        assert world.changes(before, world.snapshot()) == {}
    assert world.locks() == []


# --- StartExecution with a bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("execution_input"))
def test_execution_input_fails_the_execution_with_the_reason(world, case):
    before = world.snapshot()
    world.notifications()
    # When the workflow is started with the file as its input
    name = f"corpus-{case.stem}".replace("_", "-")
    arn = world.h.sfn.start_execution(
        stateMachineArn=world.h.state_machine_arn, name=name, input=case.path.read_text()
    )["executionArn"]
    result = world.h.wait(arn)
    # Then the execution fails with the error and the message as its cause
    assert result["status"] == "FAILED"
    assert (result["error"], user_cause(result["cause"])) == (case.spec["expect_error"], case.message())
    states = world.h.states(arn)
    assert "StartTraining" not in states
    changes = world.changes(before, world.snapshot())
    assert changes.pop("executions") == {name: "FAILED"}
    if case.spec["refused_at"] == "ResolveRequest":
        # refused before the lock: the request notification, nothing recorded
        assert states == ["ResolveRequest", "NotifyInvalidRequest", "RequestRefused"]
        assert world.notifications() == [f"{case.spec['expect_error']}: {result['cause']}"]
        assert changes == {}
    else:
        # refused after the lock: released again, the failed run in the model's history
        assert case.spec["refused_at"] in states and "ReleaseLock" in states
        (history,) = changes.pop("table_added")
        assert history.startswith("MODEL#churn HISTORY#")
        record = world.h.store().query_docs("churn", "HISTORY#", limit=1)[0]
        assert (record["status"], record["error"], record["cause"]) == (
            "failed",
            case.spec["expect_error"],
            case.message(),
        )
        assert changes == {}
    assert world.locks() == []


# --- `modelops model validate` and `modelops model put` ---------------------------------------------------------
@pytest.mark.parametrize("case", cases("model_config"))
def test_model_config_is_refused_by_validate_and_put(world, case, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = str(case.path.relative_to(ROOT))
    expected = f"error: {case.message(file=path)}\n"
    before = world.snapshot()
    capsys.readouterr()
    for command in ("validate", "put"):
        # When the file is validated, then put  Then each prints the error, exits 1 and writes nothing
        assert cli(["model", command, path]) == 1, command
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", expected), command
    assert world.changes(before, world.snapshot()) == {}


def test_a_valid_config_put_does_change_the_world(world, capsys, monkeypatch):
    # The control for the cases above: the same snapshot sees what a good `model put` writes.
    monkeypatch.chdir(ROOT)
    before = world.snapshot()
    assert cli(["model", "put", "models/churn.yaml"]) == 0, capsys.readouterr().err
    changes = world.changes(before, world.snapshot())
    assert changes["table_changed"] == ["MODEL#churn CONFIG"]
    assert [a for a in changes["alarms"] if a.startswith(f"{STACK}-churn-")] and changes["schedules"] == [
        "retrain-churn"
    ]


# --- datasets: through the pipeline, and through the train program ------------------------------------------------
@pytest.fixture(scope="module")
def hyperparameters(world) -> dict[str, str]:
    """The training job's hyperparameters for churn, as ResolveRequest builds them."""
    run = resolve(
        {
            "model": "churn",
            "trigger": "manual",
            "dataset": {"key": "incoming/churn/any.csv"},
            "idempotency_key": "corpus|hyperparameters",
        },
        execution_name="corpus-hyperparameters",
        store=world.h.store(),
        objects=S3Objects(world.h.s3),
        bucket=BUCKET,
        stack_name=STACK,
        sagemaker_role_arn=world.h.role_arn,
        training_image="train",
        poll_seconds=0,
    )
    return dict(run.training["HyperParameters"])


@pytest.fixture
def dataset_key(world, request) -> Iterator[str]:
    """incoming/churn/<case file>, deleted afterwards: an upload's run defers to any newer upload
    under the prefix (steps.lock.newer_or_trained), so earlier cases' files must not linger."""
    key = f"incoming/churn/{request.node.callspec.params['case'].file}"
    yield key
    world.h.s3.delete_object(Bucket=BUCKET, Key=key)


@pytest.mark.parametrize("case", cases("datasets"))
def test_dataset_fails_the_run_before_training(world, case, dataset_key):
    key = dataset_key
    event = world.object_created(key, case.path.read_bytes())
    world.notifications()
    before = world.snapshot()
    # When the upload's Object Created event reaches start_pipeline
    started = world.h.start(event)
    if case.spec["refused_at"] == "start_pipeline":
        assert started == {"started": False, "error": case.spec["expect_error"], "message": case.message()}
        assert world.notifications() == [case.message()]
        assert world.changes(before, world.snapshot()) == {}
        return
    # Then the run fails in ValidateDataset with the validator's message, before any training job
    assert started["started"], started
    result = world.h.wait(started["execution_arn"])
    assert result["status"] == "FAILED"
    assert (result["error"], result["cause"]) == (case.spec["expect_error"], case.message())
    states = world.h.states(started["execution_arn"])
    assert "ValidateDataset" in states and "ReleaseLock" in states and "StartTraining" not in states
    # And only the failed run was recorded: lock released, no training job, the cluster untouched
    changes = world.changes(before, world.snapshot())
    assert changes.pop("executions") == {started["execution_name"]: "FAILED"}
    (history,) = changes.pop("table_added")
    assert history.startswith("MODEL#churn HISTORY#")
    assert changes == {}
    assert world.locks() == []
    (notification,) = world.notifications()
    assert f"error: {case.spec['expect_error']}: {case.message()}" in notification


@pytest.mark.parametrize("case", cases("datasets"))
def test_dataset_through_the_train_program(case, hyperparameters, tmp_path):
    # Given the SageMaker container layout with the file as the train channel
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = tmp_path / "input" / "data" / "train"
    channel.mkdir(parents=True)
    shutil.copyfile(case.path, channel / case.file)
    # When `train` runs as SageMaker runs it
    done = run_train(tmp_path, f"corpus-{case.stem}")
    failure = tmp_path / "output" / "failure"
    expected = case.spec["expect_train_failure"]
    if expected is None:
        # Then it trains on it anyway: the pipeline's validator is the only gate for this file
        assert done.returncode == 0, done.output[-2000:]
        assert not failure.exists()
        return
    # Then it exits 1 with the reason SageMaker reports as FailureReason, and writes no model
    assert done.returncode == 1, done.output[-2000:]
    assert failure.read_text(encoding="utf-8") == expected + "\n"
    assert not (tmp_path / "model" / "model.joblib").exists()


# --- training jobs: the `train` program with a bad algorithm, hyperparameter, script or labels -----------------
TIERS_HYPERPARAMETERS = {
    "label_column": "tier",
    "feature_columns": json.dumps(["monthly_spend", "orders", "tenure_months", "returns", "region"]),
    "categorical_columns": json.dumps(["region"]),
    "task": "multiclass_classification",
    "objective_metric": "macro_f1",
    "max_iter": "20",
}


def _training_data(kind: str, channel: Path) -> dict[str, str]:
    """Write the case's data into the train channel; the job's base hyperparameters for it."""
    from tests.multiclass_data import generate_tier_csv

    channel.mkdir(parents=True)
    if kind == "churn":
        (channel / "customers.csv").write_bytes(churn_csv(300, seed=5))
        return {}
    generate_tier_csv(channel / "tiers.csv", 600, seed=5)
    if kind == "tiers_with_platinum":
        with (channel / "tiers.csv").open("a", encoding="utf-8") as handle:
            handle.writelines(f"{900 + i}.5,{60 + i},70,0,north,platinum\n" for i in range(12))
    return TIERS_HYPERPARAMETERS


def _run_train(base: Path, name: str) -> TrainRun:
    return run_train(base, f"corpus-{name}")


@pytest.fixture(scope="module")
def tiers_champion(tmp_path_factory) -> Path:
    """A promoted tiers model's model.tar.gz (classes bronze, gold, silver)."""
    base = tmp_path_factory.mktemp("tiers-champion")
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(TIERS_HYPERPARAMETERS))
    _training_data("tiers", base / "input" / "data" / "train")
    done = _run_train(base, "champion")
    assert done.returncode == 0, done.output[-2000:]
    archive = base / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((base / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return archive


@pytest.mark.parametrize("case", cases("training"))
def test_training_job_input_through_the_train_program(case, hyperparameters, tiers_champion, tmp_path):
    # Given the SageMaker container layout with the case's data, hyperparameters, script and champion
    spec = json.loads(case.path.read_text(encoding="utf-8"))
    base_hyper = _training_data(spec["data"], tmp_path / "input" / "data" / "train") or hyperparameters
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    base_hyper = {k: v for k, v in base_hyper.items() if k not in spec.get("drop", ())}
    (config / "hyperparameters.json").write_text(json.dumps({**base_hyper, **spec["hyperparameters"]}))
    if "script" in spec:
        from modelops.script_code import pack_folder

        folder = tmp_path / "team"
        folder.mkdir()
        for name, source in spec["script"].items():
            (folder / name).write_text(source, encoding="utf-8")
        (tmp_path / "input" / "data" / "code").mkdir(parents=True)
        packed = pack_folder(folder, entry_point=spec["hyperparameters"]["entry_point"]).data
        (tmp_path / "input" / "data" / "code" / "sourcedir.tar.gz").write_bytes(packed)
    if spec.get("champion"):
        (tmp_path / "input" / "data" / "champion").mkdir(parents=True)
        shutil.copyfile(tiers_champion, tmp_path / "input" / "data" / "champion" / "model.tar.gz")

    # When `train` runs as SageMaker runs it
    done = _run_train(tmp_path, case.stem)

    # Then it exits 1 with the one line SageMaker reports as FailureReason (AlgorithmError: ...),
    # and writes no model: nothing downstream has anything to register, build or serve
    assert done.returncode == 1, done.output[-2000:]
    assert case.spec["expect_error"] == "AlgorithmError"
    assert (tmp_path / "output" / "failure").read_text(encoding="utf-8") == case.message() + "\n"
    assert not (tmp_path / "model" / "metadata.json").exists()


# --- on_alarm during a bake -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(world) -> Iterator[str]:
    """Model `live` baking its canary: the execution waits in Bake with its task token registered."""
    h = world.h
    h.upload("incoming/live/2026-11-22.csv", churn_csv(300, seed=3))
    started = h.start(
        {"model": "live", "dataset_key": "incoming/live/2026-11-22.csv", "request_id": "corpus-live"}
    )
    arn = started["execution_arn"]
    h.wait_for_state(arn, "Bake")
    rollout = wait_for(
        lambda: (r := h.store().get_rollout("live")) and r.get("task_token") and r, "live's bake task token"
    )
    yield arn
    # The module is done: end the bake the way an alarm would and let the workflow roll back.
    h.sfn.send_task_failure(taskToken=rollout["task_token"], error="CanaryAlarmError", cause="corpus done")
    h.wait(arn)


@pytest.mark.parametrize("case", cases("alarm_events"))
def test_alarm_event_leaves_the_bake_alone(world, live, case):
    event = json.loads(case.path.read_text())
    history = world.h.states(live)
    before = world.snapshot()
    # When on_alarm receives the event
    handler = world.h.modules["on_alarm"].handler
    if "expect_error" in case.spec:
        # Then a malformed one is refused, naming the field
        with pytest.raises(Exception) as raised:
            handler(event, Context("on_alarm"))
        assert (type(raised.value).__name__, str(raised.value)) == (case.spec["expect_error"], case.message())
    else:
        # Then an alarm that is not live's canary alarm is answered without touching the rollout
        result = handler(copy.deepcopy(event), Context("on_alarm"))
        assert result == {"action": case.spec["expect_action"], "reason": case.message()}
    changes = world.changes(before, world.snapshot())
    if case.spec.get("expect_action") == "recorded":
        model = event["detail"]["alarmName"].removeprefix(f"{STACK}-").split("-")[0]
        (recorded,) = changes.pop("table_added")
        assert recorded.startswith(f"MODEL#{model} ALARM#") and model != "live"
    # And the bake goes on: same rollout record, same Deployments, no new state, no lock released
    assert changes == {}
    assert world.h.sfn.describe_execution(executionArn=live)["status"] == "RUNNING"
    assert world.h.states(live) == history and history[-1] == "Bake"
    assert world.locks() == ["live"]
