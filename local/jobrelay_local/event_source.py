"""Lambda's SQS event source mapping, emulated: batches, partial batch failures, records left
on the queue for its visibility timeout and redrive policy to handle, and at most
`ScalingConfig.MaximumConcurrency` invocations at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from jobrelay_local.deployment import FunctionSpec
from jobrelay_local.lambdas import FakeLambdaContext, Handler


@dataclass(frozen=True)
class Delivery:
    """One invoke of the function with a batch, and what came of it."""

    messages: list[dict[str, Any]]
    result: Any
    """What the function returned (`{"batchItemFailures": [...]}`); None if it raised."""
    error: str | None = None
    """`Type: message` of the exception the function raised (the whole batch went back)."""


@dataclass
class SqsEventSource:
    """Feeds a function from a queue the way Lambda's SQS event source mapping does.

    Receives up to `batch_size` messages (waiting up to the batching window to fill a batch),
    invokes the handler with a Lambda SQS event, deletes the records that succeeded, and leaves
    the records named in `batchItemFailures` (or the whole batch, if the invoke failed) on the
    queue: they come back after the visibility timeout, and the queue's redrive policy moves
    them to the DLQ after `maxReceiveCount` receives.

    Started, it runs at most `maximum_concurrency` invocations at once, as the mapping's
    `ScalingConfig.MaximumConcurrency` bounds Lambda's: a batch is received only when an
    invocation may start, so no message waits out its visibility timeout in the poller.
    `peak_in_flight` is the most that ran at once.
    """

    queue_url: str
    queue_arn: str
    handler: Handler
    spec: FunctionSpec
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    report_batch_item_failures: bool = True
    maximum_concurrency: int = 1
    invocations: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _counts: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.sqs = boto3.client("sqs")
        self.region = self.sqs.meta.region_name

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqs-event-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop receiving; invocations under way finish first (for up to 10 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        slots = threading.BoundedSemaphore(max(1, self.maximum_concurrency))
        invokes: list[threading.Thread] = []
        while not self._stop.is_set():
            if not slots.acquire(timeout=0.1):
                continue
            try:
                messages = self.receive_batch()
            except Exception as exc:  # keep polling, as the managed poller does
                slots.release()
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.5)
                continue
            if not messages:
                slots.release()
                self._stop.wait(0.1)
                continue
            invoke = threading.Thread(
                target=self._deliver_then_free,
                args=(messages, slots),
                name="sqs-event-source-invoke",
                daemon=True,
            )
            invoke.start()
            invokes = [thread for thread in invokes if thread.is_alive()] + [invoke]
        deadline = time.monotonic() + 10
        for thread in invokes:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _deliver_then_free(
        self, messages: list[dict[str, Any]], slots: threading.BoundedSemaphore
    ) -> None:
        try:
            self.deliver(messages)
        except Exception as exc:  # deleting the handled records failed: they come back
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()

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

    def poll_once(self) -> Delivery | None:
        """Receive one batch and deliver it; None when the queue had nothing."""
        messages = self.receive_batch()
        if not messages:
            return None
        return self.deliver(messages)

    def deliver(self, messages: list[dict[str, Any]]) -> Delivery:
        """Invoke the function with these received messages; delete the ones it handled."""
        event = {"Records": [self.lambda_record(m) for m in messages]}
        context = FakeLambdaContext(
            function_name=self.spec.function_name,
            invoked_function_arn=self.spec.function_arn,
            memory_limit_in_mb=self.spec.memory_size,
            timeout_seconds=self.spec.timeout,
        )
        with self._counts:
            self.invocations += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            result = self.handler(event, context)
        except Exception as exc:
            # A failed invoke returns the whole batch to the queue.
            error = f"{type(exc).__name__}: {exc}"
            self.errors.append(error)
            return Delivery(messages=messages, result=None, error=error)
        finally:
            with self._counts:
                self.in_flight -= 1
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
        return Delivery(messages=messages, result=result)

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
