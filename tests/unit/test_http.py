"""Error classification and retries shared by every adapter."""

from __future__ import annotations

import httpx
import pytest
from jobrelay.errors import ProviderUnavailable
from jobrelay.providers.http import ProviderHttp, RetryPolicy, retry_after_seconds


def http_with(handler, attempts=3):
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return ProviderHttp(
        client, provider="x", retry=RetryPolicy(attempts, sleep=sleeps.append)
    ), sleeps


def sequence(*responses):
    answers = list(responses)
    seen = []

    def handler(request):
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def test_get_is_retried_on_503_then_succeeds():
    handler = sequence(httpx.Response(503), httpx.Response(502), httpx.Response(200, json={}))
    http, sleeps = http_with(handler)
    assert http.request("GET", "https://p/x", idempotent=True).status_code == 200
    assert len(handler.seen) == 3
    assert len(sleeps) == 2


def test_429_honours_retry_after():
    handler = sequence(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(201))
    http, sleeps = http_with(handler)
    assert http.request("POST", "https://p/x", idempotent=False).status_code == 201
    assert sleeps == [2.0]


def test_429_with_a_long_retry_after_is_handed_back_not_slept():
    handler = sequence(httpx.Response(429, headers={"Retry-After": "120"}))
    http, sleeps = http_with(handler)
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("GET", "https://p/x", idempotent=True)
    assert caught.value.retry_after == 120.0
    assert sleeps == []


def test_create_answered_5xx_is_ambiguous_and_not_repeated():
    handler = sequence(httpx.Response(502))
    http, _ = http_with(handler)
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", "https://p/x", idempotent=False)
    assert caught.value.ambiguous
    assert len(handler.seen) == 1


def test_create_read_timeout_is_ambiguous_and_not_repeated():
    handler = sequence(httpx.ReadTimeout("slow"))
    http, _ = http_with(handler)
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", "https://p/x", idempotent=False)
    assert caught.value.ambiguous
    assert len(handler.seen) == 1


def test_connect_errors_are_retried_even_for_creates_and_are_not_ambiguous():
    handler = sequence(
        httpx.ConnectError("refused"), httpx.ConnectError("refused"), httpx.Response(201)
    )
    http, _ = http_with(handler)
    assert http.request("POST", "https://p/x", idempotent=False).status_code == 201
    handler = sequence(*[httpx.ConnectError("refused")] * 3)
    http, _ = http_with(handler)
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", "https://p/x", idempotent=False)
    assert not caught.value.ambiguous


def test_get_read_errors_are_retried():
    handler = sequence(httpx.RemoteProtocolError("reset"), httpx.Response(200))
    http, _ = http_with(handler)
    assert http.request("GET", "https://p/x", idempotent=True).status_code == 200


def test_401_refreshes_credentials_once():
    handler = sequence(httpx.Response(401), httpx.Response(200))
    http, _ = http_with(handler)
    response = http.request(
        "GET",
        "https://p/x",
        idempotent=True,
        headers={"Authorization": "Bearer old"},
        on_unauthorized=lambda: {"Authorization": "Bearer new"},
    )
    assert response.status_code == 200
    assert [r.headers["Authorization"] for r in handler.seen] == ["Bearer old", "Bearer new"]


def test_other_4xx_are_returned_to_the_adapter_unretried():
    handler = sequence(httpx.Response(422, json={"detail": []}))
    http, _ = http_with(handler)
    assert http.request("POST", "https://p/x", idempotent=False).status_code == 422


def test_retry_after_accepts_http_dates_and_garbage():
    date = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_seconds(date) == 0.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_backoff_is_capped_full_jitter():
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=4.0)
    assert all(0 <= policy.backoff(n) <= 4.0 for n in range(1, 10) for _ in range(20))
