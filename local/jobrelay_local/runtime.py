"""The local stack: the whole of jobrelay on one machine, no AWS account.

AWS runs in-process in moto (or as a moto server other processes can call); the resources
come from `template.yaml`; the real state machine definition is executed by moto's Step
Functions interpreter; Lambda invokes reach the real handlers in this process; CreateJob is
fed from the queue by `SqsEventSource`, which behaves like Lambda's event source mapping;
providers are the loopback emulators unless `JOBRELAY_<NAME>_BASE_URL` points elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import boto3
from moto.core.config import DefaultConfig

from jobrelay_local.stack import (
    DeployedStack,
    FakeLambdaContext,
    FunctionSpec,
    Handler,
    apply_environment,
    create_provider_secrets,
    deploy,
    load_handler,
    route_lambda_invokes,
)

MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
PROVIDER_NAMES = ("deepset", "pixxel", "matatika")
BASE_URL_PARAMETERS = {
    "deepset": "DeepsetBaseUrl",
    "pixxel": "PixxelBaseUrl",
    "matatika": "MatatikaBaseUrl",
}
# Fast defaults for a laptop: poll every 2 s, give up on a job after 10 minutes. Each can be
# overridden with JOBRELAY_<PARAMETER> (e.g. JOBRELAY_POLL_INTERVAL_SECONDS=5).
LOCAL_PARAMETERS = {
    "PollIntervalSeconds": "2",
    "FirstPollSeconds": "1",
    "DefaultDeadlineSeconds": "600",
    "ProviderOutageWaitSeconds": "3",
    "CreateJobBatchingWindowSeconds": "0",
}
LOCAL_ENV_OVERRIDES = {
    "JOBRELAY_POLL_INTERVAL_SECONDS": "PollIntervalSeconds",
    "JOBRELAY_FIRST_POLL_SECONDS": "FirstPollSeconds",
    "JOBRELAY_DEFAULT_DEADLINE_SECONDS": "DefaultDeadlineSeconds",
    "JOBRELAY_PROVIDER_OUTAGE_WAIT_SECONDS": "ProviderOutageWaitSeconds",
    "JOBRELAY_MAX_RECEIVE_COUNT": "MaxReceiveCount",
}
# The template's visibility timeout (6x CreateJob's timeout) is right on AWS but makes a
# local retry wait six minutes; the local stack shortens it (JOBRELAY_VISIBILITY_TIMEOUT).
LOCAL_VISIBILITY_TIMEOUT = 3


def ensure_fake_aws_environment() -> None:
    """Credentials and region for moto; never real ones (setdefault keeps a caller's fakes)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Make moto's DynamoDB conditional writes atomic, as DynamoDB's are.

    moto evaluates a ConditionExpression and writes in two steps without a lock, so two
    threads can both pass `attribute_not_exists(id)`. Idempotency (ours and Powertools')
    relies on exactly that check, so the local stack serializes writes per backend.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {
        name: getattr(DynamoDBBackend, name)
        for name in ("put_item", "update_item", "delete_item", "transact_write_items")
    }

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


# ------------------------------------------------------------------ the event source mapping
@dataclass
class SqsEventSource:
    """Feeds a function from a queue the way Lambda's SQS event source mapping does.

    Receives up to `batch_size` messages (waiting up to the batching window to fill a batch),
    invokes the handler with a Lambda SQS event, deletes the records that succeeded, and leaves
    the records named in `batchItemFailures` (or the whole batch, if the invoke failed) on the
    queue: they come back after the visibility timeout, and the queue's redrive policy moves
    them to the DLQ after `maxReceiveCount` receives.
    """

    queue_url: str
    queue_arn: str
    handler: Handler
    spec: FunctionSpec
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    report_batch_item_failures: bool = True
    invocations: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sqs = boto3.client("sqs")
        self.region = self.sqs.meta.region_name

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqs-event-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.poll_once():
                    self._stop.wait(0.1)
            except Exception as exc:  # keep polling, as the managed poller does
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.5)

    def receive_batch(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.batching_window_seconds
        while len(messages) < self.batch_size:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = answer.get("Messages", [])
            messages.extend(received)  # type: ignore[arg-type]
            if not received and time.monotonic() >= deadline:
                break
            if not received:
                time.sleep(0.05)
        return messages

    def poll_once(self) -> bool:
        """Receive one batch and deliver it; False when the queue had nothing."""
        messages = self.receive_batch()
        if not messages:
            return False
        event = {"Records": [self.lambda_record(m) for m in messages]}
        context = FakeLambdaContext(
            function_name=self.spec.function_name,
            invoked_function_arn=self.spec.function_arn,
            memory_limit_in_mb=self.spec.memory_size,
            timeout_seconds=self.spec.timeout,
        )
        self.invocations += 1
        try:
            result = self.handler(event, context)
        except Exception as exc:
            # A failed invoke returns the whole batch to the queue.
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return True
        failed = {
            item["itemIdentifier"]
            for item in (result or {}).get("batchItemFailures", [])
            if self.report_batch_item_failures
        }
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        return True

    def lambda_record(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The SQS message as Lambda hands it to the function: one record of the event."""
        attributes = {
            key[0].lower() + key[1:]: value for key, value in message.get("Attributes", {}).items()
        }
        message_attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("approximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("sentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attributes.get("senderId", "local"),
                "ApproximateFirstReceiveTimestamp": attributes.get(
                    "approximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
            },
            "messageAttributes": message_attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }


# ------------------------------------------------------------------ the outcome sink
class EventSink:
    """A queue subscribed to the JobEvents topic (raw delivery): what subscribers receive."""

    def __init__(self, topic_arn: str, name: str = "jobrelay-local-events") -> None:
        self.sqs = boto3.client("sqs")
        self.sns = boto3.client("sns")
        self.queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []

    def drain(self) -> list[dict[str, Any]]:
        """Move what arrived into `events`; returns the new events, in arrival order."""
        new: list[dict[str, Any]] = []
        with self._lock:
            while True:
                answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
                messages = answer.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    self.raw.append(message["Body"])
                    new.append(json.loads(message["Body"]))
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            self.events.extend(new)
        return new


# ------------------------------------------------------------------ the stack
class LocalStack:
    """Start, use and stop the whole system in this process.

    `LocalStack().start()` needs nothing but this project: it starts the emulators, moto, the
    template's resources, the handlers and the queue poller. Use `with LocalStack() as stack:`.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, str] | None = None,
        provider_urls: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
        server_port: int | None = None,
        aws_endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        visibility_timeout: int | None = None,
        feed_queue: bool = True,
        log_file: Path | None = None,
        metrics_file: Path | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.parameters = dict(LOCAL_PARAMETERS)
        for variable, parameter in LOCAL_ENV_OVERRIDES.items():
            if env.get(variable):
                self.parameters[parameter] = env[variable]
        self.parameters.update(parameters or {})
        self.provider_urls = {
            name: env[f"JOBRELAY_{name.upper()}_BASE_URL"]
            for name in PROVIDER_NAMES
            if env.get(f"JOBRELAY_{name.upper()}_BASE_URL")
        }
        self.provider_urls.update(provider_urls or {})
        self.api_keys = {
            name: env[f"JOBRELAY_{name.upper()}_API_KEY"]
            for name in PROVIDER_NAMES
            if env.get(f"JOBRELAY_{name.upper()}_API_KEY")
        }
        self.api_keys.update(api_keys or {})
        self.server_port = server_port
        # AWS served elsewhere (a moto server in a process of its own, as the CreateJob bench
        # uses): nothing of moto runs here, so Step Functions' Lambda tasks there do not reach
        # the handlers in this process, and DynamoDB writes are as atomic as that server makes
        # them.
        self.aws_endpoint = aws_endpoint
        self.feed_queue = feed_queue
        self.log_file = log_file
        self.metrics_file = metrics_file
        self.visibility_timeout = visibility_timeout or int(
            env.get("JOBRELAY_VISIBILITY_TIMEOUT", LOCAL_VISIBILITY_TIMEOUT)
        )
        self.emulators: dict[str, Any] = {}
        self._exit = ExitStack()
        self.stack: DeployedStack | None = None
        self.source: SqsEventSource | None = None
        self.sink: EventSink | None = None
        self.handlers: dict[str, Handler] = {}
        self.endpoint_url: str | None = None

    # -- lifecycle
    def start(self) -> Self:
        ensure_fake_aws_environment()
        try:
            self._start_aws()
            self._start_emulators()
            self._deploy()
            self._start_runtime()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        if self.aws_endpoint is not None:
            self.endpoint_url = self.aws_endpoint
            os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
            return
        self._exit.enter_context(atomic_dynamodb_writes())
        if self.server_port is None:
            from moto import mock_aws

            mock = mock_aws(config=MOTO_CONFIG)
            mock.start()
            self._exit.callback(mock.stop)
            return
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        default_user_config.update(MOTO_CONFIG)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.server_port)
        server.start()
        self._exit.callback(server.stop)
        self.endpoint_url = f"http://127.0.0.1:{self.server_port}"
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        # moto's Step Functions calls Lambda back at localhost:$MOTO_PORT (default 5000).
        os.environ["MOTO_PORT"] = str(self.server_port)

    def _start_emulators(self) -> None:
        from jobrelay_local.emulators import start_all

        missing = [name for name in PROVIDER_NAMES if name not in self.provider_urls]
        if not missing:
            return
        keys = {name: self.api_keys.get(name, f"local-{name}-key") for name in PROVIDER_NAMES}
        for name, keys_key in keys.items():
            self.api_keys.setdefault(name, keys_key)
        servers = start_all(api_keys=keys)
        for name, server in servers.items():
            self._exit.callback(server.stop)
            if name in missing:
                self.emulators[name] = server
                self.provider_urls[name] = server.url

    def _deploy(self) -> None:
        secrets = create_provider_secrets(self.api_keys)
        urls = {BASE_URL_PARAMETERS[name]: url for name, url in self.provider_urls.items()}
        self.stack = deploy(parameters={**self.parameters, **secrets, **urls})
        boto3.client("sqs").set_queue_attributes(
            QueueUrl=self.stack.queue_url,
            Attributes={"VisibilityTimeout": str(self.visibility_timeout)},
        )

    def _start_runtime(self) -> None:
        from jobrelay import wiring

        stack = self.require_stack()
        apply_environment(stack)
        wiring.reset()
        if self.log_file is not None:
            self._send_logs_to(self.log_file)
        if self.metrics_file is not None:
            # Powertools prints EMF metrics to stdout, as Lambda expects; locally they go to
            # a file so stdout stays the CLI's (outcome events).
            self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
            stream = self._exit.enter_context(self.metrics_file.open("a", encoding="utf-8"))
            self._exit.enter_context(redirect_stdout(stream))
        self.handlers = {
            spec.function_name: load_handler(spec) for spec in stack.functions.values()
        }
        self._exit.enter_context(route_lambda_invokes(self.handlers))
        self.sink = EventSink(stack.topic_arn)
        create = stack.function("CreateJobFunction")
        trigger = create.sqs_trigger
        self.source = SqsEventSource(
            queue_url=stack.queue_url,
            queue_arn=trigger.queue_arn if trigger else "",
            handler=self.handlers[create.function_name],
            spec=create,
            batch_size=trigger.batch_size if trigger else 10,
            batching_window_seconds=trigger.maximum_batching_window_seconds if trigger else 0,
            report_batch_item_failures=trigger.report_batch_item_failures if trigger else True,
        )
        if self.feed_queue:
            self.source.start()
            self._exit.callback(self.source.stop)

    def _send_logs_to(self, path: Path) -> None:
        """Write the functions' JSON log lines to a file instead of stdout (CLI, tests)."""
        from jobrelay.observability import logger

        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("a", encoding="utf-8")
        handler = logger.registered_handler
        previous = handler.setStream(stream)  # type: ignore[attr-defined]

        def restore() -> None:
            handler.setStream(previous)  # type: ignore[attr-defined]
            stream.close()

        self._exit.callback(restore)

    def stop(self) -> None:
        """Stop every part, in reverse order of starting (safe to call twice)."""
        self._exit.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use
    def require_stack(self) -> DeployedStack:
        if self.stack is None:
            raise RuntimeError("the local stack is not started")
        return self.stack

    def submit(self, request: Mapping[str, Any] | str, **attributes: str) -> str:
        """Send one request to the JobRequests queue; returns the SQS message id."""
        body = request if isinstance(request, str) else json.dumps(request)
        answer = boto3.client("sqs").send_message(
            QueueUrl=self.require_stack().queue_url, MessageBody=body
        )
        return answer["MessageId"]

    def events(self) -> list[dict[str, Any]]:
        """Every outcome event published so far."""
        if self.sink is None:
            return []
        self.sink.drain()
        return list(self.sink.events)

    def wait_for_outcomes(
        self,
        request_ids: Iterable[str],
        *,
        timeout: float = 120.0,
        on_tick: Callable[[], None] | None = None,
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Wait until each request id has an outcome event; returns (outcomes, still open)."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout
        outcomes: dict[str, dict[str, Any]] = {}
        while True:
            for event in self.events():
                request_id = event.get("data", {}).get("request_id")
                if request_id in wanted:
                    outcomes.setdefault(request_id, event)
            open_ids = wanted - outcomes.keys()
            if not open_ids or time.monotonic() >= deadline:
                return outcomes, open_ids
            if on_tick is not None:
                on_tick()
            time.sleep(0.2)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The DLQ's messages (received with a zero visibility timeout, left in place)."""
        sqs = boto3.client("sqs")
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(5):
            answer = sqs.receive_message(
                QueueUrl=self.require_stack().dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                VisibilityTimeout=0,
            )
            for message in answer.get("Messages", []):
                seen.setdefault(message["MessageId"], dict(message))
            if not answer.get("Messages"):
                break
        return list(seen.values())


def new_request_id(prefix: str = "local") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
