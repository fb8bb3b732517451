"""(4) End-to-end throughput of the local stack: short jobs from the queue to their outcome
events, everything in one process (moto, the real definition, the handlers, the emulators).

Time-boxed: when the bench's budget runs out first, the rate is that of the outcomes that
arrived within it (the stack works through the queue in order, so it is the steady rate),
and the table says how many of the jobs got there."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from bench.common import Stopwatch, local_stack, mixed_requests

JOB_SECONDS = 1.0


def run(jobs: int, budget_seconds: float) -> dict[str, Any]:
    parameters = {"PollIntervalSeconds": "1", "FirstPollSeconds": "1"}
    with local_stack(parameters) as local:
        for emulator in local.emulators.values():
            emulator.configure(queued=0.0, duration=JOB_SECONDS)
        requests = mixed_requests("throughput", jobs)
        sqs = boto3.client("sqs")
        queue_url = local.require_stack().queue_url
        with Stopwatch() as watch:
            for start in range(0, jobs, 10):
                chunk = requests[start : start + 10]
                sqs.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": json.dumps(body)}
                        for i, body in enumerate(chunk)
                    ],
                )
            # The budget covers sending too (1,000 messages take a while on a loaded stack).
            left = budget_seconds - (time.perf_counter() - watch.started)
            outcomes, still_open = local.wait_for_outcomes(
                [body["request_id"] for body in requests], timeout=max(1.0, left)
            )
        types: dict[str, int] = {}
        for event in outcomes.values():
            types[event["type"]] = types.get(event["type"], 0) + 1
        return {
            "jobs": jobs,
            "job_seconds": JOB_SECONDS,
            "seconds": watch.seconds,
            "budget_seconds": budget_seconds,
            "requests_per_second": len(outcomes) / watch.seconds,
            "outcomes": types,
            "without_outcome": len(still_open),
        }
