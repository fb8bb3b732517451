"""The local SQS event source as Lambda's mapping behaves: at most MaximumConcurrency
invocations at once, and messages sent with DelaySeconds delivered only once they are due."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from jobrelay_local.deployment import FunctionSpec
from jobrelay_local.event_source import SqsEventSource
from moto import mock_aws

from tests.local.conftest import wait_until

pytestmark = pytest.mark.integration

REGION = "us-east-1"
SPEC = FunctionSpec(
    logical_id="CreateJobFunction",
    function_name="create-job",
    function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:create-job",
    code_dir=Path("."),
    handler="app.lambda_handler",
    environment={},
    timeout=60,
    memory_size=128,
)


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        yield sqs, url


def source_for(url: str, handler: Any, **options: Any) -> SqsEventSource:
    return SqsEventSource(
        queue_url=url,
        queue_arn=f"arn:aws:sqs:{REGION}:123456789012:jobs",
        handler=handler,
        spec=SPEC,
        **options,
    )


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


@pytest.mark.parametrize("maximum", [1, 2])
def test_at_most_maximum_concurrency_invocations_run_at_once(
    queue: tuple[Any, str], maximum: int
) -> None:
    # Given invocations that take a while, and more messages than may run at once
    sqs, url = queue
    running, peak, lock = [0], [0], threading.Lock()

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.6)
        with lock:
            running[0] -= 1
        return {"batchItemFailures": []}

    for n in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=f'{{"n": {n}}}')
    source = source_for(url, slow, batch_size=1, maximum_concurrency=maximum)

    # When the source feeds the function until the queue is empty
    source.start()
    try:
        wait_until(lambda: depth(sqs, url), lambda left: left == 0, timeout=20)
    finally:
        source.stop()

    # Then every message was delivered once, never more than `maximum` at a time
    assert source.invocations == 4
    assert peak[0] == source.peak_in_flight == maximum


def test_a_delayed_message_is_delivered_once_its_delay_is_over(queue: tuple[Any, str]) -> None:
    # Given a message sent back with a delay, as CreateJob sends a waiting request's timer
    sqs, url = queue
    delivered: list[str] = []

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        delivered.extend(record["body"] for record in event["Records"])
        return {"batchItemFailures": []}

    source = source_for(url, record)
    # (a delay the first poll ends well within, on a loaded machine too)
    sqs.send_message(QueueUrl=url, MessageBody='{"later": true}', DelaySeconds=4)
    sqs.send_message(QueueUrl=url, MessageBody='{"now": true}')

    # When the source polls right away and then until both were delivered (not "until the
    # queue reads empty": moto counts a queue's messages, in flight and delayed one count
    # after another, so a message whose delay ends between two counts is in none of them)
    first = source.poll_once()

    def poll_then_count() -> int:
        source.poll_once()
        return len(delivered)

    wait_until(poll_then_count, lambda count: count >= 2, timeout=15)

    # Then only the undelayed message came first; the delayed one came after its delay
    assert first is not None
    assert [m["Body"] for m in first.messages] == ['{"now": true}']
    assert delivered == ['{"now": true}', '{"later": true}']
    assert depth(sqs, url) == 0
