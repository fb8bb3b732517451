"""(1) CreateJob throughput: the real handler, warm, in a process of its own (as a Lambda
execution environment is), against AWS in another process (a moto server) and the provider
emulators, which answer every call after 200 ms. A batch of 10 and of 100 records is timed
next to the same records sent one per invocation (sequential) and the slowest of those single
calls.

The CPU each party spends on a batch is measured too (function, AWS stand-in, provider
emulators), because on a small machine it bounds the batch: AWS serves a batch's calls on its
fleet, in parallel, while moto serves them one interpreter lock at a time on the same cores
as the function. Trackers are started (StartExecution) but not interpreted by moto in this
section: their first poll is an hour away, and in AWS their interpretation is not the
function's work.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from jobrelay_local.event_source import SqsEventSource

from bench.common import cpu_seconds, local_stack, mixed_requests, moto_process

LATENCY_SECONDS = 0.2
BATCHES = (10, 100)
REPEATS = {10: 5, 100: 1}  # batches of each size, median taken
RESULT = "BENCH-CREATEJOB "

# The warm function: import the handler once, then handle one event per line of stdin.
# Its own logs and metrics (stdout in Lambda) go to /dev/null; results go to the parent.
CHILD = r"""
import importlib.util, json, os, sys, time
path, function_name = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("app", path)
app = importlib.util.module_from_spec(spec)
sys.path.insert(0, path.rsplit("/", 1)[0])
spec.loader.exec_module(app)
results = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 256
    function_version = "$LATEST"
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"
    def __init__(self):
        self.function_name = function_name
    def get_remaining_time_in_millis(self):
        return 60000
for line in sys.stdin:
    event = json.loads(line)
    started = time.perf_counter()
    answer = app.lambda_handler(event, Context())
    seconds = time.perf_counter() - started
    failed = len(answer["batchItemFailures"])
    results.write("BENCH-CREATEJOB " + json.dumps({"seconds": seconds, "failed": failed}) + "\n")
    results.flush()
"""


class WarmFunction:
    """CreateJob in its own process, fed events one at a time."""

    def __init__(self, app: str, function_name: str) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter running our child
            [sys.executable, "-c", CHILD, app, function_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )

    def invoke(self, event: dict[str, Any]) -> float:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(RESULT):
                answer = json.loads(line[len(RESULT) :])
                if answer["failed"]:
                    raise RuntimeError(f"CreateJob failed {answer['failed']} records")
                return float(answer["seconds"])
        raise RuntimeError("the CreateJob process ended")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _event(source: SqsEventSource, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """The Lambda SQS event of these request bodies, as the local event source builds it."""
    messages = [
        {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": json.dumps(b)}
        for b in bodies
    ]
    return {"Records": [source.lambda_record(message) for message in messages]}


def peak_in_flight(entries: list[dict[str, Any]]) -> int:
    """The most create calls the providers were serving at once."""
    edges = sorted(
        [(e["received_mono"], 1) for e in entries] + [(e["answered_mono"], -1) for e in entries],
        key=lambda edge: (edge[0], edge[1]),
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def run() -> dict[str, Any]:
    parameters = {"FirstPollSeconds": "3600", "PollIntervalSeconds": "3600"}
    with (
        moto_process(execute_trackers=False) as (endpoint, aws_pid),
        local_stack(parameters, feed_queue=False, aws_endpoint=endpoint) as local,
    ):
        for emulator in local.emulators.values():
            emulator.configure(latency=LATENCY_SECONDS, queued=0.0, duration=3600.0)
        stack = local.require_stack()
        spec = stack.function("CreateJobFunction")
        source = local.source
        assert source is not None
        function = WarmFunction(str(spec.code_dir / "app.py"), spec.function_name)
        pids = {"function": function.process.pid, "aws": aws_pid, "providers": os.getpid()}

        def cpu() -> dict[str, float | None]:
            return {party: cpu_seconds(pid) for party, pid in pids.items()}

        def creates_since(moment: float) -> list[dict[str, Any]]:
            return [
                entry
                for emulator in local.emulators.values()
                for entry in emulator.requests()
                if entry["creates"] and entry["received_mono"] >= moment
            ]

        def invoke(bodies: list[dict[str, Any]]) -> tuple[float, dict[str, float | None], int]:
            before, moment = cpu(), time.monotonic()
            seconds = function.invoke(_event(source, bodies))
            after = cpu()
            spent = {
                party: (after[party] - start) if start is not None else None  # type: ignore[operator]
                for party, start in before.items()
            }
            return seconds, spent, peak_in_flight(creates_since(moment))

        try:
            # Warm: imports, secrets, AWS clients (a warm Lambda is what a batch meets mostly).
            invoke(mixed_requests("warm", 3))
            results: dict[str, Any] = {
                "latency_seconds": LATENCY_SECONDS,
                "cores": os.cpu_count(),
                "aws": "moto server in its own process; trackers recorded, not interpreted",
                "batches": [],
            }
            for size in BATCHES:
                singles = [invoke([body])[0] for body in mixed_requests(f"one{size}", size)]
                runs = [
                    invoke(mixed_requests(f"batch{size}-{repeat}", size))
                    for repeat in range(REPEATS[size])
                ]
                batch = statistics.median(seconds for seconds, _, _ in runs)
                per_record = {
                    party: (
                        statistics.median(spent[party] or 0.0 for _, spent, _ in runs) / size
                        if all(spent[party] is not None for _, spent, _ in runs)
                        else None
                    )
                    for party in pids
                }
                cores = os.cpu_count() or 1
                known = [value for value in per_record.values() if value is not None]
                results["batches"].append(
                    {
                        "records": size,
                        "batch_seconds": batch,
                        "batch_runs_seconds": [seconds for seconds, _, _ in runs],
                        # Provider calls of one batch in flight together (all of them: the
                        # records overlap their network waits).
                        "creates_in_flight_peak": statistics.median(peak for _, _, peak in runs),
                        "sequential_seconds": sum(singles),
                        "slowest_single_seconds": max(singles),
                        "median_single_seconds": statistics.median(singles),
                        "batch_to_slowest_single": batch / max(singles),
                        "batch_to_sequential": batch / sum(singles),
                        "cpu_seconds_per_record": per_record,
                        # What the batch's CPU alone needs on this machine's cores.
                        "cpu_floor_seconds": sum(known) * size / cores if known else None,
                    }
                )
            return results
        finally:
            function.close()
