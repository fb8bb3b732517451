"""(2) Cold start: each handler in a new Python process, from spawn to its first event
handled (real work: AWS calls to a moto server in a process of its own, provider calls to
the emulators), with its peak memory, next to its **dependency floor** and, for continuity,
a new process that only imports boto3 and builds one client. Also the layer's zipped size.

A function's floor is a handler that imports exactly what the design fixes (boto3 with one
client, pydantic with one model, httpx with one client, the Powertools Logger) and, for its
first event, makes as many AWS calls to the same moto server and as many HTTP calls to the
same provider emulator as that function's first event makes (counted in an untimed run of
the function: every botocore API call and every httpx request of the new process). What
the function takes beyond its floor is jobrelay's own work: its modules, models, settings,
extra clients and wiring.

Beside it, reported and not a target, the **design floor**: the floor plus what else
DESIGN.md fixes for that function, the Powertools utilities its first event imported and one
client per AWS service it called. The function against it is jobrelay's own work alone.

Every child sees only the distributions a Lambda function would: the layer's requirements
and what they pull in, plus boto3 (the runtime's). The development environment has more
(rich, click, moto…), and some libraries import optional extras when they find them (httpx
loads its command line, with rich and click, if it can), which Lambda never pays for.
"""

from __future__ import annotations

import importlib.metadata as metadata
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import boto3
from jobrelay_local.deployment import DeployedStack
from jobrelay_local.lambdas import FakeLambdaContext
from jobrelay_local.runtime import LocalStack
from packaging.requirements import Requirement

from bench.common import ROOT, local_stack, moto_process, request

LAYER_REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
LAYER_CODE = ROOT / "layers" / "common" / "python"
# What the Lambda Python runtime already carries (so a layer needs none of it).
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
)
MARK = "BENCH-COLD-START "
# Where this machine may point TLS clients at its own CA bundle (a Lambda function has none
# of these set).
CA_BUNDLE_VARIABLES = frozenset(
    {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE"}
)
HANDLERS = ("CreateJob", "PollJobStatus", "PublishOutcome")
# Untimed runs of each function and floor that count (and time) their calls.
COUNTED_RUNS = 3

# The child: hide what Lambda would not have, import the handler (a function's, the floor's,
# or the baseline's), handle one event. argv: blocked modules, kind, options (JSON).
CHILD = r"""
import sys
BLOCKED = frozenset(sys.argv[1].split(","))
class _Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Absent)
import json, time
POWERTOOLS_UTILITIES = __POWERTOOLS_UTILITIES__
kind = sys.argv[2]
options = json.loads(sys.argv[3])
calls = []
if options.get("count"):
    # An untimed run: note every AWS API call and every HTTP request the process makes,
    # with the seconds it waited for each answer (the stand-in's time, and the network's).
    import botocore.client, botocore.endpoint, httpx
    _api_call = botocore.client.BaseClient._make_api_call
    def _counted_api_call(self, operation, params):
        calls.append(["aws", self.meta.service_model.service_name, operation, 0.0])
        return _api_call(self, operation, params)
    botocore.client.BaseClient._make_api_call = _counted_api_call
    _wire = botocore.endpoint.Endpoint._send
    def _timed_wire(self, request):
        begun = time.perf_counter()
        try:
            return _wire(self, request)
        finally:
            calls[-1][3] += time.perf_counter() - begun
    botocore.endpoint.Endpoint._send = _timed_wire
    _send = httpx.Client.send
    def _counted_send(self, request, **kwargs):
        calls.append(["http", request.method, str(request.url), 0.0])
        begun = time.perf_counter()
        try:
            return _send(self, request, **kwargs)
        finally:
            calls[-1][3] += time.perf_counter() - begun
    httpx.Client.send = _counted_send
class Context:
    function_name = options.get("function_name", "cold")
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 256
    function_version = "$LATEST"
    aws_request_id = "cold-start"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "cold"
    def get_remaining_time_in_millis(self):
        return 30000
started = time.perf_counter()
if kind == "baseline":
    import boto3
    boto3.client("sqs")
    imported = time.perf_counter()
    outcome = "client built"
else:
    import importlib.util
    path = options["app"]
    spec = importlib.util.spec_from_file_location("app", path)
    app = importlib.util.module_from_spec(spec)
    sys.path.insert(0, path.rsplit("/", 1)[0])
    spec.loader.exec_module(app)
    imported = time.perf_counter()
    answer = app.lambda_handler(options["event"], Context())
    outcome = json.dumps(answer)[:300]
handled = time.perf_counter()
if options.get("mark_handled"):
    import os
    os.getppid()  # where callgrind dumps its counts (bench.instructions: --dump-before)
powertools = []
if options.get("count"):
    powertools = sorted(name for name in POWERTOOLS_UTILITIES if name in sys.modules)
# The high-water mark of this process's memory: ru_maxrss of the new program alone
# (getrusage's would include the parent's, from before the exec).
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
report = {"peak_kb": peak, "outcome": outcome, "import_seconds": imported - started,
          "event_seconds": handled - imported, "calls": calls, "powertools": powertools}
print("BENCH-COLD-START " + json.dumps(report), flush=True)
"""

# The Powertools utilities DESIGN.md fixes ("Powertools everywhere it has a utility"), which
# the design floor imports where the function's first event imported them (the Logger is in
# both floors).
POWERTOOLS_UTILITIES = (
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
)
CHILD = CHILD.replace("__POWERTOOLS_UTILITIES__", repr(POWERTOOLS_UTILITIES))


def _name(dist: metadata.Distribution) -> str:
    return re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()


def closure(roots: list[str]) -> set[str]:
    """The installed distributions `roots` (requirement strings) need, transitively."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(r) for r in roots]
    while pending:
        requirement = pending.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        extras = requirement.extras or {""}
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                pending.append(child)
    return {name for name, _ in seen}


def _top_level(dist: metadata.Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__"):
            continue
        names.add(first.removesuffix(".py"))
    return names


def layer_requirements() -> list[str]:
    return [
        line.strip()
        for line in LAYER_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def blocked_modules() -> list[str]:
    """Top-level modules of every installed distribution a Lambda function would not have."""
    allowed = closure([*layer_requirements(), "boto3"]) | {"jobrelay"}
    keep: set[str] = set()
    block: set[str] = set()
    for dist in metadata.distributions():
        (keep if _name(dist) in allowed else block).update(_top_level(dist))
    return sorted(block - keep - set(sys.stdlib_module_names) - {"jobrelay", ""})


def layer_zip_size() -> dict[str, Any]:
    """The layer as `make build-CommonLayer` lays it out (python/…), zipped, from the
    installed files of its requirements' closure plus jobrelay's own code, without what the
    Lambda runtime provides (the Makefile leaves that out too)."""
    names = closure(layer_requirements())
    left_out: dict[str, int] = {}
    total = io.BytesIO()
    with zipfile.ZipFile(total, "w", zipfile.ZIP_DEFLATED) as layer:
        for name in sorted(names):
            dist = metadata.distribution(name)
            part = io.BytesIO()
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as alone:
                for file in dist.files or []:
                    path = Path(str(dist.locate_file(file)))
                    if "__pycache__" in file.parts or not path.is_file() or ".." in file.parts:
                        continue
                    target = alone if name in RUNTIME_PROVIDED else layer
                    target.write(path, f"python/{file}")
            if name in RUNTIME_PROVIDED:
                left_out[name] = len(part.getvalue())
        for path in sorted(LAYER_CODE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                layer.write(path, f"python/{path.relative_to(LAYER_CODE)}")
    return {
        "zipped_bytes": len(total.getvalue()),
        "runtime_provided_zipped_bytes": sum(left_out.values()),
        "runtime_provided_left_out": sorted(left_out),
        "distributions": sorted(names - set(left_out)),
    }


# The dependency floor: a handler module (loaded as the functions' app.py are, so its imports
# run as deep in the stack as theirs: CPython 3.11 maps and unmaps a 16 KB frame chunk each
# time a deep call chain crosses one, and `import boto3` a few frames deeper did that 1,600
# times) that imports what the design fixes and nothing of jobrelay, and for its first event
# makes the function's count of AWS calls (with its one client, to the same stand-in) and of
# provider calls (with its one httpx client, to the same emulator URLs).
FLOOR_HANDLER = """
import boto3
import httpx
from aws_lambda_powertools.logging import Logger
from pydantic import BaseModel

logger = Logger(service="floor")


class FloorEvent(BaseModel):
    aws_calls: int
    table: str
    http: list[str]
    event: dict


@logger.inject_lambda_context
def lambda_handler(event, context):
    floor = FloorEvent.model_validate(event)
    aws = boto3.client("dynamodb")
    for _ in range(floor.aws_calls):
        aws.get_item(TableName=floor.table, Key={"id": {"S": "floor"}}, ConsistentRead=True)
    if floor.http:
        # Built on the first event, as the functions build theirs (its TLS context too).
        with httpx.Client(timeout=10) as http:
            for url in floor.http:
                http.get(url)
    logger.info("floor event handled")
    return {"aws_calls": floor.aws_calls, "http_calls": len(floor.http)}
"""

# The design floor: the dependency floor plus the rest of what DESIGN.md fixes for that
# function: the Powertools utilities its first event imported (imported first, after boto3,
# as the functions' handlers order them: the batch utility imported after pydantic would
# load the parser's event models) and one client per AWS service its first event called,
# each making as many calls as the function made to that service, in the function's order,
# with a cheap read (`design_floor_call`). What the function takes beyond it is jobrelay's
# own modules, models, settings, validation and wiring, and the Powertools utilities' work.
DESIGN_FLOOR_HANDLER = """
import boto3
__UTILITIES__
import httpx
from aws_lambda_powertools.logging import Logger
from pydantic import BaseModel

logger = Logger(service="design-floor")


class FloorEvent(BaseModel):
    aws: list[dict]
    http: list[str]
    event: dict


@logger.inject_lambda_context
def lambda_handler(event, context):
    floor = FloorEvent.model_validate(event)
    clients = {}
    for call in floor.aws:
        if call["service"] not in clients:
            clients[call["service"]] = boto3.client(call["service"])
        getattr(clients[call["service"]], call["operation"])(**call["params"])
    if floor.http:
        with httpx.Client(timeout=10) as http:
            for url in floor.http:
                http.get(url)
    logger.info("design floor event handled")
    return {"aws_calls": len(floor.aws), "http_calls": len(floor.http)}
"""


def design_floor_handler(utilities: list[str]) -> str:
    """The design floor's module for a function whose first event imported `utilities`."""
    lines = [f"import {name}" for name in utilities if name in POWERTOOLS_UTILITIES]
    return DESIGN_FLOOR_HANDLER.replace("__UTILITIES__", "\n".join(lines))


def design_floor_call(service: str, stack: DeployedStack) -> dict[str, Any]:
    """One cheap read of `service` against the stack's own resources (the design floor's
    stand-in for each of the function's calls to that service)."""
    environment = stack.function("CreateJobFunction").environment
    reads: dict[str, tuple[str, dict[str, Any]]] = {
        "dynamodb": (
            "get_item",
            {
                "TableName": environment["IDEMPOTENCY_TABLE"],
                "Key": {"id": {"S": "floor"}},
                "ConsistentRead": True,
            },
        ),
        "secretsmanager": (
            "get_secret_value",
            {"SecretId": environment["DEEPSET_API_KEY_SECRET_ARN"]},
        ),
        "stepfunctions": ("describe_state_machine", {"stateMachineArn": stack.state_machine_arn}),
        "sns": ("get_topic_attributes", {"TopicArn": stack.topic_arn}),
        "sqs": ("get_queue_attributes", {"QueueUrl": environment["JOBS_QUEUE_URL"]}),
    }
    if service not in reads:
        raise RuntimeError(
            f"the design floor has no read for {service}: add one to design_floor_call"
        )
    operation, params = reads[service]
    return {"service": service, "operation": operation, "params": params}


# What one child reported, with the seconds from its spawn.
Sample = dict[str, Any]


def _child(kind: str, options: dict[str, Any], blocked: str, env: dict[str, str]) -> Sample:
    """Spawn the child; seconds until it printed its mark, and what it reported."""
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter running our own child code
        [sys.executable, "-c", CHILD, blocked, kind, json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(MARK):
            seconds = time.perf_counter() - started
            report: dict[str, Any] = json.loads(line[len(MARK) :])
            process.communicate(timeout=60)
            return {"seconds": seconds, **report}
    _, errors = process.communicate(timeout=60)
    raise RuntimeError(f"cold start child {kind} failed: {errors[-2000:]}")


def _events(local: LocalStack) -> dict[str, Any]:
    """A tracker document of a real job (created by CreateJob in this process)."""
    source = local.source
    assert source is not None
    spec = source.spec
    body = request("cold-seed", "matatika")
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "x", "Body": json.dumps(body)}
    context = FakeLambdaContext(spec.function_name, spec.function_arn, 256, spec.timeout)
    answer = source.handler({"Records": [source.lambda_record(message)]}, context)
    if answer["batchItemFailures"]:
        raise RuntimeError("could not create the job the cold starts poll")
    sfn = boto3.client("stepfunctions")
    arn = sfn.list_executions(stateMachineArn=local.require_stack().state_machine_arn)[
        "executions"
    ][0]["executionArn"]
    return dict(json.loads(sfn.describe_execution(executionArn=arn)["input"]))


def _calls(sample: Sample) -> dict[str, Any]:
    """What a counted run called: AWS operations by service and the provider URLs, and the
    seconds spent waiting for their answers (the stand-in's work and loopback's)."""
    aws = [
        (f"{service}.{op}", wait) for kind, service, op, wait in sample["calls"] if kind == "aws"
    ]
    http = [
        (f"{method} {url}", wait) for kind, method, url, wait in sample["calls"] if kind == "http"
    ]
    return {
        "aws": len(aws),
        "http": len(http),
        "aws_services": [service for kind, service, _, _ in sample["calls"] if kind == "aws"],
        "powertools": sample["powertools"],
        "aws_operations": dict(sorted(Counter(name for name, _ in aws).items())),
        "http_requests": [name for name, _ in http],
        "aws_wait_seconds": sum(wait for _, wait in aws),
        "http_wait_seconds": sum(wait for _, wait in http),
    }


def _waits(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The calls of the first counted run, with the median waits of all of them (every run
    must have made the same calls)."""
    if any((run["aws"], run["http"]) != (runs[0]["aws"], runs[0]["http"]) for run in runs):
        raise RuntimeError(f"counted runs made different calls: {runs}")
    return {
        **runs[0],
        "aws_wait_seconds": statistics.median(run["aws_wait_seconds"] for run in runs),
        "http_wait_seconds": statistics.median(run["http_wait_seconds"] for run in runs),
    }


def _figures(values: list[Sample]) -> dict[str, Any]:
    return {
        "median_seconds": statistics.median(s["seconds"] for s in values),
        "min_seconds": min(s["seconds"] for s in values),
        "import_seconds": statistics.median(s["import_seconds"] for s in values),
        "first_event_seconds": statistics.median(s["event_seconds"] for s in values),
        "peak_memory_mb": statistics.median(s["peak_kb"] for s in values) / 1024,
    }


class Prepared(NamedTuple):
    """A stack to start cold against, and what each child needs: every function's options,
    its floor's and its design floor's, the calls each function's first event made, and the
    environments (`warm` writes bytecode, `env` only reads it)."""

    blocked: str
    env: dict[str, str]
    warm: dict[str, str]
    function: Callable[..., dict[str, Any]]
    floors: dict[str, dict[str, Any]]
    design_floors: dict[str, dict[str, Any]]
    calls: dict[str, dict[str, Any]]
    floor_calls: dict[str, dict[str, Any]]


def checked(name: str, sample: Sample) -> Sample:
    if '"batchItemFailures": [{' in sample["outcome"]:
        raise RuntimeError(f"{name} did not handle its event: {sample['outcome']}")
    return sample


@contextmanager
def prepared() -> Iterator[Prepared]:
    """The stack, its first events and each function's two floors, counted and warmed."""
    parameters = {"FirstPollSeconds": "3600", "PollIntervalSeconds": "3600"}
    with (
        tempfile.TemporaryDirectory(prefix="jobrelay-pycache-") as pycache,
        tempfile.TemporaryDirectory(prefix="jobrelay-floor-") as scratch,
        moto_process(execute_trackers=False) as (endpoint, _),
        local_stack(parameters, feed_queue=False, aws_endpoint=endpoint) as local,
    ):
        stack = local.require_stack()
        tracker = _events(local)
        blocked = ",".join(blocked_modules())
        # Every module from bytecode, jobrelay's like its libraries' (pip compiled theirs
        # at install; a layer should ship jobrelay's compiled too): the untimed runs below
        # write it all into a scratch cache, the timed ones only read it. Without that,
        # jobrelay's own modules would be compiled on every cold start or not, depending on
        # whether something had written their __pycache__ before (PYTHONDONTWRITEBYTECODE).
        # Nor this machine's CA bundle settings, which a Lambda function has not (httpx would
        # load SSL_CERT_FILE's bundle for the floor, jobrelay always loads certifi's).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PYTHON") and k not in CA_BUNDLE_VARIABLES
        }
        # Secrets cached for the settings' default (300 s), as on Lambda, where the template
        # sets no SECRET_MAX_AGE_SECONDS: the local stack's 2 s (for tests that rotate a
        # secret) would make a child slowed by the shared cores, or by callgrind, read an
        # absent connection document twice.
        env.pop("SECRET_MAX_AGE_SECONDS", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        warm = dict(env)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        handlers = {name: stack.function(f"{name}Function") for name in HANDLERS}
        table = stack.function("PollJobStatusFunction").environment["IDEMPOTENCY_TABLE"]
        floor_app = Path(scratch) / "floor" / "app.py"
        floor_app.parent.mkdir()
        floor_app.write_text(FLOOR_HANDLER)
        design_floors: dict[str, dict[str, Any]] = {}

        def event(kind: str, index: int | str) -> dict[str, Any]:
            if kind == "PollJobStatus":
                return {"action": "poll", **tracker}
            if kind == "PublishOutcome":
                job = {**tracker["job"], "request_id": f"cold-publish-{index}"}
                poll = {**tracker["poll"], "status": "SUCCEEDED", "terminal": True}
                # As the definition's PublishOutcome task passes it: the document and the
                # execution publishing.
                arn = local.require_stack().state_machine_arn.replace(
                    ":stateMachine:", ":execution:"
                )
                return {
                    "document": {"job": job, "poll": poll},
                    "execution_arn": f"{arn}:cold-{index}",
                }
            body = json.dumps(request(f"cold-create-{index}", "deepset"))
            record = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "x", "Body": body}
            assert local.source is not None
            return {"Records": [local.source.lambda_record(record)]}

        def function(name: str, index: int | str, **extra: Any) -> dict[str, Any]:
            spec = handlers[name]
            return {
                "app": str(spec.code_dir / "app.py"),
                "event": event(name, index),
                "function_name": spec.function_name,
                **extra,
            }

        # Untimed: warm the disk cache and bytecode, and count what each function's first
        # event calls (its floor then makes as many calls); three counted runs of each, for
        # the median wait for answers.
        _child("baseline", {}, blocked, warm)
        calls: dict[str, dict[str, Any]] = {}
        floor_calls: dict[str, dict[str, Any]] = {}
        floors: dict[str, dict[str, Any]] = {}
        for name in handlers:
            counted = [
                _calls(
                    checked(
                        name, _child(name, function(name, f"count-{i}", count=True), blocked, warm)
                    )
                )
                for i in range(COUNTED_RUNS)
            ]
            calls[name] = _waits(counted)
            floors[name] = {
                "app": str(floor_app),
                "event": {
                    "aws_calls": calls[name]["aws"],
                    "http": [r.split(" ", 1)[1] for r in calls[name]["http_requests"]],
                    "table": table,
                    "event": event(name, "floor"),
                },
                "function_name": f"{name}Floor",
            }
            floor_calls[name] = _waits(
                [
                    _calls(_child("floor", {**floors[name], "count": True}, blocked, warm))
                    for _ in range(COUNTED_RUNS)
                ]
            )
            if (floor_calls[name]["aws"], floor_calls[name]["http"]) != (
                calls[name]["aws"],
                calls[name]["http"],
            ):
                raise RuntimeError(f"{name}'s floor called {floor_calls[name]}, not {calls[name]}")
            design_app = Path(scratch) / f"design-{name}" / "app.py"
            design_app.parent.mkdir()
            design_app.write_text(design_floor_handler(calls[name]["powertools"]))
            design_floors[name] = {
                "app": str(design_app),
                "event": {
                    "aws": [
                        design_floor_call(service, stack) for service in calls[name]["aws_services"]
                    ],
                    "http": floors[name]["event"]["http"],
                    "event": event(name, "floor"),
                },
                "function_name": f"{name}DesignFloor",
            }
            # One counted run: the calls (and the bytecode of its scratch module).
            design_calls = _calls(
                _child("floor", {**design_floors[name], "count": True}, blocked, warm)
            )
            if [design_calls[k] for k in ("aws_services", "http", "powertools")] != [
                calls[name][k] for k in ("aws_services", "http", "powertools")
            ]:
                raise RuntimeError(f"{name}'s design floor made {design_calls}, not {calls[name]}")
        yield Prepared(blocked, env, warm, function, floors, design_floors, calls, floor_calls)


def _round_ratios(ones: list[Sample], others: list[Sample], less: float = 0.0) -> list[float]:
    """Round by round, one child's seconds (less `less`) over the other's, which ran back to
    back with it."""
    return [(a["seconds"] - less) / b["seconds"] for a, b in zip(ones, others, strict=True)]


def run(rounds: int) -> dict[str, Any]:
    with prepared() as (
        blocked,
        env,
        _,
        function,
        floors,
        design_floors,
        calls,
        floor_calls,
    ):
        samples: dict[str, list[Sample]] = {"baseline": []}
        for name in HANDLERS:
            samples[name] = []
            samples[f"{name} floor"] = []
            samples[f"{name} design floor"] = []
        # Interleaved: each round runs the baseline, then each function, its floor and its
        # design floor one after the other (the order turns by round), so a slower spell of
        # the shared machine falls on all three.
        for index in range(rounds):
            samples["baseline"].append(_child("baseline", {}, blocked, env))
            for name in HANDLERS:
                order = ("function", "floor", "design floor")
                for which in order[index % 3 :] + order[: index % 3]:
                    if which == "floor":
                        samples[f"{name} floor"].append(_child("floor", floors[name], blocked, env))
                    elif which == "design floor":
                        samples[f"{name} design floor"].append(
                            _child("floor", design_floors[name], blocked, env)
                        )
                    else:
                        sample = _child(name, function(name, index), blocked, env)
                        samples[name].append(checked(name, sample))
    baseline = _figures(samples["baseline"])
    results: dict[str, Any] = {
        "rounds": rounds,
        "blocked_modules": len(blocked.split(",")),
        "baseline": {**baseline, "to_baseline": 1.0},
    }
    for name in HANDLERS:
        figures = _figures(samples[name])
        floor = _figures(samples[f"{name} floor"])
        # Each round's function and floor ran back to back: the median of their ratios, round
        # by round, is the comparison (a spell of load on the shared cores falls on both of a
        # pair, where it may fall on one side's median alone); the ratio of the medians beside.
        paired = _round_ratios(samples[name], samples[f"{name} floor"])
        # The stand-in's share: how much longer the function's calls waited for their answers
        # than the floor's GetItems (counted runs), which is moto's work, not jobrelay's.
        extra_wait = (calls[name]["aws_wait_seconds"] + calls[name]["http_wait_seconds"]) - (
            floor_calls[name]["aws_wait_seconds"] + floor_calls[name]["http_wait_seconds"]
        )
        net = _round_ratios(samples[name], samples[f"{name} floor"], less=extra_wait)
        design = _figures(samples[f"{name} design floor"])
        results[name] = {
            **figures,
            "to_floor": statistics.median(paired),
            "stand_in_extra_wait_seconds": extra_wait,
            "to_floor_without_stand_in_extra": statistics.median(net),
            "to_floor_of_medians": figures["median_seconds"] / floor["median_seconds"],
            "to_floor_rounds": [round(ratio, 3) for ratio in paired],
            "to_baseline": figures["median_seconds"] / baseline["median_seconds"],
            "memory_to_floor": figures["peak_memory_mb"] / floor["peak_memory_mb"],
            "floor": {
                **floor,
                "to_baseline": floor["median_seconds"] / baseline["median_seconds"],
                "calls": floor_calls[name],
            },
            "calls": calls[name],
            # Reported beside the target (which is against the floor above): how much of
            # the function's cold start is jobrelay's own beyond everything DESIGN.md fixes.
            "to_design_floor": statistics.median(
                _round_ratios(samples[name], samples[f"{name} design floor"])
            ),
            "to_design_floor_of_medians": figures["median_seconds"] / design["median_seconds"],
            "design_floor": {
                **design,
                "to_floor": statistics.median(
                    _round_ratios(samples[f"{name} design floor"], samples[f"{name} floor"])
                ),
                "powertools": calls[name]["powertools"],
                "aws_services": dict(sorted(Counter(calls[name]["aws_services"]).items())),
            },
        }
    results["layer"] = layer_zip_size()
    return results
