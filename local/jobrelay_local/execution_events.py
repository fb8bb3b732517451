"""Step Functions' execution status-change events, which moto does not emit: built as AWS
sends them when an execution ends, matched against the functions' EventBridge rules and
delivered to their handlers as Lambda's asynchronous invokes."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from unittest import mock

import boto3

from jobrelay_local.deployment import EventRule, FunctionSpec
from jobrelay_local.lambdas import FakeLambdaContext, Handler

LOG = logging.getLogger(__name__)
DETAIL_TYPE = "Step Functions Execution Status Change"
# Lambda waits one minute, then two, between the attempts of an asynchronous invoke that
# failed (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html);
# locally a second, then two, so a retried handler is seen within a test.
LOCAL_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0)


def _epoch_ms(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def status_change_event(execution: Any) -> dict[str, Any]:
    """The EventBridge event of a moto execution's current status, as Step Functions sends it
    (https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html).

    `error` and `cause` are what moto kept: a `StopExecution` keeps neither (both None).
    """
    listed = execution.to_execution_list_item()
    succeeded = execution.status == "SUCCEEDED"
    stop_date: datetime.datetime | None = execution.stop_date
    moment = stop_date or datetime.datetime.now(tz=datetime.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.states",
        "account": execution.account_id,
        "time": moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [execution.exec_arn],
        "detail": {
            "executionArn": execution.exec_arn,
            "stateMachineArn": listed["stateMachineArn"],
            "stateMachineVersionArn": listed.get("stateMachineVersionArn"),
            "stateMachineAliasArn": None,
            "name": execution.name,
            "status": execution.status,
            "startDate": _epoch_ms(execution.start_date),
            "stopDate": _epoch_ms(stop_date),
            "input": execution.execution_input,
            "inputDetails": {"included": True},
            "output": json.dumps(execution.output, separators=(",", ":")) if succeeded else None,
            "outputDetails": {"included": True} if succeeded else None,
            "error": execution.error,
            "cause": execution.cause,
        },
    }


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether an EventBridge event pattern matches the event (moto's matcher)."""
    from moto.events.models import EventPattern
    from moto.events.utils import EventMessageType

    message = cast(EventMessageType, dict(event))
    return bool(EventPattern(None, dict(pattern)).matches_event(message))


@dataclass(frozen=True)
class Target:
    """One function an event goes to, through one of its rules."""

    spec: FunctionSpec
    rule: EventRule
    handler: Handler | None


@contextlib.contextmanager
def stop_waits_for_start(timeout: float = 5.0) -> Iterator[None]:
    """Let StopExecution stop an execution whose interpreter thread has not begun yet.

    moto lists an execution as RUNNING as soon as StartExecution returns, but its worker
    thread sets up the evaluation environment a moment later, and a StopExecution in
    between fails inside moto (`'NoneType' object has no attribute 'set_stop'`, a 500). On
    AWS a just-started execution can be stopped, so a stop waits here for that thread.

    And a stopped execution stays stopped: moto's interpreter, stopped in the middle of a
    task, skips the rest of the task's steps and then fails on what they left undone
    (`States.Runtime`, "'dict' object has no attribute 'region'"), and its `set_error`
    replaced the stop, so the execution ended FAILED instead of ABORTED.
    """
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    stop = ExecutionWorker.stop

    def stop_once_started(
        worker: ExecutionWorker, stop_date: Any, error: str | None, cause: str | None
    ) -> None:
        deadline = time.monotonic() + timeout
        while worker.env is None and time.monotonic() < deadline:
            time.sleep(0.005)
        stop(worker, stop_date=stop_date, error=error, cause=cause)

    set_error = Environment.set_error

    def set_error_unless_stopped(env: Environment, error: Any) -> None:
        if isinstance(env.program_state(), ProgramStopped):
            return
        set_error(env, error)

    with (
        mock.patch.object(ExecutionWorker, "stop", stop_once_started),
        mock.patch.object(Environment, "set_error", set_error_unless_stopped),
    ):
        yield


class ExecutionEvents:
    """Delivers the events of ended Standard executions to the functions whose rules match.

    moto's interpreter calls `BaseExecutionWorkerCommunication.terminated` once an execution
    has ended and its status is set (succeeded, failed, timed out or stopped); `start` wraps
    it, in-process and in the threaded moto server alike, so an event leaves within
    milliseconds of the status change. Each execution is delivered once.

    Delivery is Lambda's asynchronous invoke, as EventBridge uses it: EventBridge hands the
    event over (here it always can, unless no handler is loaded: then straight to the rule's
    dead-letter queue, a non-retriable error for EventBridge), and Lambda retries a function
    error `AsyncInvokeConfig.maximum_retry_attempts` times, then sends the event to the
    function's on-failure destination or dead-letter queue, or drops it with a log line.
    The rule's RetryPolicy covers the hand-over only, so it never applies here. The
    handlers run with the environment `apply_environment` put in place for every function.
    """

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        handlers: Mapping[str, Handler],
        *,
        retry_delays: Sequence[float] = LOCAL_RETRY_DELAYS,
    ) -> None:
        self.targets = [
            Target(spec=spec, rule=rule, handler=handlers.get(spec.function_name))
            for spec in functions
            for rule in spec.event_rules
            if rule.enabled
        ]
        self.retry_delays = tuple(retry_delays) or (0.0,)
        self._delivered: set[tuple[str, Any]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._exit = contextlib.ExitStack()

    def start(self) -> None:
        """Watch moto's executions (nothing to do when no function has a rule)."""
        self._exit.enter_context(stop_waits_for_start())
        if not self.targets:
            return
        self._exit.enter_context(self._hooked())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop noticing executions, abandon pending retries, wait for handlers running (a
        handler left running would act on whatever stack comes next)."""
        self._exit.close()
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                LOG.warning("an execution event's handler still runs %.0f s after stop", timeout)

    @contextlib.contextmanager
    def _hooked(self) -> Iterator[None]:
        from moto.stepfunctions.parser.backend.execution import (
            BaseExecutionWorkerCommunication,
        )

        terminated = BaseExecutionWorkerCommunication.terminated
        watcher = self

        def terminated_and_announced(comm: BaseExecutionWorkerCommunication) -> None:
            terminated(comm)
            try:
                watcher.ended(comm.execution)
            except Exception:  # never break moto's worker thread
                LOG.exception("execution status-change event not delivered")

        with mock.patch.object(
            BaseExecutionWorkerCommunication, "terminated", terminated_and_announced
        ):
            yield

    def ended(self, execution: Any) -> None:
        """An execution has ended: send its event to every target whose rule matches."""
        if execution.sm_type == "EXPRESS":  # Express workflows emit no such events
            return
        # The start date too: moto 5.2.5 names an execution started without a name "None",
        # so such executions share one ARN.
        key = (execution.exec_arn, execution.start_date)
        with self._lock:
            if key in self._delivered or self._stopping.is_set():
                return
            self._delivered.add(key)
        event = status_change_event(execution)
        for target in self.targets:
            if not matches(target.rule.pattern, event):
                continue
            thread = threading.Thread(
                target=self._deliver,
                args=(target, event),
                name=f"execution-event-{target.spec.function_name}",
                daemon=True,
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _deliver(self, target: Target, event: dict[str, Any]) -> None:
        if target.handler is None:
            self._dead_letter_from_rule(target, event, "no handler is loaded for the function")
            return
        config = target.spec.async_invoke
        received = time.monotonic()
        request_id = str(uuid.uuid4())
        attempts = 1 + config.maximum_retry_attempts
        error, condition = "", "RetriesExhausted"
        for attempt in range(1, attempts + 1):
            context = FakeLambdaContext(
                function_name=target.spec.function_name,
                invoked_function_arn=target.spec.function_arn,
                memory_limit_in_mb=target.spec.memory_size,
                timeout_seconds=target.spec.timeout,
                aws_request_id=request_id,
            )
            try:
                target.handler(event, context)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                LOG.warning(
                    "function error on an execution event; attempt %d of %d: %s",
                    attempt,
                    attempts,
                    error,
                )
            else:
                return
            if attempt == attempts:
                break
            delay = self.retry_delays[min(attempt, len(self.retry_delays)) - 1]
            if time.monotonic() - received + delay > config.maximum_event_age_seconds:
                condition = "EventAgeExceeded"
                break
            if self._stopping.wait(delay):
                LOG.warning(
                    "execution event abandoned: the local stack stopped before its retry (%s)",
                    event["detail"]["executionArn"],
                )
                return
        self._dead_letter_from_function(target, event, request_id, error, attempt, condition)

    def _dead_letter_from_function(
        self,
        target: Target,
        event: dict[str, Any],
        request_id: str,
        error: str,
        attempts: int,
        condition: str,
    ) -> None:
        config = target.spec.async_invoke
        if config.on_failure_arn and ":sqs:" in config.on_failure_arn:
            # The invocation record Lambda sends to an on-failure destination.
            record = {
                "version": "1.0",
                "timestamp": datetime.datetime.now(tz=datetime.UTC).isoformat(),
                "requestContext": {
                    "requestId": request_id,
                    "functionArn": f"{target.spec.function_arn}:$LATEST",
                    "condition": condition,
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "responsePayload": {"errorMessage": error},
            }
            _send(config.on_failure_arn, json.dumps(record), {})
        elif config.dead_letter_arn and ":sqs:" in config.dead_letter_arn:
            # Lambda's attributes on a dead-lettered event: the error's first kilobyte.
            attributes = {
                "RequestID": request_id,
                "ErrorCode": "200",
                "ErrorMessage": error[:1024],
            }
            _send(config.dead_letter_arn, json.dumps(event), attributes)
        else:
            LOG.error(
                "execution event dropped (%s) after %d attempts (%s): %s for %s",
                condition,
                attempts,
                target.spec.function_name,
                error,
                event["detail"]["executionArn"],
            )

    def _dead_letter_from_rule(self, target: Target, event: dict[str, Any], error: str) -> None:
        if target.rule.dead_letter_arn:
            # The message attributes EventBridge puts on a dead-lettered event.
            attributes = {
                "RULE_ARN": target.rule.arn,
                "TARGET_ARN": target.spec.function_arn,
                "ERROR_CODE": "ResourceNotFoundException",
                "ERROR_MESSAGE": error,
            }
            _send(target.rule.dead_letter_arn, json.dumps(event), attributes)
        else:
            LOG.error("execution event dropped (%s): %s", target.rule.name, error)


def _send(queue_arn: str, body: str, attributes: Mapping[str, str]) -> None:
    _, _, _, region, owner, name = queue_arn.split(":", 5)
    sqs = boto3.client("sqs", region_name=region)
    queue_url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=owner)["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={
            key: {"DataType": "String", "StringValue": value} for key, value in attributes.items()
        },
    )
