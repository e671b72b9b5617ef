"""Reading and SAM-translating templates, parameters, and refusing what the runtime cannot create."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelops_local.stack import (
    CODE_BUCKET,
    Created,
    DeployContext,
    StackDeployError,
    TemplateError,
    UnsupportedResourceError,
    check_supported,
    deploy_stack,
    load_template,
    resolve_parameters,
    translate,
)

ROOT = Path(__file__).resolve().parents[4]
FIXTURE = ROOT / "tests" / "fixtures" / "templates" / "runtime" / "template.yaml"


class NoCallsAws:
    """AWS clients that must not be used: the deploy should fail before creating anything."""

    region = "us-east-1"
    account_id = "123456789012"

    def client(self, service: str) -> Any:
        raise AssertionError(f"no AWS call expected, got a {service} client request")


class NoFunctions:
    def register(self, spec: Any) -> None:
        raise AssertionError("no function expected")


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_short_form_tags_load_as_intrinsics(tmp_path):
    # Given a template written with CloudFormation's short-form tags
    path = write(
        tmp_path,
        """
        Resources:
          Topic:
            Type: AWS::SNS::Topic
            Properties:
              TopicName: !Sub "${AWS::StackName}-${Suffix}"
              DisplayName: !If [IsProd, !Ref Name, !GetAtt Other.TopicName]
              Tags: !Split [",", !Join [",", [a, b]]]
        """,
    )
    # When it is loaded
    props = load_template(path)["Resources"]["Topic"]["Properties"]
    # Then the tags become the long-form functions, nested ones included
    assert props["TopicName"] == {"Fn::Sub": "${AWS::StackName}-${Suffix}"}
    assert props["DisplayName"] == {
        "Fn::If": ["IsProd", {"Ref": "Name"}, {"Fn::GetAtt": ["Other", "TopicName"]}]
    }
    assert props["Tags"] == {"Fn::Split": [",", {"Fn::Join": [",", ["a", "b"]]}]}


def test_template_without_resources_is_rejected(tmp_path):
    with pytest.raises(TemplateError, match="has no Resources section"):
        load_template(write(tmp_path, "Parameters: {}\n"))


def test_sam_translation_works_offline_and_points_at_the_template_folder():
    # Given the fixture SAM template
    source = load_template(FIXTURE)
    # When it is translated
    out = translate(source, resolve_parameters(source["Parameters"], {}), FIXTURE.parent, "us-east-1")
    resources = out["Resources"]
    # Then functions, the layer and the state machine refer to placeholder locations for local folders
    assert resources["GreetFunction"]["Properties"]["Code"] == {
        "S3Bucket": CODE_BUCKET,
        "S3Key": "functions/greet",
    }
    layer = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion")
    assert layer["Properties"]["Content"] == {"S3Bucket": CODE_BUCKET, "S3Key": "layers/shared"}
    machine = resources["FlowStateMachine"]["Properties"]
    assert machine["DefinitionS3Location"] == {"Bucket": CODE_BUCKET, "Key": "statemachines/flow.asl.json"}
    assert set(machine["DefinitionSubstitutions"]) == {
        "GreetFunctionArn",
        "TokensFunctionArn",
        "FailFunctionArn",
    }
    # And the EventBridge event source became a rule with a Lambda target plus its permission
    assert resources["GreetFunctionDataArrived"]["Type"] == "AWS::Events::Rule"
    assert resources["GreetFunctionDataArrivedPermission"]["Type"] == "AWS::Lambda::Permission"


def test_every_resource_of_the_real_template_is_supported_locally():
    # Given the product's template.yaml
    path = ROOT / "template.yaml"
    source = load_template(path)
    params = resolve_parameters(source["Parameters"], {"ClusterName": "local", "TrainingImage": "img"})
    # When it is translated and checked against the handler table
    out = translate(source, params, path.parent, "us-east-1")
    # Then no type, attribute or property is missing
    check_supported(out["Resources"])


def test_parameters_take_defaults_and_enforce_constraints():
    declared = {
        "Greeting": {"Type": "String", "Default": "hello", "AllowedPattern": "^[a-z]+$"},
        "Stage": {"Type": "String", "AllowedValues": ["dev", "prod"]},
        "Poll": {"Type": "Number", "Default": 30, "MinValue": 0, "MaxValue": 300},
        "Zones": {"Type": "CommaDelimitedList", "Default": "a, b"},
    }
    assert resolve_parameters(declared, {"Stage": "dev"}) == {
        "Greeting": "hello",
        "Stage": "dev",
        "Poll": "30",
        "Zones": ["a", "b"],
    }
    with pytest.raises(TemplateError, match=r"Parameters\.Stage: a value is required"):
        resolve_parameters(declared, {})
    with pytest.raises(TemplateError, match=r"Parameters\.Stage: 'qa' is not one of the AllowedValues"):
        resolve_parameters(declared, {"Stage": "qa"})
    with pytest.raises(TemplateError, match=r"Parameters\.Greeting: 'Hi!' does not match AllowedPattern"):
        resolve_parameters(declared, {"Stage": "dev", "Greeting": "Hi!"})
    with pytest.raises(TemplateError, match=r"Parameters\.Poll: 301 is above MaxValue 300"):
        resolve_parameters(declared, {"Stage": "dev", "Poll": 301})
    with pytest.raises(TemplateError, match="Typo not declared"):
        resolve_parameters(declared, {"Stage": "dev", "Typo": "x"})


def test_an_unsupported_type_fails_before_anything_is_created(tmp_path):
    # Given a template with a resource type the local runtime has no handler for
    path = write(
        tmp_path,
        """
        Resources:
          Topic:
            Type: AWS::SNS::Topic
          Network:
            Type: AWS::EC2::VPC
            Properties: {CidrBlock: 10.0.0.0/16}
        """,
    )
    # When it is deployed
    with pytest.raises(UnsupportedResourceError) as caught:
        deploy_stack(path, "s", {}, NoCallsAws(), lambda_runtime=NoFunctions())
    # Then the error names the logical id and the type, and no AWS call was made
    assert caught.value.logical_id == "Network"
    assert "Resources.Network" in str(caught.value) and "AWS::EC2::VPC" in str(caught.value)


def test_an_unsupported_property_is_named(tmp_path):
    path = write(
        tmp_path,
        """
        Resources:
          Bucket:
            Type: AWS::S3::Bucket
            Properties:
              CorsConfiguration: {CorsRules: []}
        """,
    )
    with pytest.raises(
        UnsupportedResourceError, match=r"Resources\.Bucket: .*property CorsConfiguration of AWS::S3::Bucket"
    ):
        deploy_stack(path, "s", {}, NoCallsAws(), lambda_runtime=NoFunctions())


def test_unknown_resource_attributes_are_refused():
    with pytest.raises(UnsupportedResourceError, match="resource attribute CreationPolicy"):
        check_supported({"Queue": {"Type": "AWS::SQS::Queue", "CreationPolicy": {}}})


def test_generated_names_are_stable_bounded_and_lowercase_where_required():
    ctx = DeployContext(
        aws=NoCallsAws(), stack_name="modelops", template_dir=Path("."), functions=NoFunctions()
    )
    name = ctx.physical_name("PipelineBucket", 63, lowercase=True)
    assert name == ctx.physical_name("PipelineBucket", 63, lowercase=True)
    assert name.startswith("modelops-pipelinebucket-") and name == name.lower() and len(name) <= 63
    assert len(ctx.physical_name("A" * 200, 64)) == 64


def test_extra_handlers_add_resource_types_whose_ref_and_attributes_resolve(tmp_path):
    # Given a template with a type the built-in table lacks, and a handler for it
    path = write(
        tmp_path,
        """
        Parameters:
          Prefix: {Type: String, Default: mo}
        Resources:
          LatencyAlarm:
            Type: AWS::CloudWatch::Alarm
            Properties:
              AlarmName: !Sub "${Prefix}-latency"
              Threshold: 250
        Outputs:
          Alarm:
            Value: !Ref LatencyAlarm
          AlarmArn:
            Value: !GetAtt LatencyAlarm.Arn
        """,
    )
    created: list[dict[str, Any]] = []

    def create_alarm(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
        created.append(props)
        return Created(props["AlarmName"], {"Arn": ctx.arn("cloudwatch", f"alarm:{props['AlarmName']}")})

    # When the stack is deployed with the extra handler
    stack = deploy_stack(
        path,
        "s",
        {},
        NoCallsAws(),
        lambda_runtime=NoFunctions(),
        handlers={"AWS::CloudWatch::Alarm": create_alarm},
    )
    # Then the handler got resolved properties and its Ref and attributes feed the Outputs
    assert created == [{"AlarmName": "mo-latency", "Threshold": 250}]
    assert stack.outputs == {
        "Alarm": "mo-latency",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mo-latency",
    }
    assert stack.physical_id("LatencyAlarm") == "mo-latency"


def test_a_failing_create_is_reported_with_the_logical_id(tmp_path):
    path = write(tmp_path, "Resources:\n  Broken:\n    Type: Custom::Thing\n")

    def explode(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
        raise RuntimeError("ThrottlingException: slow down")

    with pytest.raises(
        StackDeployError, match=r"Resources\.Broken \(Custom::Thing\): ThrottlingException: slow down"
    ):
        deploy_stack(
            path, "s", {}, NoCallsAws(), lambda_runtime=NoFunctions(), handlers={"Custom::Thing": explode}
        )
