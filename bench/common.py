"""What the benchmark sections share: a quiet local stack, sample requests and the clock."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobrelay.registry import PROVIDER_NAMES
from jobrelay_local.config import MOTO_CONFIG
from jobrelay_local.emulators import sample_params
from jobrelay_local.runtime import LocalStack

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = PROVIDER_NAMES


def request(request_id: str, provider: str, **tracking: int) -> dict[str, Any]:
    """A valid request for `provider`, with the sample params of its emulator module."""
    params = sample_params(provider, request_id)
    body: dict[str, Any] = {"request_id": request_id, "provider": provider, "params": params}
    if tracking:
        body["tracking"] = tracking
    return body


def mixed_requests(prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` requests, the providers in turn."""
    return [request(f"{prefix}-{i}", PROVIDERS[i % len(PROVIDERS)]) for i in range(count)]


def quiet() -> None:
    """moto's and the template's warnings are noise here; the functions' logs go to a file."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@contextmanager
def local_stack(parameters: Mapping[str, str], **options: Any) -> Iterator[LocalStack]:
    """The local stack with the functions' logs and metrics in a scratch directory."""
    quiet()
    with tempfile.TemporaryDirectory(prefix="jobrelay-bench-") as scratch:
        stack = LocalStack(
            environ={},
            parameters=dict(parameters),
            log_file=Path(scratch) / "logs.jsonl",
            metrics_file=Path(scratch) / "metrics.jsonl",
            **options,
        )
        with stack:
            yield stack


class Stopwatch:
    """Wall time of a block: `with Stopwatch() as watch: ...; watch.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# moto's server with the local stack's atomic DynamoDB writes (`moto_process`).
ATOMIC_MOTO_SERVER = """
import sys
from jobrelay_local.atomic_writes import atomic_dynamodb_writes
from moto.server import main
with atomic_dynamodb_writes():
    main(sys.argv[1:])
"""


def cpu_split(available: set[int]) -> tuple[set[int], set[int]] | None:
    """The function's CPU and everyone else's, as Lambda has them: one CPU for the function's
    process (CreateJob has one vCPU), the rest for the AWS stand-in and the emulators. None
    when there is only one CPU to give (nothing can be pinned apart)."""
    if len(available) < 2:
        return None
    ordered = sorted(available)
    return {ordered[0]}, set(ordered[1:])


def pin(pid: int, cpus: set[int]) -> bool:
    """Put every thread of process `pid` on `cpus` (threads it starts later inherit it);
    False where the platform cannot (no `sched_setaffinity`) or the process is gone."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    try:
        for tid in threads:
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    except OSError:
        return False
    return True


@contextmanager
def moto_process(
    *, execute_trackers: bool, cpus: set[int] | None = None, atomic_writes: bool = False
) -> Iterator[tuple[str, int]]:
    """A moto server in a process of its own (AWS is not in the function's process, nor
    does it share its interpreter lock); yields its endpoint URL and process id.

    `execute_trackers=False` has Step Functions record executions without interpreting
    them: in AWS that interpretation runs on AWS's side, and moto's (it parses the ASL on
    every StartExecution) would otherwise compete for this machine's cores.

    `cpus` pins the server to those CPUs (`pin`), so that it does not compete with a
    function pinned to another; None leaves it where the scheduler puts it.

    `atomic_writes` serves DynamoDB with the local stack's `atomic_dynamodb_writes` (its
    conditional writes and transactions atomic, as DynamoDB's are; a transaction backs up
    its own items only), which the local stack applies to its own moto but cannot to a
    server in another process: under concurrent transactions moto's own answers 500.
    """
    port = free_port()
    serve = ["-m", "moto.server"] if not atomic_writes else ["-c", ATOMIC_MOTO_SERVER]
    server = subprocess.Popen(  # noqa: S603 - our interpreter running moto's server
        [sys.executable, *serve, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if cpus is not None:
        pin(server.pid, cpus)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/config", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        config = {**MOTO_CONFIG, "stepfunctions": {"execute_state_machine": execute_trackers}}
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{url}/moto-api/config",
            data=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - loopback
        if cpus is not None:
            pin(server.pid, cpus)  # and the threads it started meanwhile
        yield url, server.pid
    finally:
        server.kill()
        server.wait(timeout=30)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far (Linux `/proc`; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
