"""Deploy `template.yaml` into moto: package, translate, create the stack, fill in what moto
leaves out, and read back each function's configuration, SQS trigger and EventBridge rules."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast
from unittest import mock

import boto3
from jobrelay_cli.template import DEFAULT_TEMPLATE, load_template

from jobrelay_local.config import DEFAULT_REGION
from jobrelay_local.deployment import (
    AsyncInvokeConfig,
    DeployedStack,
    EventRule,
    FunctionSpec,
    SqsTrigger,
)
from jobrelay_local.intrinsics import Resolver, scalar
from jobrelay_local.moto_gaps import apply_table_settings, install_state_machines
from jobrelay_local.package import ARTIFACT_BUCKET, ensure_bucket, package

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

    Call it inside an active `moto.mock_aws(config=MOTO_CONFIG)`, or with boto3 pointed at a
    moto server started with that config.
    `parameters` override the template's parameter defaults (parameters without a default,
    such as the provider API key secret ARNs, must be given: see `create_provider_secrets`).
    moto delivers SQS messages to a mapped function itself, one message per synchronous
    invoke and ignoring `batchItemFailures`; that delivery is switched off (the mapping is
    disabled in moto) unless `keep_moto_sqs_triggers`, and `FunctionSpec.sqs_trigger` keeps
    the mapping's settings for a poller that behaves like Lambda's.

    Also filled in after moto's CloudFormation (moto 5.2.5): the state machines (created in
    a backend the Step Functions API does not see, without substitutions) and the DynamoDB
    TTL and point-in-time recovery settings (skipped). moto skips the types it does not
    model (schedules, alarms) with a warning each: the local stack reads those from the
    template where it needs them.
    """
    template_path = Path(template_path).resolve()
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    region = region or DEFAULT_REGION
    # samtranslator reads the region (for ARNs and partitions) from the boto3 session.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)

    template = load_template(template_path)
    effective = _effective_parameters(template, parameters or {})

    s3 = boto3.client("s3", region_name=region)
    ensure_bucket(s3, artifact_bucket, region)
    sam_template = copy.deepcopy(template)
    code_dirs = package(sam_template, template_path.parent, s3, artifact_bucket)

    cfn_template = _translated(sam_template, effective, region)

    cloudformation = boto3.client("cloudformation", region_name=region)
    with _json_templates_parsed_as_json():
        created = cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(cfn_template),
            Parameters=[
                {"ParameterKey": key, "ParameterValue": value}
                for key, value in sorted((parameters or {}).items())
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
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
    resolver = Resolver(
        region=region,
        account_id=account_id,
        stack_name=stack_name,
        stack_id=stack_id,
        parameters=effective,
        resources=resources,
        resource_types=resource_types,
    )
    state_machines = install_state_machines(cfn_template, resolver)
    apply_table_settings(cfn_template, resolver)
    functions = _collect_functions(
        cfn_template, resources, code_dirs, region, keep_moto_sqs_triggers, resolver
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


# samtranslator's output (as JSON text) for each packaged template, parameters and region: a
# test run deploys the same template with the same few parameter sets dozens of times.
_translations: dict[str, str] = {}
_translations_lock = threading.Lock()


def _translated(
    sam_template: Mapping[str, Any], parameters: Mapping[str, str], region: str
) -> dict[str, Any]:
    """The SAM template as plain CloudFormation (a new copy each call: callers change it).

    The packaged template names its code by content hash, so the same key means the same
    input to samtranslator, which reads nothing else but the region.
    """
    key = json.dumps([sam_template, parameters, region], sort_keys=True)
    with _translations_lock:
        text = _translations.get(key)
    if text is None:
        from samtranslator.translator.transform import transform

        translated = transform(
            copy.deepcopy(sam_template), dict(parameters), _FixedManagedPolicyLoader()
        )
        text = json.dumps(translated)
        with _translations_lock:
            _translations[key] = text
    return cast(dict[str, Any], json.loads(text))


@contextlib.contextmanager
def _json_templates_parsed_as_json() -> Iterator[None]:
    """moto's CloudFormation parses every template body with PyYAML's pure-Python loader,
    JSON included (about half a second for this one); a JSON body is read as JSON here,
    which gives the same dicts. Anything else goes to moto's own parse."""
    from moto.cloudformation.models import Stack

    parse = Stack.parse_template

    def parse_json_first(template: str) -> dict[str, Any]:
        if template.lstrip().startswith("{"):
            try:
                return cast(dict[str, Any], json.loads(template))
            except ValueError:
                pass
        return parse(template)

    with mock.patch.object(Stack, "parse_template", staticmethod(parse_json_first)):
        yield


def _effective_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, str]:
    declared: dict[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"unknown template parameters: {', '.join(unknown)}")
    effective = {
        name: scalar(spec["Default"]) for name, spec in declared.items() if "Default" in spec
    }
    effective.update({name: str(value) for name, value in overrides.items()})
    missing = sorted(set(declared) - set(effective))
    if missing:
        raise ValueError(f"template parameters without a default need a value: {missing}")
    return effective


def _collect_functions(
    cfn_template: Mapping[str, Any],
    resources: Mapping[str, str],
    code_dirs: Mapping[str, Path],
    region: str,
    keep_moto_sqs_triggers: bool,
    resolver: Resolver,
) -> dict[str, FunctionSpec]:
    """Read each function's configuration (environment as moto resolved it) and triggers."""
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
            scaling = mapping.get("ScalingConfig") or {}
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
                maximum_concurrency=int(scaling["MaximumConcurrency"])
                if scaling.get("MaximumConcurrency")
                else None,
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
            event_rules=_event_rules(config["FunctionArn"], region),
            async_invoke=_async_invoke_config(logical_id, cfn_template, resolver, config),
        )
    return functions


def _event_rules(function_arn: str, region: str) -> tuple[EventRule, ...]:
    """The EventBridge rules that target the function, read from moto's EventBridge (which
    moto's CloudFormation created with the pattern's `!Ref`s resolved); moto delivers no
    AWS service events to them: `execution_events` does, for Step Functions'."""
    events = boto3.client("events", region_name=region)
    rules: list[EventRule] = []
    for name in events.list_rule_names_by_target(TargetArn=function_arn)["RuleNames"]:
        rule = events.describe_rule(Name=name)
        if not rule.get("EventPattern"):
            continue  # a schedule expression, not a pattern
        for target in events.list_targets_by_rule(Rule=name)["Targets"]:
            if target["Arn"] != function_arn:
                continue
            retry = target.get("RetryPolicy", {})
            rules.append(
                EventRule(
                    name=name,
                    arn=rule["Arn"],
                    pattern=json.loads(rule["EventPattern"]),
                    enabled=rule.get("State", "ENABLED") == "ENABLED",
                    maximum_retry_attempts=int(retry.get("MaximumRetryAttempts", 185)),
                    maximum_event_age_seconds=int(retry.get("MaximumEventAgeInSeconds", 86400)),
                    dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
                )
            )
    return tuple(rules)


def _async_invoke_config(
    logical_id: str,
    cfn_template: Mapping[str, Any],
    resolver: Resolver,
    config: Mapping[str, Any],
) -> AsyncInvokeConfig:
    """The function's EventInvokeConfig and dead-letter queue, read from the template (moto
    5.2.5's CloudFormation skips `AWS::Lambda::EventInvokeConfig` and the function's
    `DeadLetterConfig`)."""
    function_props = cfn_template["Resources"][logical_id].get("Properties", {})
    target = function_props.get("DeadLetterConfig", {}).get("TargetArn")
    dead_letter = config.get("DeadLetterConfig", {}).get("TargetArn") or (
        resolver.resolve(target) if target else None
    )
    for resource in cfn_template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::EventInvokeConfig":
            continue
        props: dict[str, Any] = resource.get("Properties", {})
        if props.get("FunctionName") != {"Ref": logical_id}:
            continue
        on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        return AsyncInvokeConfig(
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", 2)),
            maximum_event_age_seconds=int(props.get("MaximumEventAgeInSeconds", 21600)),
            on_failure_arn=resolver.resolve(on_failure) if on_failure else None,
            dead_letter_arn=dead_letter,
        )
    return AsyncInvokeConfig(dead_letter_arn=dead_letter)
