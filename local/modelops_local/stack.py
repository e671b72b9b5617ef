"""Create the stack described by template.yaml in the emulated AWS, as CloudFormation would.

`deploy_stack` reads the SAM template, translates it with aws-sam-translator (offline: local code
folders become placeholder S3 locations and AWS managed policies come from a static map), then
creates every resource through boto3 in dependency order, resolving intrinsics (`intrinsics.py`).
Lambda functions are created in moto with a placeholder zip and registered with the local Lambda
runtime with their real code folder, layers and resolved environment.

Each supported resource type is one `ResourceType` entry in `RESOURCE_TYPES` (a create function
plus the properties it understands); callers may add or replace entries through `handlers`. A type
or property the runtime cannot create raises `UnsupportedResourceError` before anything is created.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_local.aws_server import AwsClients
from modelops_local.intrinsics import (
    IntrinsicError,
    Resolver,
    TemplateError,
    dependency_order,
    resource_dependencies,
)
from modelops_local.lambda_runtime import FunctionRegistry, FunctionSpec

CODE_BUCKET = "modelops-local-code"  # placeholder S3 bucket standing for the template's folder

#: AWS managed policies SAM may reference by name (SAM's ManagedPolicyLoader would ask IAM).
MANAGED_POLICIES: dict[str, str] = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for path, names in {
        "service-role/": [
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole",
            "AWSLambdaRole",
            "AWSLambdaSQSQueueExecutionRole",
            "AWSLambdaDynamoDBExecutionRole",
            "AWSLambdaKinesisExecutionRole",
        ],
        "": [
            "AWSXRayDaemonWriteAccess",
            "AWSXrayWriteOnlyAccess",
            "AmazonS3ReadOnlyAccess",
            "AmazonS3FullAccess",
            "AmazonDynamoDBReadOnlyAccess",
            "AmazonDynamoDBFullAccess",
            "AmazonSNSFullAccess",
            "AmazonSQSFullAccess",
            "AWSStepFunctionsFullAccess",
            "CloudWatchFullAccess",
            "CloudWatchLogsFullAccess",
            "CloudWatchLambdaInsightsExecutionRolePolicy",
        ],
    }.items()
    for name in names
}

_SERVERLESS_TRANSFORM = "AWS::Serverless-2016-10-31"
_RESOURCE_KEYS = {
    "Type",
    "Properties",
    "DependsOn",
    "Condition",
    "Metadata",
    "DeletionPolicy",
    "UpdateReplacePolicy",
}


class UnsupportedResourceError(TemplateError):
    """The local runtime cannot create this resource type or property."""

    def __init__(self, logical_id: str, resource_type: str, detail: str = "") -> None:
        what = f"property {detail} of " if detail else ""
        super().__init__(
            f"Resources.{logical_id}: the local runtime cannot create {what}{resource_type}"
            + ("" if detail else " (no handler for this resource type)")
        )
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.detail = detail


class StackDeployError(TemplateError):
    """Creating a resource failed; the message names the resource and the AWS error."""


# ---------------------------------------------------------------------- template loading
class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt ...)."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix
    key = name if name in {"Ref", "Condition"} else f"Fn::{name}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data (YAML with short-form intrinsics, or JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_CfnLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return data


def _local_uri(template_dir: Path, value: Any, where: str) -> str:
    """A placeholder S3 URI whose key is the path (relative to the template when inside it)."""
    if not isinstance(value, str) or value.startswith("s3://"):
        raise TemplateError(f"{where}: the local runtime needs a local folder or file here, got {value!r}")
    root = template_dir.resolve()
    path = (root / value).resolve()
    if not path.exists():
        raise TemplateError(f"{where}: {path} does not exist")
    key = path.relative_to(root) if path.is_relative_to(root) else path
    return f"s3://{CODE_BUCKET}/{key}"


def _point_serverless_at_local_code(template: dict[str, Any], template_dir: Path) -> None:
    """Replace local CodeUri/ContentUri/DefinitionUri with placeholder S3 URIs SAM accepts."""
    globals_function = template.get("Globals", {}).get("Function", {})
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties") or {}
        where = f"Resources.{logical_id}.Properties"
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function":
            if props.get("PackageType", "Zip") != "Zip":
                raise UnsupportedResourceError(logical_id, str(kind), "PackageType (container images)")
            if "InlineCode" in props:
                raise UnsupportedResourceError(logical_id, str(kind), "InlineCode")
            code = props.get("CodeUri", globals_function.get("CodeUri"))
            props["CodeUri"] = _local_uri(template_dir, code, f"{where}.CodeUri")
        elif kind == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = _local_uri(template_dir, props.get("ContentUri"), f"{where}.ContentUri")
        elif kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["DefinitionUri"] = _local_uri(
                template_dir, props["DefinitionUri"], f"{where}.DefinitionUri"
            )
        resource["Properties"] = props


def translate(
    template: dict[str, Any], parameters: Mapping[str, Any], template_dir: Path, region: str
) -> dict[str, Any]:
    """The CloudFormation template SAM produces (a copy; non-SAM templates are returned as is)."""
    template = copy.deepcopy(template)
    transforms = template.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    if _SERVERLESS_TRANSFORM not in transforms:
        return template
    if set(transforms) - {_SERVERLESS_TRANSFORM}:
        raise TemplateError(f"Transform: only {_SERVERLESS_TRANSFORM} is supported locally, got {transforms}")
    _point_serverless_at_local_code(template, template_dir)
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    session = boto3.session.Session(
        region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    try:
        translated: dict[str, Any] = Translator(None, Parser(), boto_session=session).translate(
            template, parameter_values=dict(parameters), get_managed_policy_map=lambda: MANAGED_POLICIES
        )
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in exc.causes)
        raise TemplateError(f"SAM could not translate the template: {causes}") from exc
    return translated


# ---------------------------------------------------------------------- parameters
def resolve_parameters(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values after defaults and the template's constraints, as CloudFormation checks them."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"Parameters: {', '.join(unknown)} not declared in the template")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        where = f"Parameters.{name}"
        kind = str(spec.get("Type", "String"))
        if name in given:
            raw: Any = given[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"{where}: a value is required (no Default)")
        if kind.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(f"{where}: SSM parameter types are not supported by the local runtime")
        if kind in {"CommaDelimitedList", "List<Number>"} or kind.startswith("List<"):
            items = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",")]
            values[name] = [str(item) for item in items]
            continue
        text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
        _check_parameter(where, kind, text, spec)
        values[name] = text
    return values


def _check_parameter(where: str, kind: str, text: str, spec: Mapping[str, Any]) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in [str(v) for v in allowed]:
        raise TemplateError(f"{where}: {text!r} is not one of the AllowedValues {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), text):
        raise TemplateError(f"{where}: {text!r} does not match AllowedPattern {pattern}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"{where}: shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"{where}: longer than MaxLength {spec['MaxLength']}")
    if kind == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"{where}: {text!r} is not a Number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"{where}: {text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"{where}: {text} is above MaxValue {spec['MaxValue']}")


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class Created:
    """What a resource handler returns: the `Ref` value and the `Fn::GetAtt` attributes."""

    ref: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployedResource:
    """One created resource: its physical id (`Ref`) and attributes."""

    logical_id: str
    type: str
    physical_id: str
    attributes: Mapping[str, Any]


@dataclass
class StackResources:
    """The deployed stack: resources by logical id, resolved Outputs, and the local functions."""

    stack_name: str
    region: str
    account_id: str
    resources: dict[str, DeployedResource]
    outputs: dict[str, Any]
    functions: dict[str, FunctionSpec]
    template: dict[str, Any]
    not_emulated: dict[str, list[str]] = field(default_factory=dict)

    def physical_id(self, logical_id: str) -> str:
        """The resource's physical id (what `Ref` returns)."""
        return self._get(logical_id).physical_id

    def attribute(self, logical_id: str, name: str) -> Any:
        """The resource's `Fn::GetAtt` attribute."""
        resource = self._get(logical_id)
        if name not in resource.attributes:
            raise KeyError(f"{logical_id} ({resource.type}) has no attribute {name!r}")
        return resource.attributes[name]

    def _get(self, logical_id: str) -> DeployedResource:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise KeyError(f"stack {self.stack_name} has no created resource {logical_id!r}") from None


# ---------------------------------------------------------------------- handler table
@dataclass
class DeployContext:
    """What resource handlers may use while creating one stack."""

    aws: AwsClients
    stack_name: str
    template_dir: Path
    functions: FunctionRegistry
    partition: str = "aws"
    layers: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # layer version ARN -> sys.path dirs
    specs: dict[str, FunctionSpec] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def account_id(self) -> str:
        return self.aws.account_id

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def physical_name(self, logical_id: str, max_length: int = 64, *, lowercase: bool = False) -> str:
        """A name like CloudFormation generates (`stack-LogicalId-SUFFIX`), stable across deploys."""
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).digest()
        suffix = base64.b32encode(digest).decode()[:12]
        name = f"{self.stack_name}-{logical_id}"[: max_length - len(suffix) - 1] + "-" + suffix
        return name.lower() if lowercase else name

    def local_path(self, location: Any, where: str) -> Path:
        """The template folder path behind a placeholder S3 location from `translate`."""
        if isinstance(location, dict) and location.get("S3Bucket", location.get("Bucket")) == CODE_BUCKET:
            key = str(location.get("S3Key", location.get("Key")))
            return (self.template_dir / key).resolve()
        raise TemplateError(
            f"{where}: the local runtime can only use code from the template's folder, got {location!r}"
        )


ResourceCreate = Callable[[DeployContext, str, dict[str, Any]], Created]


@dataclass(frozen=True)
class ResourceType:
    """How to create one CloudFormation resource type locally.

    `properties` are the ones the handler applies (None: it takes any); `not_emulated` are accepted
    but have no local effect (listed in `StackResources.not_emulated`, never dropped silently).
    """

    create: ResourceCreate
    properties: frozenset[str] | None
    not_emulated: frozenset[str] = frozenset()


RESOURCE_TYPES: dict[str, ResourceType] = {}


def resource_type(
    name: str, properties: str, not_emulated: str = ""
) -> Callable[[ResourceCreate], ResourceCreate]:
    """Register the decorated function for CloudFormation type `name` (property names space-separated)."""

    def register(create: ResourceCreate) -> ResourceCreate:
        RESOURCE_TYPES[name] = ResourceType(
            create, frozenset(properties.split()), frozenset(not_emulated.split())
        )
        return create

    return register


def _tags(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in tags or []]


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _camel(value: Any, renames: Mapping[str, str] | None = None) -> Any:
    """CloudFormation's PascalCase keys as the camelCase some APIs (CodeBuild, Step Functions) use."""
    renames = renames or {}
    if isinstance(value, dict):
        return {renames.get(k, k[:1].lower() + k[1:]): _camel(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v, renames) for v in value]
    return value


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "code runs from the template folder in the local Lambda runtime\n")
    return buffer.getvalue()


# ---------------------------------------------------------------------- IAM
@resource_type(
    "AWS::IAM::Role",
    "RoleName AssumeRolePolicyDocument Path Description MaxSessionDuration ManagedPolicyArns Policies Tags",
    not_emulated="PermissionsBoundary",
)
def _iam_role(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    iam = ctx.client("iam")
    name = props.get("RoleName") or ctx.physical_name(logical_id)
    kwargs: dict[str, Any] = {
        "RoleName": name,
        "AssumeRolePolicyDocument": _json_text(props["AssumeRolePolicyDocument"]),
        "Path": props.get("Path", "/"),
        "Tags": _tags(props.get("Tags")),
    }
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    if "MaxSessionDuration" in props:
        kwargs["MaxSessionDuration"] = int(props["MaxSessionDuration"])
    role = iam.create_role(**kwargs)["Role"]
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=_policy_text(policy["PolicyDocument"]),
        )
    for arn in props.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        except iam.exceptions.NoSuchEntityException as exc:
            hint = ""
            if arn.startswith("arn:aws:iam::aws:policy/"):
                hint = " (AWS managed policies exist in moto only with config iam.load_aws_managed_policies, as LocalAws sets)"
            raise StackDeployError(f"Resources.{logical_id} (AWS::IAM::Role): {exc}{hint}") from exc
    return Created(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def _policy_text(document: Any) -> str:
    """IAM accepts a document without Version (it means 2008-10-17); moto rejects it, so default it."""
    if isinstance(document, dict) and "Version" not in document:
        document = {"Version": "2012-10-17", **document}
    return _json_text(document)


@resource_type(
    "AWS::IAM::Policy",
    "PolicyName PolicyDocument Roles",
)
def _iam_policy(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    for role in props.get("Roles", []):
        ctx.client("iam").put_role_policy(
            RoleName=role,
            PolicyName=props["PolicyName"],
            PolicyDocument=_policy_text(props["PolicyDocument"]),
        )
    return Created(ctx.physical_name(logical_id))


# ---------------------------------------------------------------------- logs
@resource_type(
    "AWS::Logs::LogGroup",
    "LogGroupName RetentionInDays Tags",
    not_emulated="KmsKeyId LogGroupClass",
)
def _log_group(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    logs = ctx.client("logs")
    name = props.get("LogGroupName") or ctx.physical_name(logical_id, 512)
    logs.create_log_group(logGroupName=name, tags={t["Key"]: t["Value"] for t in _tags(props.get("Tags"))})
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return Created(name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")})


# ---------------------------------------------------------------------- Lambda
@resource_type(
    "AWS::Lambda::LayerVersion",
    "LayerName Content CompatibleRuntimes Description",
    not_emulated="LicenseInfo CompatibleArchitectures",
)
def _layer_version(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    folder = ctx.local_path(props["Content"], f"Resources.{logical_id}.Properties.Content")
    name = props.get("LayerName") or ctx.physical_name(logical_id, 140)
    layer = ctx.client("lambda").publish_layer_version(
        LayerName=name,
        Content={"ZipFile": _placeholder_zip()},
        CompatibleRuntimes=props.get("CompatibleRuntimes", []),
        Description=props.get("Description", ""),
    )
    arn = layer["LayerVersionArn"]
    # A layer zip's python/ folder lands on sys.path; `sam build` (BuildMethod: python*) puts a
    # source folder into python/, so a folder without one is used as is.
    ctx.layers[arn] = (folder / "python",) if (folder / "python").is_dir() else (folder,)
    return Created(arn, {"LayerVersionArn": arn})


@resource_type(
    "AWS::Lambda::Function",
    "FunctionName Code Handler Runtime Role Timeout MemorySize Environment Layers Tags Description",
    not_emulated="TracingConfig Architectures LoggingConfig EphemeralStorage ReservedConcurrentExecutions KmsKeyArn RuntimeManagementConfig SnapStart",
)
def _lambda_function(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    where = f"Resources.{logical_id}.Properties"
    code_dir = ctx.local_path(props.get("Code"), f"{where}.Code")
    layer_dirs: list[Path] = []
    for arn in props.get("Layers", []):
        if arn not in ctx.layers:
            raise UnsupportedResourceError(
                logical_id, "AWS::Lambda::Function", f"Layers ({arn} is not a layer of this template)"
            )
        layer_dirs.extend(ctx.layers[arn])
    name = props.get("FunctionName") or ctx.physical_name(logical_id)
    variables = {str(k): str(v) for k, v in (props.get("Environment") or {}).get("Variables", {}).items()}
    timeout = int(props.get("Timeout", 3))
    memory = int(props.get("MemorySize", 128))
    runtime = str(props.get("Runtime", ""))
    created = ctx.client("lambda").create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=props["Role"],
        Handler=props["Handler"],
        Code={"ZipFile": _placeholder_zip()},
        Timeout=timeout,
        MemorySize=memory,
        Environment={"Variables": variables},
        Layers=list(props.get("Layers", [])),
        Description=props.get("Description", ""),
        Tags={t["Key"]: t["Value"] for t in _tags(props.get("Tags"))},
    )
    log_group = (props.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
    spec = FunctionSpec(
        name=name,
        arn=created["FunctionArn"],
        code_dir=code_dir,
        handler=str(props["Handler"]),
        environment=variables,
        timeout=float(timeout),
        memory_mb=memory,
        layer_dirs=tuple(layer_dirs),
        runtime=runtime,
        log_group=str(log_group),
        logical_id=logical_id,
    )
    ctx.functions.register(spec)
    ctx.specs[logical_id] = spec
    return Created(name, {"Arn": created["FunctionArn"]})


@resource_type(
    "AWS::Lambda::Permission",
    "FunctionName Action Principal SourceArn SourceAccount",
    not_emulated="EventSourceToken FunctionUrlAuthType PrincipalOrgID",
)
def _lambda_permission(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    kwargs = {
        k: props[k]
        for k in ("FunctionName", "Action", "Principal", "SourceArn", "SourceAccount")
        if k in props
    }
    ctx.client("lambda").add_permission(StatementId=logical_id, **kwargs)
    return Created(logical_id)


@resource_type(
    "AWS::Lambda::EventInvokeConfig",
    "FunctionName Qualifier",
    not_emulated="DestinationConfig MaximumRetryAttempts MaximumEventAgeInSeconds",
)
def _event_invoke_config(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    """Accepted: the local Lambda runtime keeps its own retry policy and has no destinations."""
    return Created(f"{props['FunctionName']}:{props.get('Qualifier', '$LATEST')}")


# ---------------------------------------------------------------------- EventBridge + Scheduler
@resource_type(
    "AWS::Events::Rule",
    "Name EventPattern ScheduleExpression State EventBusName Description RoleArn Targets",
)
def _events_rule(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    events = ctx.client("events")
    name = props.get("Name") or ctx.physical_name(logical_id)
    bus = props.get("EventBusName", "default")
    kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED"), "EventBusName": bus}
    if "EventPattern" in props:
        kwargs["EventPattern"] = _json_text(props["EventPattern"])
    for key in ("ScheduleExpression", "Description", "RoleArn"):
        if key in props:
            kwargs[key] = props[key]
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = props.get("Targets", [])
    if targets:
        failed = events.put_targets(Rule=name, EventBusName=bus, Targets=targets).get("FailedEntries", [])
        if failed:
            raise StackDeployError(f"Resources.{logical_id}: targets rejected: {failed}")
    return Created(name if bus == "default" else f"{bus}|{name}", {"Arn": arn})


@resource_type(
    "AWS::Scheduler::ScheduleGroup",
    "Name Tags",
)
def _schedule_group(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or ctx.physical_name(logical_id)
    kwargs: dict[str, Any] = {"Name": name}
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props["Tags"])
    arn = ctx.client("scheduler").create_schedule_group(**kwargs)["ScheduleGroupArn"]
    return Created(name, {"Arn": arn, "State": "ACTIVE"})


@resource_type(
    "AWS::Scheduler::Schedule",
    "Name GroupName ScheduleExpression ScheduleExpressionTimezone FlexibleTimeWindow Target State Description StartDate EndDate",
    not_emulated="KmsKeyArn",
)
def _schedule(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or ctx.physical_name(logical_id)
    kwargs = {k: v for k, v in props.items() if k not in {"Name", "KmsKeyArn"}}
    arn = ctx.client("scheduler").create_schedule(Name=name, **kwargs)["ScheduleArn"]
    return Created(name, {"Arn": arn})


# ---------------------------------------------------------------------- S3
_LIFECYCLE_RULE_KEYS = {
    "Id",
    "Status",
    "Prefix",
    "ExpirationInDays",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionExpirationInDays",
    "AbortIncompleteMultipartUpload",
    "ExpiredObjectDeleteMarker",
}


def _lifecycle_rule(logical_id: str, index: int, rule: Mapping[str, Any]) -> dict[str, Any]:
    for key in rule:
        if key not in _LIFECYCLE_RULE_KEYS:
            raise UnsupportedResourceError(
                logical_id, "AWS::S3::Bucket", f"LifecycleConfiguration.Rules[{index}].{key}"
            )
    out: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        out["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            k: int(v) for k, v in rule["NoncurrentVersionExpiration"].items()
        }
    elif "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return out


@resource_type(
    "AWS::S3::Bucket",
    "BucketName VersioningConfiguration BucketEncryption PublicAccessBlockConfiguration OwnershipControls NotificationConfiguration LifecycleConfiguration Tags",
)
def _s3_bucket(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    s3 = ctx.client("s3")
    name = props.get("BucketName") or ctx.physical_name(logical_id, 63, lowercase=True)
    notification = props.get("NotificationConfiguration") or {}
    for key in notification:
        if key != "EventBridgeConfiguration":
            raise UnsupportedResourceError(logical_id, "AWS::S3::Bucket", f"NotificationConfiguration.{key}")
    create: dict[str, Any] = {"Bucket": name}
    if ctx.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
    s3.create_bucket(**create)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    if "BucketEncryption" in props:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **(
                    {"BucketKeyEnabled": bool(rule["BucketKeyEnabled"])} if "BucketKeyEnabled" in rule else {}
                ),
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        block = {k: bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    if "LifecycleConfiguration" in props:
        rules = [
            _lifecycle_rule(logical_id, i, r) for i, r in enumerate(props["LifecycleConfiguration"]["Rules"])
        ]
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    if props.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props["Tags"])})
    return Created(
        name,
        {
            "Arn": f"arn:{ctx.partition}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website.{ctx.region}.amazonaws.com",
        },
    )


@resource_type(
    "AWS::S3::BucketPolicy",
    "Bucket PolicyDocument",
)
def _s3_bucket_policy(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    ctx.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=_json_text(props["PolicyDocument"]))
    return Created(str(props["Bucket"]))


# ---------------------------------------------------------------------- DynamoDB, SNS, SQS, SSM
@resource_type(
    "AWS::DynamoDB::Table",
    "TableName AttributeDefinitions KeySchema BillingMode ProvisionedThroughput GlobalSecondaryIndexes LocalSecondaryIndexes StreamSpecification SSESpecification TimeToLiveSpecification PointInTimeRecoverySpecification Tags",
    not_emulated="DeletionProtectionEnabled TableClass ContributorInsightsSpecification",
)
def _dynamodb_table(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    ddb = ctx.client("dynamodb")
    name = props.get("TableName") or ctx.physical_name(logical_id, 255)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    for key in (
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
    ):
        if key in props:
            kwargs[key] = props[key]
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        kwargs["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled", False))} | {
            k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse
        }
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props["Tags"])
    table = ddb.create_table(**kwargs)["TableDescription"]
    if "TimeToLiveSpecification" in props:
        ttl = props["TimeToLiveSpecification"]
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
        )
    if "PointInTimeRecoverySpecification" in props:
        pitr = props["PointInTimeRecoverySpecification"]
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": bool(pitr["PointInTimeRecoveryEnabled"])
            },
        )
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return Created(name, attributes)


@resource_type(
    "AWS::SNS::Topic",
    "TopicName DisplayName KmsMasterKeyId FifoTopic ContentBasedDeduplication Subscription Tags",
)
def _sns_topic(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    sns = ctx.client("sns")
    fifo = str(props.get("FifoTopic", "false")).lower() == "true"
    name = props.get("TopicName") or ctx.physical_name(logical_id, 251 if fifo else 256) + (
        ".fifo" if fifo else ""
    )
    attributes = {
        k: str(props[k])
        for k in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
        if k in props
    }
    kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props["Tags"])
    arn = sns.create_topic(**kwargs)["TopicArn"]
    for sub in props.get("Subscription", []):
        sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
    return Created(arn, {"TopicArn": arn, "TopicName": name})


@resource_type(
    "AWS::SNS::Subscription",
    "TopicArn Protocol Endpoint RawMessageDelivery FilterPolicy FilterPolicyScope",
    not_emulated="Region DeliveryPolicy RedrivePolicy",
)
def _sns_subscription(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    attributes: dict[str, str] = {}
    if "RawMessageDelivery" in props:
        attributes["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
    if "FilterPolicy" in props:
        attributes["FilterPolicy"] = _json_text(props["FilterPolicy"])
    if "FilterPolicyScope" in props:
        attributes["FilterPolicyScope"] = props["FilterPolicyScope"]
    arn = ctx.client("sns").subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return Created(arn, {"Arn": arn})


@resource_type(
    "AWS::SQS::Queue",
    "QueueName FifoQueue ContentBasedDeduplication DelaySeconds MaximumMessageSize MessageRetentionPeriod ReceiveMessageWaitTimeSeconds VisibilityTimeout RedrivePolicy KmsMasterKeyId SqsManagedSseEnabled Tags",
)
def _sqs_queue(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    sqs = ctx.client("sqs")
    fifo = str(props.get("FifoQueue", "false")).lower() == "true"
    name = props.get("QueueName") or ctx.physical_name(logical_id, 75 if fifo else 80) + (
        ".fifo" if fifo else ""
    )
    attributes = {
        k: (_json_text(v) if k == "RedrivePolicy" else str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in props.items()
        if k not in {"QueueName", "Tags"}
    }
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        kwargs["tags"] = {t["Key"]: t["Value"] for t in _tags(props["Tags"])}
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    arn = ctx.arn("sqs", name)
    return Created(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


@resource_type(
    "AWS::SQS::QueuePolicy",
    "Queues PolicyDocument",
)
def _sqs_queue_policy(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    sqs = ctx.client("sqs")
    for url in props["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": _json_text(props["PolicyDocument"])})
    return Created(logical_id)


@resource_type(
    "AWS::CloudWatch::Alarm",
    "AlarmName AlarmDescription Namespace MetricName Dimensions Statistic ExtendedStatistic Period "
    "EvaluationPeriods DatapointsToAlarm Threshold ComparisonOperator TreatMissingData ActionsEnabled "
    "AlarmActions OKActions InsufficientDataActions Unit Tags",
    not_emulated="Metrics ThresholdMetricId EvaluateLowSampleCountPercentile",
)
def _cloudwatch_alarm(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("AlarmName") or ctx.physical_name(logical_id, 255)
    kwargs: dict[str, Any] = {
        "AlarmName": name,
        "EvaluationPeriods": int(props["EvaluationPeriods"]),
        "ComparisonOperator": props["ComparisonOperator"],
    }
    for key in ("Period", "DatapointsToAlarm"):
        if key in props:
            kwargs[key] = int(props[key])
    if "Threshold" in props:
        kwargs["Threshold"] = float(props["Threshold"])
    if "ActionsEnabled" in props:
        kwargs["ActionsEnabled"] = str(props["ActionsEnabled"]).lower() == "true"
    for key in (
        "AlarmDescription",
        "Namespace",
        "MetricName",
        "Statistic",
        "ExtendedStatistic",
        "TreatMissingData",
        "Unit",
    ):
        if key in props:
            kwargs[key] = str(props[key])
    for key in ("Dimensions", "AlarmActions", "OKActions", "InsufficientDataActions"):
        if key in props:
            kwargs[key] = list(props[key])
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props["Tags"])
    ctx.client("cloudwatch").put_metric_alarm(**kwargs)
    return Created(name, {"Arn": ctx.arn("cloudwatch", f"alarm:{name}")})


@resource_type(
    "AWS::SSM::Parameter",
    "Name Type Value Description AllowedPattern Tier DataType Tags",
    not_emulated="Policies",
)
def _ssm_parameter(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or f"CFN-{logical_id}-{ctx.physical_name(logical_id)[-12:]}"
    kwargs: dict[str, Any] = {
        k: props[k]
        for k in ("Type", "Value", "Description", "AllowedPattern", "Tier", "DataType")
        if k in props
    }
    kwargs["Value"] = str(kwargs["Value"])
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props["Tags"])
    ctx.client("ssm").put_parameter(Name=name, **kwargs)
    return Created(name, {"Type": props.get("Type", "String"), "Value": kwargs["Value"]})


# ---------------------------------------------------------------------- ECR, CodeBuild, Step Functions
@resource_type(
    "AWS::ECR::Repository",
    "RepositoryName ImageTagMutability ImageScanningConfiguration EncryptionConfiguration LifecyclePolicy RepositoryPolicyText Tags",
    not_emulated="EmptyOnDelete ImageTagMutabilityExclusionFilters",
)
def _ecr_repository(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    ecr = ctx.client("ecr")
    name = props.get("RepositoryName") or ctx.physical_name(logical_id, 256, lowercase=True)
    kwargs: dict[str, Any] = {"repositoryName": name}
    if "ImageTagMutability" in props:
        kwargs["imageTagMutability"] = props["ImageTagMutability"]
    if "ImageScanningConfiguration" in props:
        kwargs["imageScanningConfiguration"] = {
            "scanOnPush": bool(props["ImageScanningConfiguration"].get("ScanOnPush", False))
        }
    if "EncryptionConfiguration" in props:
        kwargs["encryptionConfiguration"] = _camel(props["EncryptionConfiguration"])
    if props.get("Tags"):
        kwargs["tags"] = _tags(props["Tags"])
    repository = ecr.create_repository(**kwargs)["repository"]
    lifecycle = props.get("LifecyclePolicy") or {}
    if "LifecyclePolicyText" in lifecycle:
        ecr.put_lifecycle_policy(
            repositoryName=name, lifecyclePolicyText=_json_text(lifecycle["LifecyclePolicyText"])
        )
    if "RepositoryPolicyText" in props:
        ecr.set_repository_policy(repositoryName=name, policyText=_json_text(props["RepositoryPolicyText"]))
    return Created(name, {"Arn": repository["repositoryArn"], "RepositoryUri": repository["repositoryUri"]})


@resource_type(
    "AWS::CodeBuild::Project",
    "Name Description Source Artifacts Environment ServiceRole TimeoutInMinutes QueuedTimeoutInMinutes LogsConfig Cache SourceVersion Tags",
    not_emulated="EncryptionKey BadgeEnabled ConcurrentBuildLimit Visibility",
)
def _codebuild_project(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or ctx.physical_name(logical_id, 255)
    kwargs: dict[str, Any] = {
        "name": name,
        "source": _camel(props["Source"], {"BuildSpec": "buildspec"}),
        "artifacts": _camel(props["Artifacts"]),
        "environment": _camel(props["Environment"]),
        "serviceRole": props["ServiceRole"],
    }
    for key in ("Description", "TimeoutInMinutes", "QueuedTimeoutInMinutes", "SourceVersion"):
        if key in props:
            kwargs[key[:1].lower() + key[1:]] = props[key]
    for key in ("LogsConfig", "Cache"):
        if key in props:
            kwargs[key[:1].lower() + key[1:]] = _camel(props[key])
    if props.get("Tags"):
        kwargs["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags(props["Tags"])]
    project = ctx.client("codebuild").create_project(**kwargs)["project"]
    return Created(name, {"Arn": project["arn"]})


@resource_type(
    "AWS::StepFunctions::StateMachine",
    "StateMachineName DefinitionString Definition DefinitionS3Location DefinitionSubstitutions RoleArn StateMachineType LoggingConfiguration TracingConfiguration Tags",
    not_emulated="EncryptionConfiguration",
)
def _state_machine(ctx: DeployContext, logical_id: str, props: dict[str, Any]) -> Created:
    where = f"Resources.{logical_id}.Properties"
    if "DefinitionString" in props:
        text = str(props["DefinitionString"])
    elif "Definition" in props:
        text = json.dumps(props["Definition"], indent=2)
    elif "DefinitionS3Location" in props:
        text = ctx.local_path(props["DefinitionS3Location"], f"{where}.DefinitionS3Location").read_text()
    else:
        raise TemplateError(
            f"{where}: one of DefinitionString, Definition or DefinitionS3Location is required"
        )
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + key + "}", str(value).lower() if isinstance(value, bool) else str(value))
    try:
        json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{where}: the state machine definition is not valid JSON: {exc}") from exc
    name = props.get("StateMachineName") or ctx.physical_name(logical_id, 80)
    kwargs: dict[str, Any] = {"name": name, "definition": text, "roleArn": props["RoleArn"]}
    if "StateMachineType" in props:
        kwargs["type"] = props["StateMachineType"]
    if "LoggingConfiguration" in props:
        kwargs["loggingConfiguration"] = _camel(props["LoggingConfiguration"])
    if "TracingConfiguration" in props:
        kwargs["tracingConfiguration"] = _camel(props["TracingConfiguration"])
    if props.get("Tags"):
        kwargs["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags(props["Tags"])]
    arn = ctx.client("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
    return Created(arn, {"Arn": arn, "Name": name})


# ---------------------------------------------------------------------- deploying
def _as_resource_types(handlers: Mapping[str, ResourceType | ResourceCreate]) -> dict[str, ResourceType]:
    """Extra handlers: a `ResourceType`, or a bare create function that takes any property."""
    return {
        kind: handler if isinstance(handler, ResourceType) else ResourceType(handler, None)
        for kind, handler in handlers.items()
    }


def check_supported(resources: Mapping[str, Any], table: Mapping[str, ResourceType] = RESOURCE_TYPES) -> None:
    """Raise `UnsupportedResourceError` for the first resource type, attribute or property the table lacks."""
    for logical_id, resource in resources.items():
        kind = str(resource.get("Type"))
        for key in resource:
            if key not in _RESOURCE_KEYS:
                raise UnsupportedResourceError(logical_id, kind, f"resource attribute {key}")
        handler = table.get(kind)
        if handler is None:
            raise UnsupportedResourceError(logical_id, kind)
        for name in resource.get("Properties") or {}:
            if handler.properties is not None and name not in handler.properties | handler.not_emulated:
                raise UnsupportedResourceError(logical_id, kind, name)


def deploy_stack(
    template_path: Path,
    stack_name: str,
    parameters: Mapping[str, Any],
    aws: AwsClients,
    *,
    lambda_runtime: FunctionRegistry,
    handlers: Mapping[str, ResourceType | ResourceCreate] | None = None,
) -> StackResources:
    """Create every resource of the template in `aws`; functions are registered with `lambda_runtime`.

    `handlers` adds or replaces resource types: CloudFormation type -> `ResourceType`, or a bare
    `create(ctx, logical_id, properties) -> Created` that accepts any property. Raises
    `TemplateError` (or a subclass: `UnsupportedResourceError`, `IntrinsicError`,
    `DependencyCycleError`, `StackDeployError`) naming the logical id at fault.
    """
    template_path = Path(template_path)
    template_dir = template_path.parent
    source = load_template(template_path)
    params = resolve_parameters(source.get("Parameters") or {}, parameters)
    template = translate(source, params, template_dir, aws.region)
    resources: dict[str, Any] = template["Resources"]
    table = {**RESOURCE_TYPES, **_as_resource_types(handlers or {})}
    check_supported(resources, table)
    graph = resource_dependencies(resources, params)
    order = dependency_order(graph)

    created: dict[str, DeployedResource] = {}
    skipped: dict[str, str] = {}

    def ref(logical_id: str) -> Any:
        if logical_id in skipped:
            raise KeyError(
                f"resource {logical_id!r} is not created (condition {skipped[logical_id]} is false)"
            )
        return created[logical_id].physical_id

    def get_att(logical_id: str, attribute: str) -> Any:
        if logical_id in skipped:
            raise KeyError(
                f"resource {logical_id!r} is not created (condition {skipped[logical_id]} is false)"
            )
        if logical_id not in created:
            raise KeyError(f"unknown resource {logical_id!r}")
        resource = created[logical_id]
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise KeyError(f"{resource.type} has no attribute {attribute!r} locally (known: {known})")
        return resource.attributes[attribute]

    resolver = Resolver(
        parameters=params,
        pseudo={
            "AWS::StackName": stack_name,
            "AWS::Region": aws.region,
            "AWS::AccountId": aws.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{aws.region}:{aws.account_id}:stack/{stack_name}/local",
            "AWS::NotificationARNs": [],
        },
        conditions=template.get("Conditions") or {},
        mappings=template.get("Mappings") or {},
        ref=ref,
        get_att=get_att,
    )
    ctx = DeployContext(aws=aws, stack_name=stack_name, template_dir=template_dir, functions=lambda_runtime)
    not_emulated: dict[str, list[str]] = {}
    for logical_id in order:
        resource = resources[logical_id]
        kind = str(resource["Type"])
        condition = resource.get("Condition")
        if condition is not None and not resolver.condition(
            str(condition), f"Resources.{logical_id}.Condition"
        ):
            skipped[logical_id] = str(condition)
            continue
        props = resolver.resolve(resource.get("Properties") or {}, f"Resources.{logical_id}.Properties")
        handler = table[kind]
        ignored = sorted(set(props) & handler.not_emulated)
        if ignored:
            not_emulated[logical_id] = ignored
        try:
            result = handler.create(ctx, logical_id, props)
        except TemplateError:
            raise
        except Exception as exc:
            raise StackDeployError(f"Resources.{logical_id} ({kind}): {exc}") from exc
        created[logical_id] = DeployedResource(logical_id, kind, result.ref, dict(result.attributes))

    outputs: dict[str, Any] = {}
    for name, output in (template.get("Outputs") or {}).items():
        condition = output.get("Condition")
        if condition is not None and not resolver.condition(str(condition), f"Outputs.{name}.Condition"):
            continue
        outputs[name] = resolver.resolve(output.get("Value"), f"Outputs.{name}.Value")
    return StackResources(
        stack_name=stack_name,
        region=aws.region,
        account_id=aws.account_id,
        resources=created,
        outputs=outputs,
        functions=dict(ctx.specs),
        template=template,
        not_emulated=not_emulated,
    )


__all__ = [
    "CODE_BUCKET",
    "MANAGED_POLICIES",
    "RESOURCE_TYPES",
    "Created",
    "DeployContext",
    "DeployedResource",
    "IntrinsicError",
    "ResourceType",
    "StackDeployError",
    "StackResources",
    "TemplateError",
    "UnsupportedResourceError",
    "check_supported",
    "deploy_stack",
    "load_template",
    "resolve_parameters",
    "resource_type",
    "translate",
]
