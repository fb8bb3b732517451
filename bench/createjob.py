"""(1) CreateJob per record and in batches: the real handler, warm, in a process of its own (as
a Lambda execution environment is), against AWS in another process (a moto server) and the
provider emulators, which answer every call after 200 ms. A batch of 10 and of 100 records is
timed next to the same records sent one per invocation (sequential) and the slowest of those
single calls.

Measured as Lambda runs it: the function's process on one CPU (CreateJob has one vCPU at
1,769 MB), the AWS stand-in and the emulators (this process) on the other(s), so the
stand-in's CPU, which on AWS is AWS's, does not compete with the function's. On a machine
with one CPU nothing is pinned and the figures say so.

Per batch: the function's own CPU (the child's process CPU time around the handler: every
thread, CreateJob's worker pool and Powertools' batch processor included), the stand-in's
and the emulators' (from `/proc`), the AWS calls the function made (counted in the child,
by service and operation, wrapping botocore's one entry point of every API call, whatever
client or session makes it) and the provider calls (from the emulators' request logs). One
more batch of 10 is run under cProfile (thread CPU time, every thread) and broken down by
package and by activity, so a ratio above its target says where the function's CPU goes.

Trackers are started (StartExecution) but not interpreted by moto in this section: their
first poll is an hour away, and in AWS their interpretation is not the function's work.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobrelay_local.event_source import SqsEventSource

from bench.common import cpu_seconds, cpu_split, local_stack, mixed_requests, moto_process, pin

LATENCY_SECONDS = 0.2
BATCHES = (10, 100)
REPEATS = {10: 5, 100: 1}  # batches of each size, median taken
PROFILED_BATCH = 10
FLOOR_BATCH = 10  # the batch size measured beside its dependency floor
RESULT = "BENCH-CREATEJOB "

# The warm function: pin itself, count AWS calls, import the handler once, then handle one
# event per line of stdin ({"event": ..., "profile": bool}). Its own logs and metrics
# (stdout in Lambda) go to a file (a failed record's warning is read from it); results go to
# the parent.
CHILD = r"""
import cProfile, importlib.util, json, os, pstats, sys, threading, time
path, function_name, cpus, log_file = sys.argv[1:5]
if cpus:
    os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})

# Every AWS API call of this process, by service and operation: botocore's one entry point
# of an API call, whatever session or client (jobrelay's, Powertools') makes it (retries
# inside botocore are one call), with the CPU its thread spent in it; and the same for the
# provider calls (httpx). Two clock reads per call, no profiler.
import botocore.client, httpx
calls, cpu_in, calls_lock = {}, {}, threading.Lock()
def note(key, spent):
    with calls_lock:
        calls[key] = calls.get(key, 0) + 1
        cpu_in[key] = cpu_in.get(key, 0.0) + spent
make_api_call = botocore.client.BaseClient._make_api_call
def counted(self, operation_name, api_params):
    started = time.thread_time()
    try:
        return make_api_call(self, operation_name, api_params)
    finally:
        key = self.meta.service_model.service_name + "." + operation_name
        note(key, time.thread_time() - started)
botocore.client.BaseClient._make_api_call = counted
# And the phases of an AWS call, the same way (they do not nest in one another).
import botocore.endpoint, botocore.httpsession, botocore.parsers, botocore.signers
def timed(owner, name, phase):
    inner = getattr(owner, name)
    def phased(*args, **kwargs):
        started = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            note("phase." + phase, time.thread_time() - started)
    setattr(owner, name, phased)
timed(botocore.client.BaseClient, "_resolve_endpoint_ruleset", "endpoint rules")
timed(botocore.client.BaseClient, "_convert_to_request_dict", "validate and serialize")
timed(botocore.signers.RequestSigner, "sign", "sign (SigV4)")
timed(botocore.httpsession.URLLib3Session, "send", "send, read status and headers")
timed(botocore.endpoint, "convert_to_response_dict", "read body")
timed(botocore.parsers.ResponseParser, "parse", "parse")
send = httpx.Client.send
def sent(self, request, **options):
    started = time.thread_time()
    try:
        return send(self, request, **options)
    finally:
        note("provider." + request.method, time.thread_time() - started)
httpx.Client.send = sent

def profiled(call):
    # cProfile sees only its own thread: every thread started meanwhile (the worker pool)
    # gets a profile of its own, merged after. Thread CPU time, not wall time.
    profiles, lock = [], threading.Lock()
    def boot(frame, event, arg):
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()
    threading.setprofile(boot)
    main = cProfile.Profile(time.thread_time)
    main.enable()
    try:
        answer = call()
    finally:
        main.disable()
        threading.setprofile(None)
    stats = pstats.Stats(main)
    for profile in profiles:
        stats.add(profile)
    rows = []
    for (file, line, function), (_, calls_, tottime, cumtime, callers) in stats.stats.items():
        row = [file, line, function, calls_, tottime, cumtime]
        if file == "~":  # a C function: its time goes to its callers' packages
            row.append([[caller[0], spent[2]] for caller, spent in callers.items()])
        rows.append(row)
    return answer, rows

spec = importlib.util.spec_from_file_location("app", path)
app = importlib.util.module_from_spec(spec)
sys.path.insert(0, path.rsplit("/", 1)[0])
spec.loader.exec_module(app)
results = os.fdopen(os.dup(1), "w")
os.dup2(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 1)
class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 1769
    function_version = "$LATEST"
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"
    def __init__(self):
        self.function_name = function_name
    def get_remaining_time_in_millis(self):
        return 60000
for line in sys.stdin:
    order = json.loads(line)
    with calls_lock:
        calls.clear()
        cpu_in.clear()
    handle = lambda: app.lambda_handler(order["event"], Context())
    rows = None
    cpu, started = time.process_time(), time.perf_counter()
    if order["profile"]:
        answer, rows = profiled(handle)
    else:
        answer = handle()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with calls_lock:
        made, spent_in = dict(calls), dict(cpu_in)
    failed = len(answer["batchItemFailures"])
    out = {
        "seconds": seconds, "cpu_seconds": cpu, "failed": failed, "calls": made,
        "cpu_in_calls": spent_in,
    }
    if rows is not None:
        out["profile"] = rows
    results.write("BENCH-CREATEJOB " + json.dumps(out) + "\n")
    results.flush()
"""


# The per-record dependency floor: a handler that does for each record only what the design
# fixes and what any CreateJob that keeps its guarantees must do, with nothing of jobrelay:
# the body parsed into one pydantic model, the same three AWS calls the function makes on
# its happy path (the request's lease, the job and its claim in one transaction, the
# tracker's start: the same operations, expressions and item shapes, one client per
# service), one provider call with httpx (the same body, to the same emulator, which
# answers after the same latency) and one Powertools log line; the records concurrently on
# a worker thread each, as the function runs them. Run in a process like the function's, on
# its CPU, against the same stand-in, so the difference is jobrelay's own work.
FLOOR_HANDLER = """
import hashlib, json, os, time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import httpx
from aws_lambda_powertools.logging import Logger
from pydantic import BaseModel

logger = Logger(service="floor")
TABLE = os.environ["IDEMPOTENCY_TABLE"]
STATE_MACHINE = os.environ["STATE_MACHINE_ARN"]
dynamodb = boto3.client("dynamodb")
stepfunctions = boto3.client("stepfunctions")
http = httpx.Client(timeout=30)


class FloorRequest(BaseModel):
    request_id: str
    provider: str
    params: dict


def one(record):
    request = FloorRequest.model_validate_json(record["body"])
    at = datetime.now(UTC)
    now = int(at.timestamp())
    key = {"id": {"S": "ledger#" + request.request_id}}
    dynamodb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #lease = :until, #exp = :exp, #at = if_not_exists(#at, :at)",
        ConditionExpression="attribute_not_exists(#lease) OR #lease < :now",
        ExpressionAttributeNames={"#lease": "lease_until", "#exp": "expiration",
                                  "#at": "create_attempted_at"},
        ExpressionAttributeValues={":until": {"N": str(now + 60)}, ":now": {"N": str(now)},
                                   ":exp": {"N": str(now + 86400)}, ":at": {"S": at.isoformat()}},
        ReturnValues="ALL_OLD",
    )
    base = os.environ[request.provider.upper() + "_BASE_URL"].rstrip("/")
    http.post(base + "/dependency-floor", json=request.params)
    job = "floor-" + request.request_id
    expiration = str(now + 86400)
    dynamodb.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE,
                 "Item": {"id": {"S": "claim#" + request.provider + "#" + job},
                          "request_id": {"S": request.request_id},
                          "expiration": {"N": expiration}},
                 "ConditionExpression": "attribute_not_exists(id) OR request_id = :request",
                 "ExpressionAttributeValues": {":request": {"S": request.request_id}},
                 "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        {"Update": {"TableName": TABLE, "Key": key,
                    "UpdateExpression": "SET #job = :job, #loc = :loc, #now = :now, "
                                        "#exp = :exp REMOVE waiting_for, lease_until",
                    "ExpressionAttributeNames": {"#job": "remote_job_id", "#loc": "locator",
                                                 "#now": "created_at", "#exp": "expiration"},
                    "ExpressionAttributeValues": {
                        ":job": {"S": job}, ":loc": {"S": json.dumps({"job": job})},
                        ":now": {"S": datetime.now(UTC).isoformat()},
                        ":exp": {"N": expiration}}}},
    ])
    name = "floor-" + hashlib.sha256(request.request_id.encode()).hexdigest()[:24]
    state = {"job": {"request_id": request.request_id, "provider": request.provider,
                     "remote_job_id": job, "params": request.params},
             "poll": {"attempt": 0, "wait_seconds": 3600}}
    stepfunctions.start_execution(stateMachineArn=STATE_MACHINE, name=name,
                                  input=json.dumps(state))
    logger.info("floor record handled", request_id=request.request_id)


def lambda_handler(event, context):
    records = event["Records"]
    with ThreadPoolExecutor(max(1, len(records))) as pool:
        list(pool.map(one, records))
    return {"batchItemFailures": []}
"""


@dataclass
class Invocation:
    """One event handled: wall and process CPU seconds, the calls it made (AWS ones as
    `service.Operation`, provider ones as `provider.METHOD`) and the CPU spent in them."""

    seconds: float
    cpu_seconds: float
    calls: dict[str, int]
    cpu_in_calls: dict[str, float]
    profile: list[list[Any]] | None = None

    @property
    def aws_calls(self) -> dict[str, int]:
        return {name: n for name, n in self.calls.items() if _kind(name) == "aws"}


def _kind(call: str) -> str:
    """`aws` (`service.Operation`), `provider` (`provider.METHOD`) or `phase` (a part of
    every AWS call, `phase.<name>`)."""
    prefix = call.split(".", 1)[0]
    return prefix if prefix in ("provider", "phase") else "aws"


class WarmFunction:
    """CreateJob in its own process (on `cpus` where given), fed events one at a time."""

    def __init__(self, app: str, function_name: str, cpus: set[int] | None) -> None:
        pinned = ",".join(str(cpu) for cpu in sorted(cpus)) if cpus else ""
        self.logs = Path(tempfile.mkdtemp(prefix="jobrelay-bench-createjob-")) / "logs.jsonl"
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter running our child
            [sys.executable, "-c", CHILD, app, function_name, pinned, str(self.logs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=function_environment(os.environ),
        )

    def invoke(self, event: dict[str, Any], *, profile: bool = False) -> Invocation:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"event": event, "profile": profile}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(RESULT):
                answer = json.loads(line[len(RESULT) :])
                if answer["failed"]:
                    raise RuntimeError(
                        f"CreateJob failed {answer['failed']} records: {self.warnings()}"
                    )
                return Invocation(
                    seconds=float(answer["seconds"]),
                    cpu_seconds=float(answer["cpu_seconds"]),
                    calls=dict(answer["calls"]),
                    cpu_in_calls=dict(answer["cpu_in_calls"]),
                    profile=answer.get("profile"),
                )
        raise RuntimeError("the CreateJob process ended")

    def warnings(self, most: int = 3) -> list[str]:
        """The distinct warnings of the function's log so far (a failed record's reason)."""
        seen: dict[str, None] = {}
        try:
            lines = self.logs.read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR"):
                seen[f"{entry.get('message')}: {entry.get('error_type')} {entry.get('error')}"] = (
                    None
                )
        return list(seen)[:most]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.logs.parent, ignore_errors=True)


def function_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The function's environment as the template gives it on AWS: without the local
    stack's 2 s secret cache (`SECRET_MAX_AGE_SECONDS`), so a warm function reads its
    connections and keys as rarely as on Lambda (the layer's default, 300 s)."""
    return {name: value for name, value in environ.items() if name != "SECRET_MAX_AGE_SECONDS"}


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


def timeline(
    creates: list[dict[str, Any]], started: float, ended: float
) -> dict[str, float] | None:
    """An invocation's wall time around its provider create calls (monotonic seconds, the
    emulators' clock): until the first was received, from the first to the last received,
    the slowest answer, and from the last answer to the invocation's end."""
    if not creates:
        return None
    received = [entry["received_mono"] for entry in creates]
    answered = [entry["answered_mono"] for entry in creates]
    return {
        "to_first_provider_call": min(received) - started,
        "provider_calls_leaving": max(received) - min(received),
        "slowest_provider_answer": max(a - r for r, a in zip(received, answered, strict=True)),
        "after_last_answer": ended - max(answered),
        "total": ended - started,
    }


def median_timeline(timelines: Iterable[dict[str, float] | None]) -> dict[str, float] | None:
    known = [t for t in timelines if t is not None]
    if not known:
        return None
    return {name: round(statistics.median(t[name] for t in known), 4) for name in known[0]}


def calls_per_record(counts: Iterable[Mapping[str, int]], records: int) -> dict[str, float]:
    """AWS calls per record by `service.Operation` over several invocations of `records` in
    all, most frequent first, with `total`."""
    summed: Counter[str] = Counter()
    for count in counts:
        summed.update(count)
    per = {name: n / records for name, n in sorted(summed.items(), key=lambda kv: (-kv[1], kv[0]))}
    return {**per, "total": sum(summed.values()) / records}


def cpu_in_calls(
    invocations: Iterable[Invocation], records: int, cpu_per_record: float | None
) -> dict[str, Any]:
    """The CPU spent inside calls over `records` records of these invocations: per record
    in AWS calls and in provider calls, by call (calls and ms per record, ms per call), and
    what is left of `cpu_per_record` (the function's own code, Powertools, logging, threads)."""
    calls: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for invocation in invocations:
        calls.update(invocation.calls)
        seconds.update(invocation.cpu_in_calls)
    by_call = {
        name: {
            "calls_per_record": round(calls[name] / records, 3),
            "ms_per_record": round(1000 * seconds[name] / records, 3),
            "ms_per_call": round(1000 * seconds[name] / calls[name], 3) if calls[name] else None,
        }
        for name in sorted(calls, key=lambda name: -seconds[name])
        if _kind(name) != "phase"
    }
    aws = sum(spent for name, spent in seconds.items() if _kind(name) == "aws")
    provider = sum(spent for name, spent in seconds.items() if _kind(name) == "provider")
    aws_calls = sum(n for name, n in calls.items() if _kind(name) == "aws")
    phases = {
        name.split(".", 1)[1]: {
            "ms_per_aws_call": round(1000 * spent / aws_calls, 3) if aws_calls else None,
            "ms_per_record": round(1000 * spent / records, 3),
        }
        for name, spent in seconds.most_common()
        if _kind(name) == "phase"
    }
    if phases and aws_calls:
        rest = aws - sum(spent for name, spent in seconds.items() if _kind(name) == "phase")
        phases["the rest (events, retries, botocore's own)"] = {
            "ms_per_aws_call": round(1000 * rest / aws_calls, 3),
            "ms_per_record": round(1000 * rest / records, 3),
        }
    return {
        "aws_phases": phases,
        "aws_ms_per_record": round(1000 * aws / records, 3),
        "aws_ms_per_call": round(1000 * aws / aws_calls, 3) if aws_calls else None,
        "provider_ms_per_record": round(1000 * provider / records, 3),
        "rest_ms_per_record": (
            round(1000 * cpu_per_record - 1000 * (aws + provider) / records, 3)
            if cpu_per_record is not None
            else None
        ),
        "by_call": by_call,
    }


# Where the function's CPU goes, by the package whose code runs (a C function counts for the
# package that called it).
PACKAGES = (
    ("botocore", "/botocore/"),
    ("urllib3", "/urllib3/"),
    ("aws_lambda_powertools", "/aws_lambda_powertools/"),
    ("pydantic", "/pydantic"),
    ("jobrelay", "/jobrelay/"),
    ("httpx/httpcore", "/httpx/"),
    ("httpx/httpcore", "/httpcore/"),
    ("jmespath", "/jmespath/"),
    ("dateutil", "/dateutil/"),
    ("logging (stdlib)", "/logging/"),
    ("json (stdlib)", "/json/"),
    ("asyncio (stdlib)", "/asyncio/"),
    ("threads (stdlib)", "/concurrent/"),
    ("threads (stdlib)", "/threading.py"),
    ("sockets, ssl (stdlib)", "/socket.py"),
    ("sockets, ssl (stdlib)", "/ssl.py"),
    ("sockets, ssl (stdlib)", "/selectors.py"),
    ("http.client (stdlib)", "/http/"),
    ("http.client (stdlib)", "/email/"),
    ("hashing (stdlib)", "/hmac.py"),
    ("hashing (stdlib)", "/hashlib.py"),
    ("datetime, uuid (stdlib)", "/datetime.py"),
    ("datetime, uuid (stdlib)", "/uuid.py"),
)

# What the function does, each the inclusive CPU of these functions (file, name); they
# overlap (an idempotency record's write is a botocore call too).
ACTIVITIES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("AWS calls in botocore, whole", (("/botocore/client.py", "_make_api_call"),)),
    ("  serialize request", (("/botocore/serialize.py", "serialize_to_request"),)),
    ("  endpoint rules", (("/botocore/regions.py", "construct_endpoint"),)),
    ("  sign (SigV4)", (("/botocore/signers.py", "sign"),)),
    ("  send and receive (urllib3)", (("/botocore/httpsession.py", "send"),)),
    ("  parse response", (("/botocore/parsers.py", "parse"),)),
    (
        "Powertools idempotency records (in progress, success)",
        (
            ("/idempotency/persistence/base.py", "save_inprogress"),
            ("/idempotency/persistence/base.py", "save_success"),
        ),
    ),
    ("provider call (httpx)", (("/httpx/_client.py", "send"),)),
    ("log records (stdlib Logger._log, Powertools formatter)", (("/logging/__init__.py", "_log"),)),
    ("Powertools metrics", (("/aws_lambda_powertools/metrics/", ""),)),
)
TOP_PACKAGES = ("/jobrelay/", "/aws_lambda_powertools/", "/botocore/", "/pydantic")


def package_of(file: str) -> str:
    for name, marker in PACKAGES:
        if marker in file:
            return name
    return "other"


def _label(file: str, line: int, function: str) -> str:
    if file == "~":
        return function
    for marker in (*TOP_PACKAGES, "/site-packages/", "/lib/python"):
        at = file.find(marker)
        if at >= 0:
            file = file[at + 1 :]
            break
    return f"{file}:{line}({function})"


def profile_breakdown(
    rows: list[list[Any]], records: int, cpu_per_record: float | None = None, top: int = 15
) -> dict[str, Any]:
    """The cProfile rows of one batch (`[file, line, function, calls, tottime, cumtime]`,
    C functions with `[[caller file, seconds], ...]` as a seventh) in per-record terms:
    CPU by package (shares add up to 1), by activity (inclusive, overlapping) and the `top`
    functions of jobrelay, Powertools, botocore and pydantic by cumulative CPU. `ms` figures
    are the share times `cpu_per_record` (the unprofiled CPU) where given, so that the
    profiler's own overhead does not inflate them."""
    total = sum(row[4] for row in rows) or 1e-12
    by_package: Counter[str] = Counter()
    for row in rows:
        if row[0] == "~" and len(row) > 6 and row[6]:
            for caller, seconds in row[6]:
                by_package[package_of(caller)] += seconds
            by_package["other"] += max(0.0, row[4] - sum(seconds for _, seconds in row[6]))
        else:
            by_package[package_of(row[0])] += row[4]

    def ms(seconds: float) -> float | None:
        if cpu_per_record is None:
            return None
        return round(1000 * cpu_per_record * seconds / total, 2)

    def share(seconds: float) -> float:
        return round(seconds / total, 3)

    activities = []
    for name, matches in ACTIVITIES:
        matched = [
            row
            for row in rows
            if any(marker in row[0] and (not fn or row[2] == fn) for marker, fn in matches)
        ]
        if not matched:
            continue
        if all(fn for _, fn in matches):
            seconds = sum(row[5] for row in matched)
            calls = sum(row[3] for row in matched) / records
        else:  # a whole package's self time (its functions nest)
            seconds = sum(row[4] for row in matched)
            calls = None
        activities.append(
            {
                "activity": name,
                "share": share(seconds),
                "ms_per_record": ms(seconds),
                "calls_per_record": round(calls, 2) if calls is not None else None,
            }
        )
    ours = [
        row
        for row in rows
        if any(marker in row[0] for marker in TOP_PACKAGES)
        or (row[0] == "~" and "pydantic" in row[2])
    ]
    ours.sort(key=lambda row: -row[5])
    other = [row for row in rows if row[0] != "~" and package_of(row[0]) == "other"]
    other += [row for row in rows if row[0] == "~" and not (len(row) > 6 and row[6])]
    other.sort(key=lambda row: -row[4])
    return {
        "profiled_cpu_ms_per_record": round(1000 * total / records, 2),
        "measured_cpu_ms_per_record": (
            round(1000 * cpu_per_record, 2) if cpu_per_record is not None else None
        ),
        "by_package": [
            {"package": name, "share": share(seconds), "ms_per_record": ms(seconds)}
            for name, seconds in by_package.most_common()
            if seconds / total >= 0.005
        ],
        "activities": activities,
        # The largest self times of what no package above claims (stdlib, C functions).
        "other_top": [
            {"function": _label(row[0], row[1], row[2]), "share": share(row[4])}
            for row in other[:5]
        ],
        "top_cumulative": [
            {
                "function": _label(row[0], row[1], row[2]),
                "share": share(row[5]),
                "ms_per_record": ms(row[5]),
                "calls_per_record": round(row[3] / records, 2),
            }
            for row in ours[:top]
        ],
    }


def floor_figures(singles: list[Any], runs: list[Any], size: int) -> dict[str, Any]:
    """The dependency floor's batch against its slowest single call, and its CPU per record
    (the same figures as the function's, from runs interleaved with the function's)."""
    single_seconds = [one.call.seconds for one in singles]
    batch = statistics.median(run.call.seconds for run in runs)
    cpu = statistics.median(run.call.cpu_seconds for run in runs) / size
    return {
        "what": "per record: one pydantic model, the function's 3 AWS calls (same operations "
        "and item shapes), 1 httpx call to the same emulator, 1 log line; records on threads",
        "batch_seconds": batch,
        "batch_runs_seconds": [run.call.seconds for run in runs],
        "slowest_single_seconds": max(single_seconds),
        "median_single_seconds": statistics.median(single_seconds),
        "batch_to_slowest_single": batch / max(single_seconds),
        "cpu_seconds_per_record": cpu,
        "cpu_runs_seconds_per_record": [run.call.cpu_seconds / size for run in runs],
        "aws_stand_in_cpu_seconds_per_record": (
            statistics.median(run.spent["aws"] or 0.0 for run in runs) / size
        ),
        "aws_calls_per_record": calls_per_record(
            (run.call.aws_calls for run in runs), size * len(runs)
        ),
        "cpu_in_calls": cpu_in_calls([run.call for run in runs], size * len(runs), cpu),
        "timeline": median_timeline(run.timeline for run in runs),
    }


def cpu_busy(cpu: int) -> float | None:
    """Seconds CPU `cpu` has been busy (Linux `/proc/stat`; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith(f"cpu{cpu} "):
                    ticks = [int(value) for value in line.split()[1:]]
                    busy = sum(ticks[:3]) + sum(ticks[5:8])  # all but idle and iowait
                    return busy / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    return None


@dataclass
class Placement:
    """Where each party runs: the function's CPU(s) and everyone else's, or unpinned."""

    function: set[int] | None
    others: set[int] | None
    note: str = ""
    seen: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def choose(cls) -> Placement:
        if not hasattr(os, "sched_getaffinity"):
            return cls(None, None, "not pinned: this platform has no CPU affinity")
        available = os.sched_getaffinity(0)
        split = cpu_split(available)
        if split is None:
            return cls(
                None,
                None,
                f"not pinned: {len(available)} CPU, so the function shares it with the "
                "AWS stand-in and the emulators (their CPU competes with the function's)",
            )
        function, others = split
        return cls(
            function,
            others,
            f"function on CPU {_cpus(function)}; AWS stand-in and emulators on CPU {_cpus(others)}",
        )

    def record(self, pids: Mapping[str, int]) -> None:
        if hasattr(os, "sched_getaffinity"):
            for party, pid in pids.items():
                try:
                    self.seen[party] = sorted(os.sched_getaffinity(pid))
                except OSError:
                    continue

    def as_dict(self) -> dict[str, Any]:
        return {
            "pinned": self.function is not None,
            "function_cpus": sorted(self.function) if self.function else None,
            "others_cpus": sorted(self.others) if self.others else None,
            "affinity_seen": self.seen,
            "note": self.note,
        }


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def run() -> dict[str, Any]:
    parameters = {"FirstPollSeconds": "3600", "PollIntervalSeconds": "3600"}
    placement = Placement.choose()
    original = os.sched_getaffinity(0) if placement.others else None
    if placement.others:
        # This process is the emulators' (their threads start later and inherit it).
        pin(os.getpid(), placement.others)
    load_start = os.getloadavg()
    try:
        return _measure(parameters, placement, load_start)
    finally:
        if original is not None:
            pin(os.getpid(), original)


def _measure(
    parameters: dict[str, str], placement: Placement, load_start: tuple[float, float, float]
) -> dict[str, Any]:
    function_cpu = min(placement.function) if placement.function else None
    # DynamoDB's writes atomic in the stand-in too (the job and its claim are a transaction).
    aws = moto_process(execute_trackers=False, cpus=placement.others, atomic_writes=True)
    with (
        aws as (endpoint, aws_pid),
        local_stack(parameters, feed_queue=False, aws_endpoint=endpoint) as local,
    ):
        for emulator in local.emulators.values():
            emulator.configure(latency=LATENCY_SECONDS, queued=0.0, duration=3600.0)
        stack = local.require_stack()
        spec = stack.function("CreateJobFunction")
        source = local.source
        assert source is not None
        function = WarmFunction(
            str(spec.code_dir / "app.py"), spec.function_name, placement.function
        )
        floor_dir = Path(tempfile.mkdtemp(prefix="jobrelay-bench-floor-"))
        (floor_dir / "app.py").write_text(FLOOR_HANDLER)
        floor_function = WarmFunction(
            str(floor_dir / "app.py"), spec.function_name + "-floor", placement.function
        )
        pids = {"function": function.process.pid, "aws": aws_pid, "providers": os.getpid()}
        others = ("aws", "providers")

        def cpu() -> dict[str, float | None]:
            return {party: cpu_seconds(pid) for party, pid in pids.items() if party in others}

        def provider_calls_since(moment: float) -> list[dict[str, Any]]:
            return [
                entry
                for emulator in local.emulators.values()
                for entry in emulator.requests()
                if entry["received_mono"] >= moment
            ]

        @dataclass
        class Measured:
            call: Invocation
            spent: dict[str, float | None]
            provider_calls: int
            creates: int
            peak: int
            foreign_share: float | None  # others' work on the function's CPU, of wall time
            timeline: dict[str, float] | None

        def invoke(
            bodies: list[dict[str, Any]], *, profile: bool = False, floor: bool = False
        ) -> Measured:
            before, moment = cpu(), time.monotonic()
            busy = cpu_busy(function_cpu) if function_cpu is not None else None
            handler = floor_function if floor else function
            call = handler.invoke(_event(source, bodies), profile=profile)
            after = cpu()
            busy_after = cpu_busy(function_cpu) if function_cpu is not None else None
            wall = time.monotonic() - moment
            spent: dict[str, float | None] = {
                party: (after[party] - start)  # type: ignore[operator]
                if start is not None and after[party] is not None
                else None
                for party, start in before.items()
            }
            spent["function"] = call.cpu_seconds
            entries = provider_calls_since(moment)
            creates = [entry for entry in entries if entry["creates"]]
            foreign = (
                max(0.0, (busy_after - busy - call.cpu_seconds) / wall)
                if busy is not None and busy_after is not None and wall > 0
                else None
            )
            return Measured(
                call,
                spent,
                len(entries),
                len(creates),
                peak_in_flight(creates),
                foreign,
                timeline(creates, moment, moment + wall),
            )

        try:
            # Warm: imports, secrets, AWS clients (a warm Lambda is what a batch meets mostly).
            function.invoke(_event(source, mixed_requests("warm", 3)))
            floor_function.invoke(_event(source, mixed_requests("floor-warm", 3)))
            placement.record(pids)
            results: dict[str, Any] = {
                "latency_seconds": LATENCY_SECONDS,
                "cores": os.cpu_count(),
                "placement": placement.as_dict(),
                "aws": "moto server in its own process; trackers recorded, not interpreted",
                "batches": [],
            }
            for size in BATCHES:
                with_floor = size == FLOOR_BATCH
                singles, floor_singles = [], []
                for i, body in enumerate(mixed_requests(f"one{size}", size)):
                    singles.append(invoke([body]))
                    if with_floor:
                        floor_body = {**body, "request_id": f"floor-one{size}-{i}"}
                        floor_singles.append(invoke([floor_body], floor=True))
                runs, floor_runs = [], []
                for repeat in range(REPEATS[size]):
                    runs.append(invoke(mixed_requests(f"batch{size}-{repeat}", size)))
                    if with_floor:
                        bodies = mixed_requests(f"floor-batch{size}-{repeat}", size)
                        floor_runs.append(invoke(bodies, floor=True))
                single_seconds = [one.call.seconds for one in singles]
                batch = statistics.median(run.call.seconds for run in runs)
                per_record: dict[str, float | None] = {
                    party: (
                        statistics.median(run.spent[party] or 0.0 for run in runs) / size
                        if all(run.spent[party] is not None for run in runs)
                        else None
                    )
                    for party in pids
                }
                function_floor = (per_record["function"] or 0.0) * size
                # The stand-in and the emulators share their CPU(s) (all of them, unpinned).
                other_cores = len(placement.others) if placement.others else (os.cpu_count() or 1)
                others_floor = sum(per_record[p] or 0.0 for p in others) * size / other_cores
                if placement.function is None:
                    floor = (function_floor + others_floor * other_cores) / other_cores
                else:
                    floor = max(function_floor, others_floor)
                foreign = [run.foreign_share for run in runs if run.foreign_share is not None]
                results["batches"].append(
                    {
                        "records": size,
                        "batch_seconds": batch,
                        "batch_runs_seconds": [run.call.seconds for run in runs],
                        # Provider calls of one batch in flight together (all of them: the
                        # records overlap their network waits).
                        "creates_in_flight_peak": statistics.median(run.peak for run in runs),
                        "sequential_seconds": sum(single_seconds),
                        "slowest_single_seconds": max(single_seconds),
                        "median_single_seconds": statistics.median(single_seconds),
                        "batch_to_slowest_single": batch / max(single_seconds),
                        "batch_to_sequential": batch / sum(single_seconds),
                        "cpu_seconds_per_record": per_record,
                        "cpu_runs_seconds_per_record": [
                            run.call.cpu_seconds / size for run in runs
                        ],
                        "single_cpu_seconds_median": statistics.median(
                            one.call.cpu_seconds for one in singles
                        ),
                        # What the batch's CPU alone needs: the function's on its CPU, the
                        # stand-in's and the emulators' on theirs (all on all, unpinned).
                        "cpu_floor_seconds": floor,
                        "function_cpu_floor_seconds": function_floor,
                        "others_cpu_floor_seconds": others_floor,
                        "aws_calls_per_record": calls_per_record(
                            (run.call.aws_calls for run in runs), size * len(runs)
                        ),
                        "single_aws_calls_per_record": calls_per_record(
                            (one.call.aws_calls for one in singles), size
                        ),
                        # The CPU the function's threads spent inside its calls (timed
                        # around each, no profiler): AWS ones by operation, provider ones.
                        "cpu_in_calls": cpu_in_calls(
                            [run.call for run in runs], size * len(runs), per_record["function"]
                        ),
                        # Where a batch's wall time goes, against a single call's: until
                        # the first provider call, while they all leave, the provider's
                        # answer, and from the last answer to the end (medians).
                        "timeline": median_timeline(run.timeline for run in runs),
                        "single_timeline": median_timeline(one.timeline for one in singles),
                        "provider_calls_per_record": sum(run.provider_calls for run in runs)
                        / (size * len(runs)),
                        "creates_per_record": sum(run.creates for run in runs) / (size * len(runs)),
                        # Other processes' CPU on the function's CPU while a batch ran (other
                        # work on a shared machine), as a share of the batch's wall time.
                        "foreign_load_on_function_cpu": (
                            statistics.median(foreign) if foreign else None
                        ),
                    }
                )
                if with_floor:
                    results["batches"][-1]["dependency_floor"] = floor_figures(
                        floor_singles, floor_runs, size
                    )
                if size == PROFILED_BATCH:
                    profiled = invoke(
                        mixed_requests(f"profile{size}", size), profile=True
                    ).call.profile
                    results["profile"] = {
                        "records": size,
                        "how": "cProfile, thread CPU time, every thread; one more batch",
                        **profile_breakdown(profiled or [], size, per_record["function"]),
                    }
            results["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
            return results
        finally:
            function.close()
            floor_function.close()
            shutil.rmtree(floor_dir, ignore_errors=True)
