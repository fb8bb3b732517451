"""Unit fixtures: providers wired to an in-memory httpx transport. No test here opens a
network socket: pytest-socket refuses every one (Unix socket pairs, which asyncio's event
loop uses internally, stay allowed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jobrelay.models import JobRef
from jobrelay.providers import Provider
from jobrelay.providers.http import ProviderHttp, RetryPolicy
from jobrelay.registry import REGISTRY
from jobrelay.secrets import StaticKey
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


BASE_URLS = {
    "deepset": "https://api.cloud.deepset.ai",
    "pixxel": "https://api.pixxel.space",
    "matatika": "https://app.matatika.com",
}

Route = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """An httpx transport answering from a handler and keeping every request it saw."""

    def __init__(self, handler: Route) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def make_provider():
    def make(name: str, handler: Route, *, key: str = "secret-key", attempts: int = 3):
        recorder = Recorder(handler)
        client = httpx.Client(transport=httpx.MockTransport(recorder))
        http = ProviderHttp(
            client,
            provider=name,
            retry=RetryPolicy(max_attempts=attempts, sleep=recorder.sleeps.append),
        )
        provider: Provider = REGISTRY[name].adapter(http, BASE_URLS[name], StaticKey(key))
        return provider, recorder

    return make


def job_ref(provider: str, remote_job_id: str = "job-1", **locator: str) -> JobRef:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    return JobRef(
        request_id="req-1",
        provider=provider,
        remote_job_id=remote_job_id,
        locator=locator,
        created_at=now,
        deadline_at=now + timedelta(hours=1),
        poll_interval_seconds=30,
    )
