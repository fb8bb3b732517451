"""The HTTP side every adapter shares: explicit timeouts, capped jittered retries, and one
classification of every failure as retryable (`ProviderUnavailable`) or permanent.

Only calls that are safe to repeat are retried here. A create call is retried only when the
request provably did not reach the provider (connect errors) or was refused without effect
(429, and what the adapter names as "busy"); anything ambiguous surfaces as
`ProviderUnavailable(ambiguous=True)` so the caller reconciles before trying again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import httpx
from aws_lambda_powertools.metrics import MetricUnit

from jobrelay.errors import ProviderProtocolError, ProviderUnavailable
from jobrelay.observability import record_metric

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# Never sleep longer than this inside one Lambda call; a longer Retry-After is handed back
# to SQS or Step Functions, which wait for free.
MAX_INLINE_WAIT_SECONDS = 5.0


class RetryPolicy(NamedTuple):
    """Capped, jittered retries. A NamedTuple, not a dataclass: making a dataclass compiles
    its methods, about a millisecond of every cold start."""

    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        """Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds, from either of its two forms (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def read_json(response: httpx.Response) -> Any:
    """The response body as JSON, or `ProviderProtocolError` naming what was wrong."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderProtocolError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON ({len(response.content)} bytes)"
        ) from exc


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON when it is JSON; error bodies are read best-effort."""
    try:
        return response.json()
    except ValueError:
        return None


class ProviderHttp:
    """A thin wrapper around one `httpx.Client` with the retry and error rules above."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        provider: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.provider = provider
        self.retry = retry or RetryPolicy()

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        retry_statuses: Iterable[int] = (),
        headers: dict[str, str] | None = None,
        on_unauthorized: Callable[[], dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request, retrying what is safe, and return any non-transient response.

        `idempotent` requests (GET, PUT stop, DELETE) are retried on every transient
        failure; others only where the provider cannot have acted. `retry_statuses` adds
        statuses that mean "refused, try later" for this call (Matatika's 409 on create).
        `on_unauthorized` is called once on a 401 to get fresh auth headers (token refresh).
        """
        # A 5xx on a create may come after the provider acted: never repeat those blindly;
        # they surface below as ambiguous. 429 is a refusal without effect.
        base = RETRYABLE_STATUS if idempotent else frozenset({429})
        retryable = base | frozenset(retry_statuses)
        attempt = 0
        refreshed = False
        send_headers = dict(headers or {})
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = self.client.request(method, url, headers=send_headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left: always safe to try again.
                if attempt < self.retry.max_attempts:
                    self.retry.sleep(self.retry.backoff(attempt))
                    continue
                raise ProviderUnavailable(
                    f"{self.provider}: cannot connect ({type(exc).__name__})"
                ) from exc
            except httpx.TransportError as exc:
                # Read timeouts, resets, protocol errors: the request may have been acted on.
                if idempotent and attempt < self.retry.max_attempts:
                    self.retry.sleep(self.retry.backoff(attempt))
                    continue
                raise ProviderUnavailable(
                    f"{self.provider}: {method} failed in transit ({type(exc).__name__})",
                    ambiguous=not idempotent,
                ) from exc

            record_metric(
                "ProviderCallLatency",
                (time.perf_counter() - started) * 1000,
                MetricUnit.Milliseconds,
                provider=self.provider,
                operation=method,
            )
            if response.status_code == 401 and on_unauthorized is not None and not refreshed:
                refreshed = True
                send_headers.update(on_unauthorized())
                attempt -= 1
                continue
            if response.status_code in retryable:
                wait = retry_after_seconds(response)
                if attempt < self.retry.max_attempts and (wait or 0) <= MAX_INLINE_WAIT_SECONDS:
                    self.retry.sleep(wait if wait is not None else self.retry.backoff(attempt))
                    continue
                raise ProviderUnavailable(
                    f"{self.provider}: {method} answered {response.status_code}",
                    status_code=response.status_code,
                    retry_after=wait,
                )
            if response.status_code >= 500:
                raise ProviderUnavailable(
                    f"{self.provider}: {method} answered {response.status_code}",
                    status_code=response.status_code,
                    ambiguous=not idempotent,
                )
            return response
