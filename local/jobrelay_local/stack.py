"""Deploy `template.yaml` into moto, in-process, and run its Lambda functions as Python.

The local stack takes every resource from the SAM template itself: `deploy()` packages the
local code directories into moto's S3, translates the template with `aws-sam-translator`,
creates the CloudFormation stack in moto, and fills in what moto leaves out (state machine
`DefinitionSubstitutions`). `route_lambda_invokes()` then makes every Lambda invoke (from
boto3 or from moto's Step Functions interpreter) call the real handler in this process.

Call `deploy()` inside an active `moto.mock_aws(...)` (or with boto3 pointed at a moto
server) using the config `{"stepfunctions": {"execute_state_machine": True},
"lambda": {"use_docker": False}}`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast
from unittest import mock

import boto3
import yaml
from botocore.exceptions import ClientError

PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE: Path = PROJECT_ROOT / "template.yaml"
DEFAULT_REGION = "us-east-1"
ARTIFACT_BUCKET = "jobrelay-local-artifacts"

Handler = Callable[[Any, Any], Any]
"""A Lambda handler: `(event, context) -> JSON-serializable result`."""

# The AWS managed policies a SAM template may name; samtranslator asks for this map instead
# of listing IAM (its own additions such as AWSLambdaBasicExecutionRole are built as ARNs).
MANAGED_POLICIES: dict[str, str] = {
    "AWSLambdaBasicExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ),
    "AWSLambdaSQSQueueExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
    ),
    "AWSLambdaRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
    "AWSLambdaExecute": "arn:aws:iam::aws:policy/AWSLambdaExecute",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "CloudWatchLambdaInsightsExecutionRolePolicy": (
        "arn:aws:iam::aws:policy/CloudWatchLambdaInsightsExecutionRolePolicy"
    ),
}

PROVIDER_SECRET_PARAMETERS: dict[str, str] = {
    "deepset": "DeepsetApiKeySecretArn",
    "pixxel": "PixxelApiKeySecretArn",
    "matatika": "MatatikaApiKeySecretArn",
}
"""Provider name -> the template parameter holding its API key secret ARN."""


# --------------------------------------------------------------------------------------
# What a deployment gives back
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqsTrigger:
    """An SQS event source mapping of a function, as the template declares it."""

    uuid: str
    queue_arn: str
    queue_url: str
    batch_size: int
    maximum_batching_window_seconds: int
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function of the stack, with what running it in-process needs."""

    logical_id: str
    function_name: str
    function_arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory_size: int
    sqs_trigger: SqsTrigger | None = None


@dataclass(frozen=True)
class DeployedStack:
    """A stack created in moto from the template."""

    stack_name: str
    stack_id: str
    region: str
    account_id: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, str]
    resource_types: dict[str, str]
    functions: dict[str, FunctionSpec]
    state_machines: dict[str, str]
    template: dict[str, Any] = field(repr=False)

    @property
    def queue_url(self) -> str:
        return self.outputs["JobRequestsQueueUrl"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["JobRequestsDLQUrl"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["JobEventsTopicArn"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["JobTrackerStateMachineArn"]

    @property
    def table_name(self) -> str:
        return self.outputs["IdempotencyTableName"]

    def function(self, logical_id: str) -> FunctionSpec:
        """The function with this logical id (e.g. `CreateJobFunction`)."""
        return self.functions[logical_id]

    def function_by_name(self, name_or_arn: str) -> FunctionSpec:
        """The function with this physical name or ARN."""
        name = _function_name(name_or_arn)
        for spec in self.functions.values():
            if spec.function_name == name:
                return spec
        raise KeyError(name_or_arn)


# --------------------------------------------------------------------------------------
# Template -> moto
# --------------------------------------------------------------------------------------


def load_template(path: Path | str = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML short forms included) into plain dicts."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None or matches:
        problems = "; ".join(str(m) for m in matches) or "empty template"
        raise ValueError(f"cannot parse {path}: {problems}")
    return cast(dict[str, Any], json.loads(json.dumps(template)))


class _FixedManagedPolicyLoader:
    """samtranslator's `ManagedPolicyLoader`, without asking IAM."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


def deploy(
    parameters: Mapping[str, str] | None = None,
    template_path: Path | str = DEFAULT_TEMPLATE,
    stack_name: str = "jobrelay",
    *,
    region: str | None = None,
    artifact_bucket: str = ARTIFACT_BUCKET,
    keep_moto_sqs_triggers: bool = False,
) -> DeployedStack:
    """Create the template's stack in moto and return what the local stack needs of it.

    `parameters` override the template's parameter defaults (parameters without a default,
    such as the provider API key secret ARNs, must be given: see `create_provider_secrets`).
    moto delivers SQS messages to a mapped function itself, one message per synchronous
    invoke and ignoring `batchItemFailures`; that delivery is switched off (the mapping is
    disabled in moto) unless `keep_moto_sqs_triggers`, and `FunctionSpec.sqs_trigger` keeps
    the mapping's settings for a poller that behaves like Lambda's.

    Also filled in after moto's CloudFormation (moto 5.2.5): the state machines (created in
    a backend the Step Functions API does not see, without substitutions) and the DynamoDB
    TTL and point-in-time recovery settings (skipped).
    """
    template_path = Path(template_path).resolve()
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    region = region or DEFAULT_REGION
    # samtranslator reads the region (for ARNs and partitions) from the boto3 session.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)

    template = load_template(template_path)
    effective = _effective_parameters(template, parameters or {})

    s3 = boto3.client("s3", region_name=region)
    _ensure_bucket(s3, artifact_bucket, region)
    sam_template = copy.deepcopy(template)
    code_dirs = _package(sam_template, template_path.parent, s3, artifact_bucket)

    from samtranslator.translator.transform import transform

    cfn_template = cast(
        dict[str, Any],
        transform(sam_template, dict(effective), _FixedManagedPolicyLoader()),
    )

    cloudformation = boto3.client("cloudformation", region_name=region)
    # moto's CloudFormation skips the types it does not model (schedules, alarms: read from
    # the template where the local stack needs them) and says so on every deploy; quietly.
    moto_cfn_logger = logging.getLogger("moto.cloudformation.parsing")
    level = moto_cfn_logger.level
    moto_cfn_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)
            created = cloudformation.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps(cfn_template),
                Parameters=[
                    {"ParameterKey": key, "ParameterValue": value}
                    for key, value in sorted((parameters or {}).items())
                ],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
            )
    finally:
        moto_cfn_logger.setLevel(level)
    stack_id = created["StackId"]
    described = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        reason = described.get("StackStatusReason", "")
        raise RuntimeError(f"stack {stack_name} ended in {described['StackStatus']}: {reason}")

    resources: dict[str, str] = {}
    resource_types: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        for summary in page["StackResourceSummaries"]:
            resources[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
            resource_types[summary["LogicalResourceId"]] = summary["ResourceType"]

    account_id = boto3.client("sts", region_name=region).get_caller_identity()["Account"]
    resolver = _Resolver(
        region=region,
        account_id=account_id,
        stack_name=stack_name,
        stack_id=stack_id,
        parameters=effective,
        resources=resources,
        resource_types=resource_types,
    )
    state_machines = _install_state_machines(cfn_template, resolver)
    _apply_table_settings(cfn_template, resolver)
    functions = _collect_functions(
        cfn_template, resources, code_dirs, region, keep_moto_sqs_triggers
    )
    outputs = {
        output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])
    }
    return DeployedStack(
        stack_name=stack_name,
        stack_id=stack_id,
        region=region,
        account_id=account_id,
        parameters=effective,
        outputs=outputs,
        resources=resources,
        resource_types=resource_types,
        functions=functions,
        state_machines=state_machines,
        template=template,
    )


def create_provider_secrets(
    api_keys: Mapping[str, str] | None = None,
    *,
    region: str | None = None,
    prefix: str = "jobrelay/local",
) -> dict[str, str]:
    """Store each provider's API key in (moto's) Secrets Manager; return the ARN parameters.

    Missing providers get a placeholder key `local-<provider>-key`. The result is meant to be
    merged into `deploy(parameters=...)`.
    """
    region = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    client = boto3.client("secretsmanager", region_name=region)
    keys = dict(api_keys or {})
    result: dict[str, str] = {}
    for provider, parameter in PROVIDER_SECRET_PARAMETERS.items():
        name = f"{prefix}/{provider}/api-key"
        value = keys.get(provider, f"local-{provider}-key")
        try:
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
            arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        result[parameter] = arn
    return result


def _effective_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, str]:
    declared: dict[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"unknown template parameters: {', '.join(unknown)}")
    effective = {
        name: _scalar(spec["Default"]) for name, spec in declared.items() if "Default" in spec
    }
    effective.update({name: str(value) for name, value in overrides.items()})
    missing = sorted(set(declared) - set(effective))
    if missing:
        raise ValueError(f"template parameters without a default need a value: {missing}")
    return effective


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(item) for item in value)
    return str(value)


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _package(template: dict[str, Any], base_dir: Path, s3: Any, bucket: str) -> dict[str, Path]:
    """Do what `sam package` does for local paths: upload code, inline definitions.

    Mutates `template`; returns logical id -> absolute code directory of each function.
    """
    global_function: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        props: dict[str, Any] = resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["Definition"] = _load_document(base_dir / props.pop("DefinitionUri"))
        elif kind == "AWS::Serverless::Function":
            uri = props.get("CodeUri", global_function.get("CodeUri"))
            if isinstance(uri, str) and _is_local_path(uri):
                code_dir = (base_dir / uri).resolve()
                props["CodeUri"] = _upload_directory(s3, bucket, logical_id, code_dir)
                code_dirs[logical_id] = code_dir
        elif kind == "AWS::Serverless::LayerVersion" and _is_local_path(props.get("ContentUri")):
            content_dir = (base_dir / props["ContentUri"]).resolve()
            props["ContentUri"] = _upload_directory(s3, bucket, logical_id, content_dir)
    return code_dirs


def _is_local_path(uri: Any) -> bool:
    return isinstance(uri, str) and not uri.startswith("s3://")


def _load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _upload_directory(s3: Any, bucket: str, logical_id: str, directory: Path) -> dict[str, str]:
    """Zip a directory (the code itself runs in-process; moto only needs a real object)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{logical_id}: code directory {directory} does not exist")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    data = buffer.getvalue()
    key = f"{logical_id}/{hashlib.sha256(data).hexdigest()}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return {"Bucket": bucket, "Key": key}


@dataclass
class _Resolver:
    """Resolves the few intrinsic functions moto leaves unresolved (substitution values)."""

    region: str
    account_id: str
    stack_name: str
    stack_id: str
    parameters: dict[str, str]
    resources: dict[str, str]
    resource_types: dict[str, str]

    def resolve(self, value: Any) -> str:
        if isinstance(value, str | int | float | bool):
            return _scalar(value)
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(str(argument))
            if function == "Fn::GetAtt":
                if isinstance(argument, str):
                    argument = argument.split(".", 1)
                return self.get_att(str(argument[0]), str(argument[1]))
            if function == "Fn::Join":
                delimiter, values = argument
                return str(delimiter).join(self.resolve(item) for item in values)
            if function == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_name(m.group(1)), argument)
        raise NotImplementedError(f"cannot resolve {value!r} locally")

    def _sub_name(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return self.get_att(logical_id, attribute)
        return self.ref(name)

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resources[name]

    def get_att(self, logical_id: str, attribute: str) -> str:
        physical = self.resources[logical_id]
        kind = self.resource_types[logical_id]
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            client = boto3.client("lambda", region_name=self.region)
            return client.get_function_configuration(FunctionName=physical)["FunctionArn"]
        if kind == "AWS::SQS::Queue":
            if attribute == "QueueUrl":
                return physical
            if attribute == "QueueName":
                return physical.rsplit("/", 1)[-1]
            if attribute == "Arn":
                sqs = boto3.client("sqs", region_name=self.region)
                attributes = sqs.get_queue_attributes(
                    QueueUrl=physical, AttributeNames=["QueueArn"]
                )["Attributes"]
                return attributes["QueueArn"]
        if kind == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return physical
            if attribute == "TopicName":
                return physical.rsplit(":", 1)[-1]
        if kind == "AWS::StepFunctions::StateMachine":
            if attribute == "Arn":
                return physical
            if attribute == "Name":
                return physical.rsplit(":", 1)[-1]
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            dynamodb = boto3.client("dynamodb", region_name=self.region)
            return str(dynamodb.describe_table(TableName=physical)["Table"]["TableArn"])
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            iam = boto3.client("iam", region_name=self.region)
            return str(iam.get_role(RoleName=physical)["Role"]["Arn"])
        raise NotImplementedError(f"cannot resolve {logical_id}.{attribute} ({kind}) locally")


def _install_state_machines(cfn_template: Mapping[str, Any], resolver: _Resolver) -> dict[str, str]:
    """Put each state machine where moto's Step Functions API sees it, substitutions applied.

    moto's CloudFormation creates `AWS::StepFunctions::StateMachine` in its plain Step
    Functions backend, but with `execute_state_machine` the API (and the interpreter) use a
    separate parser backend, so the stack's machine is invisible there; moto also ignores
    `DefinitionSubstitutions`. So: resolve the definition, substitute, and create the machine
    through the API under the stack's physical name (or update it, should moto see it).
    """
    sfn = boto3.client("stepfunctions", region_name=resolver.region)
    state_machines: dict[str, str] = {}
    for logical_id, resource in cfn_template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        props: dict[str, Any] = resource.get("Properties", {})
        arn = resolver.resources[logical_id]
        definition = _definition_of(logical_id, props, resolver)
        for name, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + name + "}", resolver.resolve(value))
        role_arn = resolver.resolve(props["RoleArn"])
        try:
            sfn.describe_state_machine(stateMachineArn=arn)
        except sfn.exceptions.StateMachineDoesNotExist:
            created = sfn.create_state_machine(
                name=arn.rsplit(":", 1)[-1],
                definition=definition,
                roleArn=role_arn,
                type=props.get("StateMachineType", "STANDARD"),
                tracingConfiguration={
                    "enabled": bool(props.get("TracingConfiguration", {}).get("Enabled"))
                },
            )
            arn = created["stateMachineArn"]
        else:
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
        state_machines[logical_id] = arn
    return state_machines


def _apply_table_settings(cfn_template: Mapping[str, Any], resolver: _Resolver) -> None:
    """Apply the DynamoDB table properties moto's CloudFormation skips (TTL, PITR)."""
    dynamodb = boto3.client("dynamodb", region_name=resolver.region)
    for logical_id, resource in cfn_template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props: dict[str, Any] = resource.get("Properties", {})
        table = resolver.resources[logical_id]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _truthy(ttl.get("Enabled")):
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _truthy(pitr.get("PointInTimeRecoveryEnabled")):
            dynamodb.update_continuous_backups(
                TableName=table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _definition_of(logical_id: str, props: Mapping[str, Any], resolver: _Resolver) -> str:
    if "Definition" in props:
        return json.dumps(props["Definition"], indent=2)
    if "DefinitionString" in props:
        return resolver.resolve(props["DefinitionString"])
    raise NotImplementedError(f"{logical_id}: only inline or local-file definitions are supported")


def _collect_functions(
    cfn_template: Mapping[str, Any],
    resources: Mapping[str, str],
    code_dirs: Mapping[str, Path],
    region: str,
    keep_moto_sqs_triggers: bool,
) -> dict[str, FunctionSpec]:
    """Read each function's configuration (environment as moto resolved it) and trigger."""
    lambda_client = boto3.client("lambda", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in cfn_template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function" or logical_id not in code_dirs:
            continue
        config = lambda_client.get_function_configuration(FunctionName=resources[logical_id])
        variables = config.get("Environment", {}).get("Variables", {})
        trigger: SqsTrigger | None = None
        mappings = lambda_client.list_event_source_mappings(FunctionName=config["FunctionName"])[
            "EventSourceMappings"
        ]
        for mapping in mappings:
            queue_arn = mapping.get("EventSourceArn", "")
            if ":sqs:" not in queue_arn:
                continue
            _, _, _, _, owner, queue_name = queue_arn.split(":", 5)
            trigger = SqsTrigger(
                uuid=mapping["UUID"],
                queue_arn=queue_arn,
                queue_url=sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=owner)[
                    "QueueUrl"
                ],
                batch_size=int(mapping.get("BatchSize", 10)),
                maximum_batching_window_seconds=int(
                    mapping.get("MaximumBatchingWindowInSeconds", 0)
                ),
                report_batch_item_failures="ReportBatchItemFailures"
                in mapping.get("FunctionResponseTypes", []),
                enabled=mapping.get("State", "Enabled") == "Enabled",
            )
            if not keep_moto_sqs_triggers:
                lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
            break
        functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=config["FunctionName"],
            function_arn=config["FunctionArn"],
            code_dir=code_dirs[logical_id],
            handler=config.get("Handler", "app.lambda_handler"),
            environment={key: str(value) for key, value in variables.items()},
            timeout=int(config.get("Timeout", 3)),
            memory_size=int(config.get("MemorySize", 128)),
            sqs_trigger=trigger,
        )
    return functions


# --------------------------------------------------------------------------------------
# Running the functions in-process
# --------------------------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_error_payload(exc: BaseException) -> dict[str, Any]:
    """The payload the Python Lambda runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(
            [
                frame
                for frame in traceback.extract_tb(exc.__traceback__)
                if frame.filename != __file__
            ]
        ),
    }


def _function_name(name_or_arn: str) -> str:
    # arn:aws:lambda:region:account:function:name[:qualifier]
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":")[6]
    return name_or_arn


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    items = headers.items() if hasattr(headers, "items") else headers
    for key, value in items:
        if str(key).lower() == wanted:
            return str(value)
    return None


def _call_handler(handler: Handler, body: Any, context: FakeLambdaContext) -> tuple[bytes, bool]:
    """Run one invocation; return (response payload, whether it is a function error)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    event = json.loads(body) if body else {}
    try:
        result = handler(event, context)
    except Exception as exc:
        payload = lambda_error_payload(exc)
        payload["requestId"] = context.aws_request_id
        return json.dumps(payload).encode("utf-8"), True
    try:
        return json.dumps(result).encode("utf-8"), False
    except (TypeError, ValueError) as exc:
        marshal_error = {
            "errorMessage": f"Unable to marshal response: {exc}",
            "errorType": "Runtime.MarshalError",
            "requestId": context.aws_request_id,
            "stackTrace": [],
        }
        return json.dumps(marshal_error).encode("utf-8"), True


# How a function error reaches Step Functions (moto 5.2.5, read from its source):
# `LambdaResponse.invoke` (moto/awslambda/responses.py) returns our `response_headers` as the
# HTTP headers of the Invoke answer, so botocore parses `X-Amz-Function-Error` into
# `FunctionError`. moto's interpreter (stepfunctions/parser/.../lambda_eval_utils.py) raises
# `LambdaFunctionErrorException` when `FunctionError` is set, and `_from_error` of
# `StateTaskServiceLambda` (`arn:aws:states:::lambda:invoke`) and of `StateTaskLambda` (a
# function ARN as Resource) turns it into `CustomErrorName(payload["errorType"])`, with the
# payload JSON as the cause. So the error name that Retry/Catch match is the `errorType`,
# here the exception's class name (`ProviderUnavailable`), exactly as on AWS; the header's
# value ("Unhandled" as the Python runtime sends it) is only checked for presence.
@contextlib.contextmanager
def route_lambda_invokes(handlers_by_function_name: Mapping[str, Handler]) -> Iterator[None]:
    """Make Lambda invokes of these functions (name or ARN keys) run the handlers in-process.

    Patches moto's `LambdaSimpleBackend.invoke` (used with `"lambda": {"use_docker": False}`)
    for the duration of the block, so direct `lambda.invoke` calls and Step Functions
    `lambda:invoke` tasks alike reach the Python handler. `Event` invokes run in a thread.
    A function without a handler fails like a missing handler does on AWS.
    """
    from moto.awslambda_simple.models import LambdaSimpleBackend

    handlers = {_function_name(key): value for key, value in handlers_by_function_name.items()}

    def invoke(
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        fn = backend.get_function(function_name, qualifier)
        context = FakeLambdaContext(
            function_name=fn.function_name,
            invoked_function_arn=fn.function_arn,
            memory_limit_in_mb=int(fn.memory_size),
            timeout_seconds=int(fn.timeout),
        )
        handler = handlers.get(fn.function_name)
        if handler is None:
            missing = {
                "errorMessage": f"no in-process handler is routed for {fn.function_name}",
                "errorType": "Runtime.HandlerNotFound",
                "requestId": context.aws_request_id,
                "stackTrace": [],
            }
            response_headers["X-Amz-Function-Error"] = "Unhandled"
            return json.dumps(missing).encode("utf-8")
        response_headers["X-Amz-Executed-Version"] = "$LATEST"
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            threading.Thread(
                target=_call_handler,
                args=(handler, body, context),
                name=f"lambda-event-{fn.function_name}",
                daemon=True,
            ).start()
            return b""
        payload, failed = _call_handler(handler, body, context)
        if failed:
            response_headers["X-Amz-Function-Error"] = "Unhandled"
        return payload

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield


_import_lock = threading.Lock()


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's handler module from its code directory under a unique name."""
    module_path, _, attribute = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    suffix = "" if module_path == "app" else "__" + module_path.replace(".", "_")
    module_name = re.sub(r"\W", "_", f"jobrelay_fn_{spec.code_dir.name}{suffix}")
    with _import_lock:
        module: ModuleType | None = sys.modules.get(module_name)
        if module is None or getattr(module, "__file__", None) != str(source):
            import_spec = importlib.util.spec_from_file_location(module_name, source)
            if import_spec is None or import_spec.loader is None:
                raise ImportError(f"cannot import {source}")
            module = importlib.util.module_from_spec(import_spec)
            sys.modules[module_name] = module
            try:
                import_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{spec.handler} in {spec.code_dir} is not callable")
    return cast(Handler, handler)


def load_handlers(stack: DeployedStack) -> dict[str, Handler]:
    """Every function's handler, keyed by physical function name (for `route_lambda_invokes`)."""
    return {spec.function_name: load_handler(spec) for spec in stack.functions.values()}


def merged_environment(stack: DeployedStack) -> dict[str, str]:
    """All functions' environments in one map; raises if two functions disagree on a name."""
    merged: dict[str, str] = {}
    for spec in stack.functions.values():
        for name, value in spec.environment.items():
            if merged.setdefault(name, value) != value:
                raise ValueError(
                    f"functions disagree on {name}: {merged[name]!r} vs {value!r} "
                    f"({spec.logical_id}); use function_environment() per call instead"
                )
    return merged


def apply_environment(stack: DeployedStack) -> dict[str, str]:
    """Put every function's environment into `os.environ` at once; return what was set.

    In-process handlers share one `os.environ`, and setting it per call would race between
    threads (Step Functions executions and the SQS poller run concurrently). The template's
    functions agree wherever their variables overlap (Globals plus CreateJob's additions),
    so the union is each function's environment plus variables it does not read.
    """
    merged = merged_environment(stack)
    os.environ.update(merged)
    return merged


@contextlib.contextmanager
def function_environment(spec: FunctionSpec) -> Iterator[None]:
    """Set `os.environ` to include the function's environment for the block, then restore.

    Not thread-safe (one process has one environment): for concurrent handlers use
    `apply_environment` once instead.
    """
    previous = {name: os.environ.get(name) for name in spec.environment}
    os.environ.update(spec.environment)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
