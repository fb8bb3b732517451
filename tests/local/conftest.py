"""Shared by the emulator tests: the three emulators on loopback (fast jobs, reset before each
test), an HTTP client for each, and the request shapes the tests send them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jobrelay_local.emulators import DEFAULT_API_KEY, Behaviour, EmulatorServer
from jobrelay_local.emulators.deepset import DeepsetEmulator
from jobrelay_local.emulators.matatika import MatatikaEmulator
from jobrelay_local.emulators.pixxel import PixxelEmulator

FAST = Behaviour(duration=0.3, queued=0.05)
WORKSPACE = "6f1c2b8e-0d7e-4c39-9a57-2f4a1c1e9b10"
PIPELINE = "0b8f2f8e-3c1d-4e4f-8a4b-9d2f6c7e1a55"
OTHER_PIPELINE = "9a6d4c2b-1e3f-4a5b-8c7d-0e1f2a3b4c5d"
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
DEEPSET_JOBS = f"/api/v2/workspaces/{WORKSPACE}/jobs"
TERMINAL_DEEPSET = {"ENDED", "FAILED"}
TERMINAL_PIXXEL = {"completed", "failed"}
TERMINAL_MATATIKA = {"COMPLETE", "ERROR", "STOPPED"}


def wait_until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 3.0) -> Any:
    """Poll `read` until `done` holds; returns every value seen, last one last."""
    seen = [read()]
    deadline = time.monotonic() + timeout
    while not done(seen[-1]):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; last value: {seen[-1]!r}")
        time.sleep(0.02)
        seen.append(read())
    return seen


def deepset_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly eval",
        "pipeline_id": PIPELINE,
        "execution_mode": "PER_FILE",
        "queries": [{"query": f"question {n}"} for n in range(4)],
    }
    return {**body, **overrides}


def pixxel_jobs(workflow: str = "wf-ndvi") -> str:
    return f"/v0/workflows/{workflow}/jobs"


def matatika_create(mt: httpx.Client, pipeline: str = PIPELINE) -> httpx.Response:
    return mt.post(f"/api/pipelines/{pipeline}/jobs")


@pytest.fixture(scope="module")
def deepset() -> Iterator[DeepsetEmulator]:
    with DeepsetEmulator(defaults=FAST) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def pixxel() -> Iterator[PixxelEmulator]:
    with PixxelEmulator(defaults=FAST) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def matatika() -> Iterator[MatatikaEmulator]:
    with MatatikaEmulator(defaults=FAST) as emulator:
        yield emulator


def _client(emulator: EmulatorServer, headers: dict[str, str]) -> Iterator[httpx.Client]:
    emulator.reset()
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=5.0) as client:
        yield client


@pytest.fixture
def ds(deepset: DeepsetEmulator) -> Iterator[httpx.Client]:
    yield from _client(deepset, BEARER)


@pytest.fixture
def px(pixxel: PixxelEmulator) -> Iterator[httpx.Client]:
    # Pixxel's docs send the raw key, without a scheme.
    yield from _client(pixxel, {"Authorization": DEFAULT_API_KEY})


@pytest.fixture
def mt(matatika: MatatikaEmulator) -> Iterator[httpx.Client]:
    yield from _client(matatika, BEARER)
