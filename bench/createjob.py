"""(1) CreateJob throughput: the real handler, in-process, against the local stack with every
provider emulator answering after 200 ms. A batch of 10 and of 100 records is timed next to
the same number of records sent one per invocation (sequential) and the slowest of those
single calls."""

from __future__ import annotations

import json
import uuid
from typing import Any

from jobrelay_local.runtime import LocalStack
from jobrelay_local.stack import FakeLambdaContext

from bench.common import Stopwatch, local_stack, mixed_requests

LATENCY_SECONDS = 0.2
BATCHES = (10, 100)


def _event(local: LocalStack, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    source = local.source
    assert source is not None
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": uuid.uuid4().hex,
            "Body": json.dumps(body),
            "Attributes": {},
        }
        for body in bodies
    ]
    return {"Records": [source._record(m) for m in messages]}


def _invoke(local: LocalStack, bodies: list[dict[str, Any]]) -> float:
    """Run CreateJob once on these records; its wall time. Every record must succeed."""
    source = local.source
    assert source is not None
    spec = source.spec
    event = _event(local, bodies)
    context = FakeLambdaContext(spec.function_name, spec.function_arn, 256, spec.timeout)
    with Stopwatch() as watch:
        result = source.handler(event, context)
    if result["batchItemFailures"]:
        raise RuntimeError(f"CreateJob failed records: {result['batchItemFailures']}")
    return watch.seconds


def run() -> dict[str, Any]:
    # Trackers wait an hour before their first poll, so they stay out of the measurement.
    parameters = {"FirstPollSeconds": "3600", "PollIntervalSeconds": "3600"}
    with local_stack(parameters, feed_queue=False, visibility_timeout=600) as local:
        for emulator in local.emulators.values():
            emulator.configure(latency=LATENCY_SECONDS, queued=0.0, duration=3600.0)
        # Warm: imports, secrets, AWS clients (a warm Lambda is what a batch meets mostly).
        _invoke(local, mixed_requests("warm", 3))
        results: dict[str, Any] = {"latency_seconds": LATENCY_SECONDS, "batches": []}
        for size in BATCHES:
            singles = [_invoke(local, [body]) for body in mixed_requests(f"one{size}", size)]
            batch = _invoke(local, mixed_requests(f"batch{size}", size))
            results["batches"].append(
                {
                    "records": size,
                    "batch_seconds": batch,
                    "sequential_seconds": sum(singles),
                    "slowest_single_seconds": max(singles),
                    "median_single_seconds": sorted(singles)[len(singles) // 2],
                    "batch_to_slowest_single": batch / max(singles),
                    "batch_to_sequential": batch / sum(singles),
                }
            )
        return results
