"""A stopped local stack does nothing afterwards: a tracker execution it left running (in
its Wait state) is stopped with it, so it never runs its next task against the moto that
comes next (in the test run: the next test's stack)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobrelay_local.config import MOTO_CONFIG
from jobrelay_local.runtime import LocalStack
from moto import mock_aws

# The execution's first wait: long enough for the stack to stop first, even on a loaded
# machine (a stop took 6.5 s on a fresh-clone CI run with both workers busy); the next moto
# then watches until well after the wait would have ended.
WAIT_SECONDS = 15
WATCH_SECONDS = WAIT_SECONDS + 4


@pytest.fixture
def next_moto() -> Iterator[list[str]]:
    """Started by the test after its stack stopped: a moto of its own, as the next test's
    stack is; every Lambda invoke and SNS publish that reaches it is noted."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.sns.models import SNSBackend

    seen: list[str] = []
    lock = threading.Lock()

    def invoke(backend: Any, function_name: str, *args: Any, **kwargs: Any) -> bytes:
        with lock:
            seen.append(f"lambda invoke {function_name}")
        return b"{}"

    def publish(backend: Any, *args: Any, **kwargs: Any) -> str:
        with lock:
            seen.append("sns publish")
        return "none"

    with (
        mock_aws(config=MOTO_CONFIG),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(LambdaSimpleBackend, "invoke", invoke)
        patch.setattr(SNSBackend, "publish", publish)
        yield seen


def test_a_stopped_stack_leaves_no_execution_acting_afterwards(request: pytest.FixtureRequest):
    local = LocalStack(feed_queue=False, visibility_timeout=1, environ={})
    with local:
        sfn = boto3.client("stepfunctions")
        arn = local.require_stack().state_machine_arn
        sfn.start_execution(
            stateMachineArn=arn,
            name="left-running",
            input=json.dumps({"job": {}, "poll": {"next_poll_seconds": WAIT_SECONDS}}),
        )
        started = time.monotonic()
        (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
        assert execution["status"] == "RUNNING"
    stopped_after = time.monotonic() - started
    assert stopped_after < WAIT_SECONDS, "the stack took too long to stop: the test saw nothing"

    seen: list[str] = request.getfixturevalue("next_moto")
    time.sleep(max(0.0, WATCH_SECONDS - (time.monotonic() - started)))
    assert seen == []
