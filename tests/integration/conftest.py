"""Integration fixtures: the template deployed into moto, the real handlers in-process, and
the provider emulators on loopback. CreateJob is driven one batch at a time by the test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobrelay_local.runtime import LocalStack

WS = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"


def deepset_request(request_id: str, **params: Any) -> dict[str, Any]:
    body = {
        "workspace_id": WS,
        "name": "eval",
        "pipeline_id": PIPE,
        "execution_mode": "ACROSS_FILES",
        "queries": [{"query": "q1"}, {"query": "q2"}],
        **params,
    }
    return {"request_id": request_id, "provider": "deepset", "params": body, "metadata": {"t": 1}}


def pixxel_request(request_id: str, workflow_id: str = "wf-1") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "provider": "pixxel",
        "params": {"workflow_id": workflow_id, "project_id": "proj-1"},
    }


def matatika_request(
    request_id: str, pipeline_id: str = "pipe-1", **tracking: int
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id,
        "provider": "matatika",
        "params": {"pipeline_id": pipeline_id},
    }
    if tracking:
        body["tracking"] = tracking
    return body


class Harness:
    """What a test uses: the stack, its emulators, and views of queue, DLQ and events."""

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.stack = local.require_stack()
        self.emulators = local.emulators
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")

    def send(self, *requests: dict[str, Any] | str) -> list[str]:
        return [self.local.submit(r) for r in requests]

    def deliver(self) -> dict[str, Any]:
        """Run CreateJob once on what the queue holds, as Lambda's poller would."""
        source = self.local.source
        assert source is not None
        delivery = source.poll_once()
        deadline = time.monotonic() + 5  # retried records come back after the visibility timeout
        while delivery is None and time.monotonic() < deadline:
            time.sleep(0.2)
            delivery = source.poll_once()
        assert delivery is not None, "the queue had nothing to deliver"
        assert delivery.error is None, f"CreateJob raised: {delivery.error}"
        return {"result": delivery.result, "messages": delivery.messages}

    def deliver_all(self, rounds: int = 10) -> None:
        """Deliver until the queue is empty (retried records included)."""
        for _ in range(rounds):
            if self.queue_depth() == 0:
                return
            self.deliver()
        raise AssertionError("the queue did not drain")

    def queue_depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.stack.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def events(self) -> list[dict[str, Any]]:
        return self.local.events()

    def events_for(self, request_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["data"]["request_id"] == request_id]

    def executions(self) -> list[Any]:
        return self.sfn.list_executions(stateMachineArn=self.stack.state_machine_arn)["executions"]

    def finished_executions(self, timeout: float = 30) -> list[Any]:
        """The executions, once none is RUNNING (an execution ends just after it publishes)."""
        deadline = time.monotonic() + timeout
        while True:
            executions = self.executions()
            if all(e["status"] != "RUNNING" for e in executions) or time.monotonic() > deadline:
                return executions
            time.sleep(0.2)

    def wait_outcome(self, request_id: str, timeout: float = 60) -> dict[str, Any]:
        outcomes, still_open = self.local.wait_for_outcomes([request_id], timeout=timeout)
        assert not still_open, f"no outcome for {request_id} within {timeout}s"
        return outcomes[request_id]

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.local.dead_letters()


@pytest.fixture
def harness() -> Iterator[Harness]:
    local = LocalStack(
        feed_queue=False,
        visibility_timeout=1,
        environ={},
        parameters={"PollIntervalSeconds": "1", "FirstPollSeconds": "0"},
    )
    with local:
        yield Harness(local)


def body_of(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["Body"])
