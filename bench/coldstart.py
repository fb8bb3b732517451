"""(2) Cold start: each handler in a new Python process, from spawn to its first event
handled (real work: AWS calls to a moto server in a process of its own, provider calls to
the emulators), with its peak memory, next to a new process that only imports boto3 and
builds one client. Also the layer's zipped size.

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
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
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

# The child: hide what Lambda would not have, import the handler, handle one event.
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
started = time.perf_counter()
kind = sys.argv[2]
if kind == "baseline":
    import boto3
    boto3.client("sqs")
    outcome = "client built"
else:
    import importlib.util
    spec = importlib.util.spec_from_file_location("app", sys.argv[3])
    app = importlib.util.module_from_spec(spec)
    sys.path.insert(0, sys.argv[3].rsplit("/", 1)[0])
    spec.loader.exec_module(app)
    imported = time.perf_counter()
    class Context:
        function_name = sys.argv[5]
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + sys.argv[5]
        memory_limit_in_mb = 256
        function_version = "$LATEST"
        aws_request_id = "cold-start"
        log_group_name = "/aws/lambda/" + sys.argv[5]
        log_stream_name = "cold"
        def get_remaining_time_in_millis(self):
            return 30000
    answer = app.lambda_handler(json.loads(sys.argv[4]), Context())
    outcome = json.dumps(answer)[:300]
handled = time.perf_counter()
if kind == "baseline":
    imported = handled
# The high-water mark of this process's memory (ru_maxrss would include the parent's, from
# before the exec).
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
report = {"peak_kb": peak, "outcome": outcome, "import_seconds": imported - started,
          "event_seconds": handled - imported}
print("BENCH-COLD-START " + json.dumps(report), flush=True)
"""


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


def _child(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Spawn the child; seconds until it printed its mark, and what it reported."""
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter running our own child code
        [sys.executable, "-c", CHILD, *args],
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
            return seconds, report
    _, errors = process.communicate(timeout=60)
    raise RuntimeError(f"cold start child {args[1]} failed: {errors[-2000:]}")


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


def run(rounds: int) -> dict[str, Any]:
    parameters = {"FirstPollSeconds": "3600", "PollIntervalSeconds": "3600"}
    with (
        moto_process(execute_trackers=False) as (endpoint, _),
        local_stack(parameters, feed_queue=False, aws_endpoint=endpoint) as local,
    ):
        stack = local.require_stack()
        tracker = _events(local)
        blocked = ",".join(blocked_modules())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        handlers = {
            "CreateJob": stack.function("CreateJobFunction"),
            "PollJobStatus": stack.function("PollJobStatusFunction"),
            "PublishOutcome": stack.function("PublishOutcomeFunction"),
        }

        def event(kind: str, index: int) -> dict[str, Any]:
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

        # Warm the disk cache and bytecode of everything once, outside the measurement.
        _child([blocked, "baseline"], env)
        for name, spec in handlers.items():
            app = str(spec.code_dir / "app.py")
            _child([blocked, name, app, json.dumps(event(name, -1)), spec.function_name], env)
        samples: dict[str, list[dict[str, float]]] = {"baseline": [], **{n: [] for n in handlers}}
        for index in range(rounds):
            seconds, report = _child([blocked, "baseline"], env)
            samples["baseline"].append({"seconds": seconds, **report})
            for name, spec in handlers.items():
                app = str(spec.code_dir / "app.py")
                args = [blocked, name, app, json.dumps(event(name, index)), spec.function_name]
                seconds, report = _child(args, env)
                if '"batchItemFailures": [{' in report["outcome"]:
                    raise RuntimeError(f"{name} did not handle its event: {report['outcome']}")
                samples[name].append({"seconds": seconds, **report})
    baseline = statistics.median(s["seconds"] for s in samples["baseline"])
    results: dict[str, Any] = {"rounds": rounds, "blocked_modules": len(blocked.split(","))}
    for name, values in samples.items():
        median = statistics.median(s["seconds"] for s in values)
        results[name] = {
            "median_seconds": median,
            "min_seconds": min(s["seconds"] for s in values),
            "import_seconds": statistics.median(s["import_seconds"] for s in values),
            "first_event_seconds": statistics.median(s["event_seconds"] for s in values),
            "peak_memory_mb": statistics.median(s["peak_kb"] for s in values) / 1024,
            "to_baseline": median / baseline,
        }
    results["layer"] = layer_zip_size()
    return results
