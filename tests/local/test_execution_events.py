"""Step Functions' execution status-change events in the local stack: a small template with a
state machine and a function on an EventBridge rule, deployed into moto, its executions
ended every way, and the events a handler of the test's own receives."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from jobrelay_local.config import MOTO_CONFIG
from jobrelay_local.deploy import deploy
from jobrelay_local.deployment import DeployedStack
from jobrelay_local.execution_events import ExecutionEvents
from moto import mock_aws

# The module shares its two deployments: under pytest-xdist its tests stay on one worker.
pytestmark = pytest.mark.xdist_group("execution_events")

REGION = "us-east-1"
FAST_RETRIES = (0.1, 0.2)

# "wait" waits longer than the machine's TimeoutSeconds, so it ends stopped or timed out.
# The timeout leaves a stop test room to stop first, even on a loaded machine.
TIMEOUT_SECONDS = 4
DEFINITION = {
    "StartAt": "Route",
    "TimeoutSeconds": TIMEOUT_SECONDS,
    "States": {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.action", "StringEquals": "fail", "Next": "Fail"},
                {"Variable": "$.action", "StringEquals": "wait", "Next": "Wait"},
            ],
            "Default": "Done",
        },
        "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
        "Fail": {"Type": "Fail", "Error": "ProviderRejected", "Cause": "bad pipeline"},
        "Done": {"Type": "Succeed"},
    },
}

TEMPLATE = f"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Tracker:
    Type: AWS::Serverless::StateMachine
    Properties:
      Type: STANDARD
      Definition: {json.dumps(DEFINITION)}
  Other:
    Type: AWS::Serverless::StateMachine
    Properties:
      Type: STANDARD
      Definition: {json.dumps(DEFINITION)}
  TrackerEndedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.lambda_handler
      Runtime: python3.12
      DeadLetterQueue:
        Type: SQS
        TargetArn: !GetAtt EndedDLQ.Arn
      Events:
        TrackerEnded:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.states]
              detail-type: [Step Functions Execution Status Change]
              detail:
                status: [ABORTED, FAILED, TIMED_OUT]
                stateMachineArn: [!Ref Tracker]
            RetryPolicy: {{MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 3600}}
            DeadLetterConfig: {{Type: SQS}}
  EndedDLQ:
    Type: AWS::SQS::Queue
"""


class Recorder:
    """The test's handler: keeps every event it is invoked with; fails while told to."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []
        self.failures_left: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        with self.lock:
            self.invocations.append(event)
            name = event["detail"]["name"]
            if self.failures_left.get(name, 0) > 0:
                self.failures_left[name] -= 1
                raise RuntimeError(f"handler failed on {name}")

    def of(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.invocations if e["detail"]["name"] == name]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto as `jobrelay up` runs it: a threaded server in this process, over loopback."""
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    for service, settings in MOTO_CONFIG.items():
        monkeypatch.setitem(default_user_config, service, settings)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        yield
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["in-process", "server"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedStack]:
    root = tmp_path_factory.mktemp("ended")
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text("def lambda_handler(event, context):\n    return None\n")
    (root / "template.yaml").write_text(TEMPLATE)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        moto = mock_aws(config=MOTO_CONFIG) if request.param == "in-process" else None
        with moto or moto_server(monkeypatch):
            yield deploy(template_path=root / "template.yaml", stack_name="ended")


@pytest.fixture
def recorder(stack: DeployedStack) -> Iterator[Recorder]:
    recorder = Recorder()
    spec = stack.function("TrackerEndedFunction")
    events = ExecutionEvents(
        stack.functions.values(), {spec.function_name: recorder}, retry_delays=FAST_RETRIES
    )
    events.start()
    yield recorder
    events.stop()


def execution_name(action: str) -> str:
    return f"{action}-{uuid.uuid4().hex[:8]}"


def start(
    stack: DeployedStack, action: str, machine: str = "Tracker", name: str | None = None
) -> tuple[str, str]:
    name = name or execution_name(action)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    started = sfn.start_execution(
        stateMachineArn=stack.state_machines[machine],
        name=name,
        input=json.dumps({"action": action, "request_id": name}),
    )
    return name, started["executionArn"]


def wait_for(recorder: Recorder, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(recorder.of(name)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return recorder.of(name)


def waiting(execution_arn: str, timeout: float = 5.0) -> None:
    """Until the execution is in its Wait state: moto's interpreter cannot stop an execution
    it has not begun to run (its stop fails), and a real tracker is stopped while waiting."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=execution_arn)["events"]
        if any(e["type"] == "WaitStateEntered" for e in events):
            return
        time.sleep(0.02)
    raise AssertionError(f"{execution_arn} did not reach its wait")


def wait_until_ended(execution_arn: str, timeout: float = 5.0) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout
    while True:
        described: Any = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(described)
        time.sleep(0.02)


def test_spec_keeps_the_rule_pattern_and_target_settings_from_the_template(
    stack: DeployedStack,
) -> None:
    spec = stack.function("TrackerEndedFunction")

    (rule,) = spec.event_rules
    assert rule.pattern == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": ["ABORTED", "FAILED", "TIMED_OUT"],
            "stateMachineArn": [stack.state_machines["Tracker"]],
        },
    }
    assert (rule.maximum_retry_attempts, rule.maximum_event_age_seconds) == (4, 3600)
    assert rule.dead_letter_arn is not None
    assert spec.async_invoke.maximum_retry_attempts == 2
    assert spec.async_invoke.dead_letter_arn is not None
    assert spec.async_invoke.dead_letter_arn.endswith(stack.resources["EndedDLQ"].rsplit("/")[-1])


def test_stopped_execution_is_delivered_once_as_step_functions_sends_it(
    stack: DeployedStack, recorder: Recorder
) -> None:
    # Given a tracker execution waiting
    name, arn = start(stack, "wait")
    waiting(arn)
    # When an operator stops it
    boto3.client("stepfunctions", region_name=REGION).stop_execution(executionArn=arn)

    # Then the handler gets one ABORTED event with the execution's details
    (event,) = wait_for(recorder, name)
    described = wait_until_ended(arn)
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["version"] == "0"
    assert event["source"] == "aws.states"
    assert event["detail-type"] == "Step Functions Execution Status Change"
    assert (event["account"], event["region"]) == (stack.account_id, REGION)
    assert event["resources"] == [arn]
    assert event["time"].endswith("Z")
    detail = event["detail"]
    assert detail["executionArn"] == arn
    assert detail["stateMachineArn"] == stack.state_machines["Tracker"]
    assert (detail["name"], detail["status"]) == (name, "ABORTED")
    assert json.loads(detail["input"]) == {"action": "wait", "request_id": name}
    assert detail["inputDetails"] == {"included": True}
    assert (detail["output"], detail["outputDetails"]) == (None, None)
    # moto's StopExecution keeps no error or cause: delivered as moto has them.
    assert (detail["error"], detail["cause"]) == (None, None)
    assert detail["startDate"] == int(described["startDate"].timestamp() * 1000)
    assert detail["stopDate"] >= detail["startDate"]
    time.sleep(0.3)
    assert len(recorder.of(name)) == 1


def test_failed_execution_is_delivered_with_its_error_and_cause(
    stack: DeployedStack, recorder: Recorder
) -> None:
    name, _ = start(stack, "fail")

    (event,) = wait_for(recorder, name)

    detail = event["detail"]
    assert detail["status"] == "FAILED"
    assert (detail["error"], detail["cause"]) == ("ProviderRejected", "bad pipeline")


def test_timed_out_execution_is_delivered(stack: DeployedStack, recorder: Recorder) -> None:
    # Given an execution that outlasts the machine's TimeoutSeconds
    name, _ = start(stack, "wait")

    (event,) = wait_for(recorder, name, timeout=TIMEOUT_SECONDS + 10.0)

    assert event["detail"]["status"] == "TIMED_OUT"


def test_succeeded_execution_is_not_delivered(stack: DeployedStack, recorder: Recorder) -> None:
    name, arn = start(stack, "done")

    assert wait_until_ended(arn)["status"] == "SUCCEEDED"
    time.sleep(0.3)

    assert recorder.of(name) == []


def test_execution_of_a_machine_the_pattern_does_not_name_is_not_delivered(
    stack: DeployedStack, recorder: Recorder
) -> None:
    name, arn = start(stack, "fail", machine="Other")

    assert wait_until_ended(arn)["status"] == "FAILED"
    time.sleep(0.3)

    assert recorder.of(name) == []


def test_handler_failing_once_gets_the_same_event_again_and_handles_it_once(
    stack: DeployedStack, recorder: Recorder
) -> None:
    # Given a handler that fails on the first delivery
    name = execution_name("fail")
    recorder.failures_left[name] = 1
    # When a tracker execution fails
    start(stack, "fail", name=name)

    # Then the same event comes again, and once more only
    first, second = wait_for(recorder, name, count=2)
    time.sleep(0.5)

    assert first == second
    assert len(recorder.of(name)) == 2


def received_from(queue_arn: str, execution_arn: str) -> list[Any]:
    """The messages of a queue whose body is the event of this execution (left in place)."""
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MessageAttributeNames=["All"],
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
        ).get("Messages", [])
        found = [
            m for m in messages if json.loads(m["Body"])["detail"]["executionArn"] == execution_arn
        ]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_handler_failing_every_time_leaves_the_event_in_the_function_dlq(
    stack: DeployedStack, recorder: Recorder
) -> None:
    # Given a handler that fails on every delivery
    name = execution_name("fail")
    recorder.failures_left[name] = 99
    # When a tracker execution fails
    _, arn = start(stack, "fail", name=name)

    # Then Lambda's two retries follow the first invoke, and the event is in the function's DLQ
    attempts = wait_for(recorder, name, count=3)
    dead_letter_arn = stack.function("TrackerEndedFunction").async_invoke.dead_letter_arn
    assert dead_letter_arn is not None
    (message,) = received_from(dead_letter_arn, arn)
    assert len(attempts) == 3
    assert json.loads(message["Body"]) == attempts[0]
    assert "handler failed" in message["MessageAttributes"]["ErrorMessage"]["StringValue"]


def test_event_for_a_function_without_handler_goes_to_the_rule_dlq(
    stack: DeployedStack,
) -> None:
    # Given a function whose code could not be loaded
    events = ExecutionEvents(stack.functions.values(), {}, retry_delays=FAST_RETRIES)
    events.start()
    try:
        # When a tracker execution fails
        _, arn = start(stack, "fail")

        # Then the event is in the rule's dead-letter queue, naming the rule and target
        (rule,) = stack.function("TrackerEndedFunction").event_rules
        assert rule.dead_letter_arn is not None
        (message,) = received_from(rule.dead_letter_arn, arn)
    finally:
        events.stop()
    attributes = message["MessageAttributes"]
    assert attributes["RULE_ARN"]["StringValue"] == rule.arn
    assert attributes["ERROR_CODE"]["StringValue"] == "ResourceNotFoundException"


def test_a_stop_waits_for_an_execution_whose_interpreter_has_not_begun() -> None:
    # moto lists an execution RUNNING before its worker thread has made its environment;
    # a StopExecution in that moment used to fail inside moto ('NoneType' ... 'set_stop').
    from unittest import mock

    from jobrelay_local.execution_events import stop_waits_for_start
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    worker = ExecutionWorker.__new__(ExecutionWorker)
    worker.env = None
    environment = mock.Mock()
    at = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)

    def begin() -> None:
        time.sleep(0.05)
        worker.env = environment

    with stop_waits_for_start():
        threading.Thread(target=begin).start()
        ExecutionWorker.stop(worker, stop_date=at, error="ops", cause="maintenance")
    environment.set_stop.assert_called_once_with(stop_date=at, cause="maintenance", error="ops")


def test_a_stopped_execution_stays_stopped_when_its_task_then_fails() -> None:
    # moto's interpreter, stopped mid-task, fails on the task's skipped steps; that failure
    # used to replace the stop (the execution ended FAILED, not ABORTED).
    from jobrelay_local.execution_events import stop_waits_for_start
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import (
        ProgramError,
        ProgramRunning,
        ProgramStopped,
    )

    def environment(state: Any) -> Environment:
        env: Any = Environment.__new__(Environment)
        env._program_state = state
        env._state_mutex = threading.RLock()
        env._frames = []
        env.program_state_event = threading.Event()
        return cast(Environment, env)

    at = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    failure: Any = {"error": "States.Runtime", "cause": "'dict' object has no attribute 'region'"}
    with stop_waits_for_start():
        stopped = environment(ProgramStopped(stop_date=at, cause="maintenance", error="ops"))
        Environment.set_error(stopped, failure)
        running = environment(ProgramRunning())
        Environment.set_error(running, failure)
    assert isinstance(stopped.program_state(), ProgramStopped)
    assert isinstance(running.program_state(), ProgramError)
