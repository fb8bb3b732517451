"""What the benchmark sections share: a quiet local stack, sample requests and the clock."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobrelay_local.runtime import LocalStack

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPELINE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"
PROVIDERS = ("deepset", "pixxel", "matatika")


def request(request_id: str, provider: str, **tracking: int) -> dict[str, Any]:
    """A valid request for `provider` (the samples the integration tests use)."""
    samples: dict[str, dict[str, Any]] = {
        "deepset": {
            "workspace_id": WORKSPACE,
            "name": "bench",
            "pipeline_id": PIPELINE,
            "execution_mode": "ACROSS_FILES",
            "queries": [{"query": "q1"}, {"query": "q2"}],
        },
        "pixxel": {"workflow_id": "wf-bench", "project_id": "proj-bench"},
        # Matatika runs one job per pipeline at a time (409 "busy"): one pipeline each.
        "matatika": {"pipeline_id": f"pipe-{request_id}"},
    }
    params = samples[provider]
    body: dict[str, Any] = {"request_id": request_id, "provider": provider, "params": params}
    if tracking:
        body["tracking"] = tracking
    return body


def mixed_requests(prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` requests, the three providers in turn."""
    return [request(f"{prefix}-{i}", PROVIDERS[i % 3]) for i in range(count)]


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
