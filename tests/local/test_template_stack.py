"""template.yaml deployed into moto in-process, and Lambda invokes routed to Python handlers."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from jobrelay_cli.template import PROJECT_ROOT, load_template
from jobrelay_local.deploy import deploy
from jobrelay_local.deployment import DeployedStack
from jobrelay_local.handlers import apply_environment, function_environment, load_handler
from jobrelay_local.lambdas import route_lambda_invokes
from jobrelay_local.provider_secrets import create_provider_secrets
from moto import mock_aws

# The module shares one deployment: under pytest-xdist its tests stay on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("template_stack")]

MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
REGION = "us-east-1"
LOOPBACK_DEEPSET = "http://127.0.0.1:8081"


class ProviderUnavailable(Exception):
    """Stands in for the layer's transient provider error (same class name)."""


class Boom(Exception):
    """An unexpected failure."""


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    """One moto account for the module (a deployment takes about a second)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        with mock_aws(config=MOTO_CONFIG):
            yield


@pytest.fixture(scope="module")
def stack(aws: None) -> DeployedStack:
    parameters = create_provider_secrets() | {"DeepsetBaseUrl": LOOPBACK_DEEPSET}
    return deploy(parameters)


def wait_for_execution(execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout
    while True:
        described: Any = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            pytest.fail(f"execution still RUNNING after {timeout}s: {execution_arn}")
        time.sleep(0.05)


# --- the template ---------------------------------------------------------------------


def test_template_function_code_dirs_exist() -> None:
    template = load_template(PROJECT_ROOT / "template.yaml")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            assert (PROJECT_ROOT / resource["Properties"]["CodeUri"]).is_dir()


def test_queue_redrives_to_dlq_with_sse(stack: DeployedStack) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["All"])
    attributes, dlq_attributes = queue["Attributes"], dlq["Attributes"]

    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_attributes["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert dlq_attributes["SqsManagedSseEnabled"] == "true"
    assert int(attributes["VisibilityTimeout"]) >= 6 * stack.function("CreateJobFunction").timeout
    assert attributes["MessageRetentionPeriod"] == str(4 * 86400)
    assert dlq_attributes["MessageRetentionPeriod"] == str(14 * 86400)


def test_topic_is_encrypted(stack: DeployedStack) -> None:
    sns = boto3.client("sns", region_name=REGION)
    attributes = sns.get_topic_attributes(TopicArn=stack.topic_arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == "alias/aws/sns"


def test_idempotency_table_has_ttl(stack: DeployedStack) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = dynamodb.describe_table(TableName=stack.table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=stack.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    backups = dynamodb.describe_continuous_backups(TableName=stack.table_name)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def test_limits_table_has_pk_sk_and_ttl(stack: DeployedStack) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table_name = stack.outputs["LimitsTableName"]
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    for logical_id in ("CreateJobFunction", "PublishOutcomeFunction", "TrackerEndedFunction"):
        assert stack.function(logical_id).environment["LIMITS_TABLE"] == table_name


def test_functions_read_connections_under_the_stack_prefix(stack: DeployedStack) -> None:
    for spec in stack.functions.values():
        assert spec.environment["CONNECTIONS_PREFIX"] == "jobrelay/connections/"
    assert stack.function("PollJobStatusFunction").environment["PIXXEL_ALLOWED_HOSTS"] == (
        "api.pixxel.space"
    )


def test_state_machine_definition_is_substituted(stack: DeployedStack) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    described = sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)
    definition = described["definition"]
    assert "${" not in definition
    states = json.loads(definition)["States"]
    poll_arn = stack.function("PollJobStatusFunction").function_arn
    publish_arn = stack.function("PublishOutcomeFunction").function_arn
    assert states["PollJobStatus"]["Parameters"]["FunctionName"] == poll_arn
    assert states["CancelJob"]["Parameters"]["FunctionName"] == poll_arn
    assert states["PublishOutcome"]["Parameters"]["FunctionName"] == publish_arn
    assert described["type"] == "STANDARD"
    assert stack.state_machines == {"JobTrackerStateMachine": stack.state_machine_arn}


def test_outputs(stack: DeployedStack) -> None:
    assert set(stack.outputs) == {
        "JobRequestsQueueUrl",
        "JobRequestsDLQUrl",
        "JobEventsTopicArn",
        "JobTrackerStateMachineArn",
        "IdempotencyTableName",
        "LimitsTableName",
        "ConnectionsSecretPrefix",
    }
    assert stack.outputs["ConnectionsSecretPrefix"] == "jobrelay/connections/"
    assert stack.outputs["JobTrackerStateMachineArn"] == stack.resources["JobTrackerStateMachine"]
    assert stack.queue_url == stack.resources["JobRequestsQueue"]


def test_function_environments(stack: DeployedStack) -> None:
    create = stack.function("CreateJobFunction")
    assert create.environment["STATE_MACHINE_ARN"] == stack.state_machine_arn
    assert create.environment["DLQ_URL"] == stack.dlq_url
    assert create.environment["IDEMPOTENCY_TABLE"] == stack.table_name
    assert create.environment["EVENTS_TOPIC_ARN"] == stack.topic_arn
    assert create.environment["EVENT_SOURCE"] == "urn:jobrelay:jobrelay"
    assert create.environment["POLL_INTERVAL_SECONDS"] == "30"
    assert create.environment["FIRST_POLL_SECONDS"] == "10"
    assert create.environment["DEFAULT_DEADLINE_SECONDS"] == "86400"
    assert create.environment["PROVIDER_OUTAGE_WAIT_SECONDS"] == "300"
    assert create.environment["DEEPSET_BASE_URL"] == LOOPBACK_DEEPSET
    assert create.environment["PIXXEL_BASE_URL"] == "https://api.pixxel.space"
    assert create.environment["DEEPSET_API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert create.environment["POWERTOOLS_SERVICE_NAME"] == "jobrelay"
    assert create.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert create.code_dir == PROJECT_ROOT / "functions" / "create_job"
    assert create.handler == "app.lambda_handler"
    assert (create.timeout, create.memory_size) == (60, 1769)
    assert create.environment["POWERTOOLS_TRACE_DISABLED"] == "true"  # TraceCalls off
    assert create.environment["PYDANTIC_DISABLE_PLUGINS"] == "__all__"

    poll = stack.function("PollJobStatusFunction")
    assert "STATE_MACHINE_ARN" not in poll.environment
    assert poll.environment["MATATIKA_BASE_URL"] == "https://app.matatika.com"
    assert stack.function("PublishOutcomeFunction").environment["EVENTS_TOPIC_ARN"] == (
        stack.topic_arn
    )


def test_create_job_sqs_trigger(stack: DeployedStack) -> None:
    trigger = stack.function("CreateJobFunction").sqs_trigger
    assert trigger is not None
    assert trigger.queue_url == stack.queue_url
    assert trigger.batch_size == 10
    assert trigger.maximum_batching_window_seconds == 1
    assert trigger.report_batch_item_failures
    assert trigger.enabled
    assert trigger.maximum_concurrency == 20  # ScalingConfig.MaximumConcurrency
    assert stack.function("PollJobStatusFunction").sqs_trigger is None
    # moto's own (one message per synchronous invoke) delivery is switched off.
    mapping = boto3.client("lambda", region_name=REGION).get_event_source_mapping(UUID=trigger.uuid)
    assert mapping["State"] == "Disabled"


def test_parameters_override_defaults(aws: None) -> None:
    parameters = create_provider_secrets() | {
        "MaxReceiveCount": "3",
        "CreateJobBatchSize": "4",
        "FirstPollSeconds": "0",
        "PixxelBaseUrl": "http://127.0.0.1:8082",
    }
    stack = deploy(parameters, stack_name="jobrelay-custom")
    sqs = boto3.client("sqs", region_name=REGION)
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    assert json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"] in (3, "3")
    create = stack.function("CreateJobFunction")
    assert create.sqs_trigger is not None
    assert create.sqs_trigger.batch_size == 4
    assert create.environment["FIRST_POLL_SECONDS"] == "0"
    assert create.environment["PIXXEL_BASE_URL"] == "http://127.0.0.1:8082"
    assert create.environment["EVENT_SOURCE"] == "urn:jobrelay:jobrelay-custom"
    assert stack.parameters["MaxReceiveCount"] == "3"


def test_deploy_rejects_unknown_and_missing_parameters(aws: None) -> None:
    secrets = create_provider_secrets()
    with pytest.raises(ValueError, match="unknown template parameters: NoSuchParameter"):
        deploy(secrets | {"NoSuchParameter": "x"})
    with pytest.raises(ValueError, match="DeepsetApiKeySecretArn"):
        deploy({k: v for k, v in secrets.items() if k != "DeepsetApiKeySecretArn"})


def test_apply_environment_merges_all_functions(
    stack: DeployedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spec in stack.functions.values():
        for name in spec.environment:
            monkeypatch.delenv(name, raising=False)
    merged = apply_environment(stack)
    assert os.environ["STATE_MACHINE_ARN"] == stack.state_machine_arn
    assert os.environ["DEEPSET_BASE_URL"] == LOOPBACK_DEEPSET
    for spec in stack.functions.values():
        assert spec.environment.items() <= merged.items()


def test_load_handler_and_function_environment(stack: DeployedStack, tmp_path: Path) -> None:
    code_dir = tmp_path / "probe_fn"
    code_dir.mkdir()
    (code_dir / "app.py").write_text(
        "import os\n\n"
        "def lambda_handler(event, context):\n"
        "    return {'seen': event, 'sm': os.environ.get('STATE_MACHINE_ARN'),\n"
        "            'fn': context.function_name}\n"
    )
    spec = replace(stack.function("CreateJobFunction"), code_dir=code_dir)
    handler = load_handler(spec)
    assert handler.__module__ == "jobrelay_fn_probe_fn"
    assert load_handler(spec) is handler

    previous = os.environ.get("STATE_MACHINE_ARN")
    with function_environment(spec), route_lambda_invokes({spec.function_name: handler}):
        response = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName=spec.function_arn, Payload=json.dumps({"n": 1}).encode()
        )
    assert os.environ.get("STATE_MACHINE_ARN") == previous
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {
        "seen": {"n": 1},
        "sm": stack.state_machine_arn,
        "fn": spec.function_name,
    }


# --- Lambda routing and Step Functions error names ---------------------------------------


def test_direct_invoke_of_a_raising_handler_is_a_function_error(stack: DeployedStack) -> None:
    def handler(event: Any, context: Any) -> Any:
        raise ProviderUnavailable("provider answered 503")

    poll = stack.function("PollJobStatusFunction")
    with route_lambda_invokes({poll.function_arn: handler}):
        response = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName=poll.function_name, Payload=b"{}"
        )
    assert response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "ProviderUnavailable"
    assert payload["errorMessage"] == "provider answered 503"
    assert isinstance(payload["stackTrace"], list)
    assert payload["stackTrace"]


def _probe_state_machine(function_name: str) -> str:
    definition = {
        "StartAt": "Poll",
        "States": {
            "Poll": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_name, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Retry": [
                    {
                        "ErrorEquals": ["ProviderUnavailable"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 1,
                    }
                ],
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    created = sfn.create_state_machine(
        name=f"retry-probe-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/retry-probe",
    )
    return str(created["stateMachineArn"])


def _run(state_machine_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    started = sfn.start_execution(stateMachineArn=state_machine_arn, input=json.dumps(payload))
    return wait_for_execution(started["executionArn"])


def test_step_functions_retries_on_the_exception_class_name(stack: DeployedStack) -> None:
    calls: list[dict[str, Any]] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        if len(calls) == 1:
            raise ProviderUnavailable("try again")
        return {"ok": True, "remaining_ms": context.get_remaining_time_in_millis() > 0}

    poll = stack.function("PollJobStatusFunction")
    machine = _probe_state_machine(poll.function_name)
    with route_lambda_invokes({poll.function_name: flaky}):
        described = _run(machine, {"job": "j-1"})

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"ok": True, "remaining_ms": True}
    assert calls == [{"job": "j-1"}, {"job": "j-1"}]


def test_step_functions_catch_sees_the_exception_class_name(stack: DeployedStack) -> None:
    calls: list[dict[str, Any]] = []

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        raise Boom("it broke")

    poll = stack.function("PollJobStatusFunction")
    machine = _probe_state_machine(poll.function_name)
    with route_lambda_invokes({poll.function_name: broken}):
        described = _run(machine, {"job": "j-2"})

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["job"] == "j-2"
    assert output["error"]["Error"] == "Boom"
    cause = json.loads(output["error"]["Cause"])
    assert cause["errorType"] == "Boom"
    assert cause["errorMessage"] == "it broke"
    assert len(calls) == 1  # Boom matches no Retry


def test_step_functions_retries_exhausted_then_caught(stack: DeployedStack) -> None:
    calls: list[dict[str, Any]] = []

    def down(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        raise ProviderUnavailable("still down")

    poll = stack.function("PollJobStatusFunction")
    machine = _probe_state_machine(poll.function_name)
    with route_lambda_invokes({poll.function_name: down}):
        described = _run(machine, {"job": "j-3"})

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["error"]["Error"] == "ProviderUnavailable"
    assert len(calls) == 3  # the first attempt and MaxAttempts (2) retries


def test_event_invoke_runs_the_handler_in_the_background(stack: DeployedStack) -> None:
    seen: list[Any] = []
    done = threading.Event()

    def handler(event: Any, context: Any) -> None:
        seen.append(event)
        done.set()

    publish = stack.function("PublishOutcomeFunction")
    with route_lambda_invokes({publish.function_name: handler}):
        response = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName=publish.function_name, InvocationType="Event", Payload=b'{"a": 1}'
        )
        assert done.wait(10)
    assert response["StatusCode"] == 202
    assert seen == [{"a": 1}]


def test_unrouted_function_fails_like_a_missing_handler(stack: DeployedStack) -> None:
    publish = stack.function("PublishOutcomeFunction")
    with route_lambda_invokes({}):
        response = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName=publish.function_name, Payload=b"{}"
        )
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "Runtime.HandlerNotFound"


def test_each_function_environment_holds_what_its_handler_requires(stack: DeployedStack) -> None:
    """Each function runs alone on AWS: its own environment must carry its settings."""
    from jobrelay.settings import FUNCTION_SETTINGS, read_settings

    for logical_id, model in FUNCTION_SETTINGS.items():
        spec = stack.function(logical_id)
        read_settings(model, spec.environment)
