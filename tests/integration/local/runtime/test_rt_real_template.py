"""The product's own template.yaml deployed on the local backbone, and a real function triggered by S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ecr_images import push_image

ROOT = Path(__file__).resolve().parents[4]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def product(backbone):
    return backbone.deploy(
        ROOT / "template.yaml", "modelops", {"ClusterName": "local", "TrainingImage": "local/train:latest"}
    )


def test_every_function_of_the_template_is_registered_with_the_layer(backbone, product):
    functions = {spec.name for spec in backbone.runtime.functions()}
    assert {
        f"modelops-{name}" for name in ("start-pipeline", "run-state", "rollout", "on-alarm")
    } <= functions
    assert len(product.functions) == len(list((ROOT / "functions").glob("*/app.py")))
    for spec in product.functions.values():
        assert spec.layer_dirs == (ROOT / "layers" / "modelops",), spec.name


def test_the_stack_parameter_describes_the_deployed_resources(backbone, product):
    # Given the deployed product stack
    name = product.outputs["StackConfigParameterName"]
    # When the CLI's discovery parameter is read
    config = json.loads(backbone.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    # Then it points at resources that exist
    assert config["state_machine_arn"] == product.outputs["StateMachineArn"]
    backbone.client("s3").head_bucket(Bucket=config["bucket"])
    backbone.client("dynamodb").describe_table(TableName=config["table"])
    assert backbone.client("stepfunctions").describe_state_machine(
        stateMachineArn=config["state_machine_arn"]
    )["name"] == ("modelops-retrain-and-rollout")


def test_new_data_reaches_the_real_start_pipeline_function(backbone, product):
    # Given the pipeline bucket and no model configured
    bucket = product.outputs["PipelineBucketName"]
    before = len(backbone.runtime.history())
    # When a dataset lands under incoming/
    backbone.client("s3").put_object(Bucket=bucket, Key="incoming/churn/2026-11-22.csv", Body=b"a,b\n1,2\n")
    backbone.settle(timeout=30)
    # Then start_pipeline ran once in its worker, read the state table and rejected the unknown model
    runs = [r for r in backbone.runtime.history()[before:] if r.function_name == "modelops-start-pipeline"]
    assert [(r.invocation_type, r.error_type) for r in runs] == [("Event", None)]
    log = backbone.runtime.log_path("modelops-start-pipeline").read_text()
    assert "trigger rejected" in log and "UnknownModelError" in log


def test_the_failure_queue_alarm_watches_the_deployed_queue_and_notifies_the_topic(backbone, product):
    # Given the deployed stack's failure queue and topic
    config = json.loads(
        backbone.client("ssm").get_parameter(Name=product.outputs["StackConfigParameterName"])["Parameter"][
            "Value"
        ]
    )
    queues = backbone.client("sqs").list_queues()["QueueUrls"]
    # When its alarms are described
    (alarm,) = backbone.client("cloudwatch").describe_alarms(AlarmNames=["undelivered-events-modelops"])[
        "MetricAlarms"
    ]
    # Then it watches the failure queue's visible messages (the queue exists) and tells the topic
    queue_name = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}["QueueName"]
    assert any(url.endswith("/" + queue_name) for url in queues)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        0.0,
    )
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == alarm["OKActions"] == [config["topic_arn"]]


def test_the_image_clean_up_is_scheduled_and_runs_in_its_worker(backbone, product):
    # Given the stack's serving repository with a fresh build of a model nobody configured
    repository = product.outputs["ServingImageRepositoryUri"].split("/", 1)[1]
    digest = push_image(backbone.client("ecr"), repository, 1, "ghost-v1-run00001")
    before = len(backbone.runtime.history())
    # When every schedule fires (the stack's only one: the daily image clean-up)
    fired = backbone.scheduler.tick()
    backbone.settle(timeout=30)
    # Then the function ran once, with the schedule's input, read the repository and deleted nothing
    assert fired and all(r.ok and r.target_arn.endswith(":function:modelops-image-retention") for r in fired)
    runs = [r for r in backbone.runtime.history()[before:] if r.function_name == "modelops-image-retention"]
    assert [(r.invocation_type, r.error_type) for r in runs] == [("Event", None)]
    log = backbone.runtime.log_path("modelops-image-retention").read_text().splitlines()
    (line,) = [json.loads(text) for text in log if '"image retention"' in text]
    assert (line["dry_run"], line["images"], line["models"], line["kept"], line["deleted"]) == (
        False,
        1,
        0,
        1,
        0,
    )
    described = backbone.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
    assert [d["imageDigest"] for d in described] == [digest]


def test_an_unreachable_cluster_blocks_the_clean_up_naming_the_model(backbone, product):
    # Given a configured model and a stack whose cluster ("local") does not exist here
    from modelops.adapters.store import StateStore
    from modelops.config import load_config_file

    parameter = backbone.client("ssm").get_parameter(Name=product.outputs["StackConfigParameterName"])
    table = json.loads(parameter["Parameter"]["Value"])["table"]
    churn = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    StateStore(table, backbone.client("dynamodb")).put_model_document("churn", churn)
    repository = product.outputs["ServingImageRepositoryUri"].split("/", 1)[1]
    ecr = backbone.client("ecr")
    kept = {d["imageDigest"] for d in ecr.describe_images(repositoryName=repository)["imageDetails"]}
    # When the clean-up runs (invoked directly, as `aws lambda invoke` would)
    response = backbone.client("lambda").invoke(FunctionName="modelops-image-retention", Payload=b"{}")
    report = json.loads(response["Payload"].read())
    # Then it names the model whose Deployments it could not read, and every image is still there
    assert report["blocked"]["model"] == "churn", report
    assert (
        "DescribeCluster" in report["blocked"]["reason"] or "not found" in report["blocked"]["reason"].lower()
    )
    assert report["deleted"] == []
    assert {d["imageDigest"] for d in ecr.describe_images(repositoryName=repository)["imageDetails"]} == kept
