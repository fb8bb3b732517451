"""(6) Connection limits: a burst of 1,000 requests on one connection with `max_in_flight` 20,
through the local stack (moto's SQS, SNS, Step Functions and DynamoDB, the real state machine,
the handlers, the Pixxel emulator on loopback).

The connection is a secret under the stack's `CONNECTIONS_PREFIX`, made here with boto3 as an
operator makes one on AWS, pointing at the emulator with the key it accepts. Measured:

- the most jobs of the connection in flight at the provider at once, from the emulator's job
  records (created to ended by the job's clock): it must be the cap, never more; and the same
  from jobrelay's side (created to its outcome's `time`), which a slot bounds too;
- a slot freeing to the next create at the provider: the k-th outcome (in time) is paired
  with the (cap + k)-th create, the first create that needed k slots freed. While requests
  wait, slots are interchangeable, so this is how long the connection runs below its cap
  after each free, whichever waiter the slot went to; a negative lag would be a create over
  the cap. The outcome's `time` is taken just before SNS Publish, and the slot is released
  after it, so the lag includes the publish;
- where that lag goes, for each pair whose create was of a request woken from the wait: the
  free to the woken request's message sent back to the queue, that message's trip to
  CreateJob (from its SQS `SentTimestamp`), and CreateJob's own time to the create;
- every request's outcomes and remote jobs (exactly one each), and the dead-letter queues.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from jobrelay_local.runtime import LocalStack

from bench.common import Stopwatch, local_stack, request

PROVIDER = "pixxel"
CONNECTION = "bench-limits"
CAP = 20
# `make bench` sends 300 (about 4 minutes of the local stack on 2 cores; 400 took 342 s,
# which put a whole run at 924 s); issue 12's 1,000 take about 10 (`--limit-requests 1000`):
# the cost of each waiting request grows with the number waiting (moto reads every message of
# the queue, the waiters' timer copies among them, for each one it hands out).
# docs/performance.md, "Connection limits", has both.
DEFAULT_REQUESTS = 300
# Each job runs 4 s at the provider and its tracker looks once, 4 s after it starts (the
# first wait is the shorter of FirstPollSeconds and PollIntervalSeconds). 4 s is longer than
# the first 20 creates take (1.5 to 3 s on 2 busy cores), so those 20 are at the provider at
# once, and short enough that the cap's ceiling (20 / a slot's span of about 5 s) stays above
# the rate the local stack's CPU allows (about 2 requests/s).
JOB_SECONDS = 4.0
PARAMETERS = {
    "PollIntervalSeconds": "4",
    "FirstPollSeconds": "4",
    # A waiting request's deadline counts from its arrival: room for the whole burst.
    "DefaultDeadlineSeconds": "1800",
    # The template allows the provider's public hosts only; the emulator is on loopback.
    "PixxelAllowedHosts": "127.0.0.1",
}
# No outcome for this long: the run is stuck (requests holding a slot nobody woke them for
# come back on their timer, up to 15 minutes later), so it stops waiting and counts them.
STALL_SECONDS = 90.0
TIMEOUT_SECONDS = 900.0
# A slot still held this long after the last outcome is left behind (a leak until a sweep).
DRAIN_SECONDS = 60.0


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {
        "p50_seconds": round(statistics.median(values), 3),
        "p95_seconds": round(cuts[18], 3),
        "min_seconds": round(min(values), 3),
        "max_seconds": round(max(values), 3),
        "count": len(values),
    }


def peak_in_flight(spans: Iterable[tuple[float, float | None]]) -> int:
    """The most spans open at one instant; a span starting as another ends counts as both
    (the strict reading of a cap)."""
    edges: list[tuple[float, int]] = []
    for start, end in spans:
        edges.append((start, 0))
        edges.append((end if end is not None else float("inf"), 1))
    running = peak = 0
    for _, kind in sorted(edges):
        running += 1 if kind == 0 else -1
        peak = max(peak, running)
    return peak


def free_to_create(frees: list[float], creates: list[float], cap: int) -> list[float]:
    """Seconds from the k-th slot freed to the (cap + k)-th create, for each k with both."""
    frees, creates = sorted(frees), sorted(creates)
    return [creates[cap + k] - frees[k] for k in range(min(len(frees), len(creates) - cap))]


class Deliveries:
    """CreateJob's handler, recording each record's request id, when its message was sent
    (SQS `SentTimestamp`) and when the handler got it."""

    def __init__(self, handler: Callable[[Any, Any], Any]) -> None:
        self.handler = handler
        self.seen: list[tuple[str, float, float]] = []

    def __call__(self, event: Any, context: Any) -> Any:
        received = time.time()
        for record in event.get("Records", []):
            request_id = str(json.loads(record["body"]).get("request_id"))
            sent = int(record["attributes"]["SentTimestamp"]) / 1000
            self.seen.append((request_id, sent, received))
        return self.handler(event, context)


def _dead_letters(local: LocalStack) -> dict[str, int]:
    """Messages in each of the stack's dead-letter queues."""
    stack = local.require_stack()
    sqs = boto3.client("sqs")
    counts: dict[str, int] = {}
    for logical_id, kind in sorted(stack.resource_types.items()):
        if kind != "AWS::SQS::Queue" or not logical_id.endswith("DLQ"):
            continue
        physical = stack.resources[logical_id]
        url = physical if physical.startswith("http") else sqs.get_queue_url(QueueName=physical)
        attributes = sqs.get_queue_attributes(
            QueueUrl=url if isinstance(url, str) else url["QueueUrl"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        counts[logical_id] = sum(int(value) for value in attributes.values())
    return counts


def limits_state(local: LocalStack) -> dict[str, Any]:
    """The connection's row in the limits table: slots held (and by whom, the first 10), the
    waiting count it keeps, and the waiting requests' items (after the burst: none)."""
    table = local.require_stack().function("CreateJobFunction").environment["LIMITS_TABLE"]
    items = boto3.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": CONNECTION}},
        ConsistentRead=True,
    )["Items"]
    slots = next((item for item in items if item["sk"]["S"] == "slots"), {})
    held = sorted(slots.get("held", {}).get("M", {}))
    return {
        "held": len(held),
        "held_by": held[:10],
        "waiting_count": int(slots.get("waiting", {}).get("N", "0")),
        "waiters": sum(1 for item in items if item["sk"]["S"].startswith("w#")),
    }


def _warnings(log_file: Path | None) -> list[dict[str, Any]]:
    """The functions' warnings and errors, counted by message and error (the first 10)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    if log_file is None or not log_file.exists():
        return []
    with log_file.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
                continue
            function = str(entry.get("function_name", "")).split("-")[1:2]
            counts[
                (
                    function[0] if function else "",
                    str(entry.get("message", ""))[:120],
                    str(entry.get("error", ""))[:120],
                )
            ] += 1
    return [
        {"function": function, "message": message, "error": error, "count": count}
        for (function, message, error), count in counts.most_common(10)
    ]


def _add_connection(local: LocalStack) -> str:
    """The connection's secret, where the functions read it; returns the secret's name."""
    stack = local.require_stack()
    prefix = stack.function("CreateJobFunction").environment["CONNECTIONS_PREFIX"]
    document = {
        "provider": PROVIDER,
        "base_url": local.emulators[PROVIDER].url,
        "api_key": local.api_keys[PROVIDER],
        "max_in_flight": CAP,
        "description": "bench: a burst on one capped connection",
    }
    name = f"{prefix}{CONNECTION}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(document))
    return name


class Stalled(Exception):
    """No new outcome for `STALL_SECONDS`: the run stops waiting (the requests left are
    counted as without an outcome, and the limits table says what holds them)."""


class _Stall:
    """Raises `Stalled` when no new outcome arrived for `STALL_SECONDS`."""

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.seen = 0
        self.since = time.monotonic()

    def __call__(self) -> None:
        # What the sink holds so far (wait_for_outcomes has just drained it).
        count = len(self.local.sink.events) if self.local.sink else 0
        if count != self.seen:
            self.seen, self.since = count, time.monotonic()
        elif time.monotonic() - self.since > STALL_SECONDS:
            raise Stalled(f"no outcome for {STALL_SECONDS:.0f} s")


def run(count: int = DEFAULT_REQUESTS) -> dict[str, Any]:
    with local_stack(PARAMETERS) as local:
        # The functions' warnings into their log file (quiet() keeps only errors): a slot
        # not freed, or a record retried, is what explains a stuck request.
        logging.disable(logging.INFO)
        emulator = local.emulators[PROVIDER]
        emulator.configure(queued=0.0, duration=JOB_SECONDS)
        _add_connection(local)
        source = local.source
        if source is None:
            raise RuntimeError("the local stack has no queue poller")
        deliveries = Deliveries(source.handler)
        source.handler = deliveries
        bodies = []
        for i in range(count):
            body = request(f"limits-{i}", PROVIDER)
            body["connection"] = CONNECTION
            bodies.append(body)
        ids = [body["request_id"] for body in bodies]
        sqs = boto3.client("sqs")
        queue_url = local.require_stack().queue_url
        with Stopwatch() as sending:
            sent_at = time.time()
            for start in range(0, count, 10):
                sqs.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": json.dumps(body)}
                        for i, body in enumerate(bodies[start : start + 10])
                    ],
                )
        stalled = False
        try:
            outcomes, still_open = local.wait_for_outcomes(
                ids, timeout=TIMEOUT_SECONDS, on_tick=_Stall(local)
            )
        except Stalled:
            stalled = True
            outcomes, still_open = local.wait_for_outcomes(ids, timeout=0)
        # The last slots are released just after their outcomes are published (the local
        # stack's functions can take seconds over it under load); late duplicates, if any,
        # would come within a poll round or two.
        last_outcome_seen = time.monotonic()
        left = limits_state(local)
        while (
            any(left.values())
            and not stalled
            and time.monotonic() - last_outcome_seen < DRAIN_SECONDS
        ):
            time.sleep(1)
            left = limits_state(local)
        drained = time.monotonic() - last_outcome_seen
        time.sleep(max(0.0, 3 - drained))
        events = local.events()
        jobs = emulator.jobs()
        creates_received = emulator.creates_received()
        dead = _dead_letters(local)
        warned = _warnings(local.log_file)
    return figures(
        count=count,
        sent_at=sent_at,
        sending_seconds=sending.seconds,
        events=events,
        jobs=jobs,
        creates_received=creates_received,
        deliveries=deliveries.seen,
        dead_letters=dead,
        still_open=len(still_open),
        outcome_of=outcomes,
        limits_left=left,
        drain_seconds=drained,
        stalled=stalled,
        warnings=warned,
    )


def figures(
    *,
    count: int,
    sent_at: float,
    sending_seconds: float,
    events: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    creates_received: int,
    deliveries: list[tuple[str, float, float]],
    dead_letters: Mapping[str, int],
    still_open: int,
    outcome_of: Mapping[str, dict[str, Any]],
    limits_left: Mapping[str, Any],
    drain_seconds: float,
    stalled: bool,
    warnings: list[dict[str, Any]],
) -> dict[str, Any]:
    # Every event on the topic is an outcome (one per request is the promise).
    per_request = Counter(e["data"]["request_id"] for e in events)
    outcome_types = Counter(e["type"] for e in outcome_of.values())
    created = {job["id"]: _epoch(job["created_at"]) for job in jobs}
    ended = {
        job["id"]: _epoch(job["view"]["finished_at"]) if job["view"].get("finished_at") else None
        for job in jobs
    }
    freed = {
        e["data"]["remote_job_id"]: _epoch(e["time"])
        for e in outcome_of.values()
        if e["data"].get("remote_job_id")
    }
    remote_ids = [e["data"].get("remote_job_id") for e in outcome_of.values()]
    # The request each job was created for: its outcome names the job.
    request_of = {e["data"]["remote_job_id"]: r for r, e in outcome_of.items()}

    lags = free_to_create(list(freed.values()), list(created.values()), CAP)
    # The burst is in once CreateJob has had every request's first message: until then a
    # woken request's message queues behind the burst's (the local poller runs one CreateJob
    # at a time; Lambda runs up to CreateJobMaxConcurrency).
    first_received: dict[str, float] = {}
    for request_id, _, received in sorted(deliveries, key=lambda seen: seen[1]):
        first_received.setdefault(request_id, received)
    intake_done = max(first_received.values(), default=sent_at)
    frees_sorted = sorted(freed.values())
    after_intake = [lag for k, lag in enumerate(lags) if frees_sorted[k] >= intake_done]
    creates_sorted = sorted(created.values())
    last_outcome = max(freed.values()) if freed else sent_at
    wall = last_outcome - sent_at

    # Where the lag of each pair (k-th free, (cap + k)-th create) goes, when that create was
    # of a woken request: its message is the last one CreateJob got before the create, one
    # the free sent back (not the bench's). The three parts add up to the pair's lag.
    by_request: dict[str, list[tuple[float, float]]] = {}
    for request_id, sent, received in deliveries:
        by_request.setdefault(request_id, []).append((sent, received))
    to_wake: list[float] = []
    trip: list[float] = []
    in_create_job: list[float] = []
    in_order = sorted(created.items(), key=lambda item: item[1])
    for k, free in enumerate(frees_sorted[: max(0, len(in_order) - CAP)]):
        job_id, at = in_order[CAP + k]
        got = sorted(by_request.get(request_of.get(job_id, ""), []))
        before = [(s, r) for s, r in got if r <= at]
        if len(got) < 2 or not before or before[-1] == got[0]:
            continue  # created from its first message: it never waited
        sent, received = before[-1]
        to_wake.append(sent - free)
        trip.append(received - sent)
        in_create_job.append(at - received)
    holds = [freed[j] - created[j] for j in created if j in freed]
    mean_hold = statistics.fmean(holds) if holds else 0.0
    return {
        "requests": count,
        "provider": PROVIDER,
        "max_in_flight": CAP,
        "job_seconds": JOB_SECONDS,
        "parameters": PARAMETERS,
        "peak_in_flight_at_provider": peak_in_flight((created[j], ended[j]) for j in created),
        "peak_created_to_outcome": peak_in_flight((created[j], freed.get(j)) for j in created),
        "free_to_create": _percentiles(lags) if lags else None,
        "free_to_create_negative": sum(1 for lag in lags if lag < 0),
        "free_to_create_after_intake": _percentiles(after_intake) if after_intake else None,
        "intake_seconds": round(intake_done - sent_at, 3),
        "free_to_woken_message": _percentiles(to_wake) if to_wake else None,
        "woken_queue_trip": _percentiles(trip) if trip else None,
        "woken_create_job_to_create": _percentiles(in_create_job) if in_create_job else None,
        "first_creates_spread_seconds": round(creates_sorted[CAP - 1] - creates_sorted[0], 3)
        if len(creates_sorted) >= CAP
        else None,
        "hold_seconds_mean": round(mean_hold, 3),
        "rate_ceiling_per_second": round(CAP / mean_hold, 2) if mean_hold else None,
        "outcomes": dict(outcome_types),
        "without_outcome": still_open,
        "stalled_after_seconds": STALL_SECONDS if stalled else None,
        "more_than_one_outcome": sum(1 for n in per_request.values() if n > 1),
        "remote_jobs": len(jobs),
        "creates_received": creates_received,
        "remote_jobs_without_outcome": len(set(created) - set(freed)),
        "outcomes_sharing_a_job": len(remote_ids) - len(set(remote_ids)),
        "limits_table_after": dict(limits_left),
        "limits_table_drain_seconds": round(drain_seconds, 1),
        "function_warnings": warnings,
        "dead_letters": dict(dead_letters),
        "dead_letters_total": sum(dead_letters.values()),
        "sending_seconds": round(sending_seconds, 3),
        "seconds": round(wall, 3),
        "requests_per_second": round(len(outcome_of) / wall, 2) if wall > 0 else 0.0,
    }
