"""(5) Cancel to outcome: how long after a cancel the request's `cancelled` outcome is
published, for a tracked job whose tracker is in a 10-minute wait (so the cancel has to cut
the wait short), per provider and per way of cancelling: a cancel message on the requests
queue, or an operator's StopExecution of the tracker.

The local stack runs as deployed: the queue fed by the event source with the template's 1 s
batching window, Step Functions' status-change events delivered to TrackerEnded. A cancel's
time is taken just before it is sent; the outcome's is the event's own `time` (when it was
built, just before SNS Publish), so the sink's polling is not counted.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from jobrelay.aws import StepFunctionsTrackerStarter
from jobrelay.models import execution_name

from bench.common import PROVIDERS, local_stack, request

PER_PROVIDER = 12  # cancels per provider and way
WAYS = ("message", "operator stop")
# A tracked job's next poll is this far away after its first one.
LONG_WAIT = {"poll_interval_seconds": 600, "min_poll_seconds": 600}
SPACING_SECONDS = 0.4  # between two cancels: one at a time, as people send them
TARGET_SECONDS = 30.0
BATCHING_WINDOW_SECONDS = 1  # CreateJobBatchingWindowSeconds' default in template.yaml  # issue 11: the outcome within 30 s of the cancel


def _waiting(sfn: Any, starter: StepFunctionsTrackerStarter, request_id: str) -> bool:
    """The tracker has polled once and is in its long wait (its second Wait state)."""
    arn = starter.execution_arn(execution_name(request_id))
    try:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return sum(e["type"] == "WaitStateEntered" for e in events) >= 2


def _percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=20, method="inclusive")
    return {
        "p50_seconds": statistics.median(seconds),
        "p95_seconds": cuts[18],
        "max_seconds": max(seconds),
        "count": len(seconds),
    }


def run() -> dict[str, Any]:
    # The template's batching window (the local stack's default is 0): a cancel message
    # waits for it as it would in AWS.
    parameters = {
        "PollIntervalSeconds": "1",
        "FirstPollSeconds": "0",
        "CreateJobBatchingWindowSeconds": str(BATCHING_WINDOW_SECONDS),
    }
    with local_stack(parameters) as local:
        for emulator in local.emulators.values():
            emulator.configure(queued=0.0, duration=3600.0)
        stack = local.require_stack()
        sfn = boto3.client("stepfunctions")
        sqs = boto3.client("sqs")
        starter = StepFunctionsTrackerStarter(stack.state_machine_arn)
        # Round robin over providers and ways, so each sees the same conditions.
        plan = [
            (provider, way, f"cancel-{provider}-{way.split()[-1]}-{i}")
            for i in range(PER_PROVIDER)
            for way in WAYS
            for provider in PROVIDERS
        ]
        for provider, _, request_id in plan:
            local.submit(request(request_id, provider, **LONG_WAIT))
        deadline = time.monotonic() + 180
        pending = {request_id for _, _, request_id in plan}
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} trackers never reached their long wait")
            pending = {r for r in pending if not _waiting(sfn, starter, r)}
            time.sleep(0.5)

        asked_at: dict[str, datetime] = {}
        for _, way, request_id in plan:
            asked_at[request_id] = datetime.now(UTC)
            if way == "message":
                cancel = {"action": "cancel", "request_id": request_id, "requested_by": "bench"}
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(cancel))
            else:
                sfn.stop_execution(executionArn=starter.execution_arn(execution_name(request_id)))
            time.sleep(SPACING_SECONDS)
        outcomes, still_open = local.wait_for_outcomes(list(asked_at), timeout=120)

    rows: dict[str, dict[str, Any]] = {}
    for way in WAYS:
        for provider in PROVIDERS:
            ids = [r for p, w, r in plan if p == provider and w == way and r in outcomes]
            seconds = [
                (datetime.fromisoformat(outcomes[r]["time"]) - asked_at[r]).total_seconds()
                for r in ids
            ]
            types = sorted({outcomes[r]["type"] for r in ids})
            rows[f"{provider} / {way}"] = {
                **_percentiles(seconds),
                "provider": provider,
                "way": way,
                "outcome_types": types,
            }
    every = [
        (datetime.fromisoformat(outcomes[r]["time"]) - asked_at[r]).total_seconds()
        for r in outcomes
    ]
    return {
        "per_provider_and_way": PER_PROVIDER,
        "wait_seconds": LONG_WAIT["min_poll_seconds"],
        "spacing_seconds": SPACING_SECONDS,
        "batching_window_seconds": BATCHING_WINDOW_SECONDS,
        "rows": rows,
        "all": _percentiles(every),
        "without_outcome": len(still_open),
        "target_seconds": TARGET_SECONDS,
    }
