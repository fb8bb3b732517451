"""Adapters built from settings: one pooled HTTP client per invocation, one adapter per
provider on it, and the process's one verifying TLS context."""

from __future__ import annotations

import ssl
import threading
from functools import lru_cache

import certifi
import httpx

from jobrelay.providers.base import Provider
from jobrelay.providers.http import ProviderHttp, RetryPolicy
from jobrelay.registry import REGISTRY
from jobrelay.secrets import SecretKey
from jobrelay.settings import Settings


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context (certifi's CAs, as httpx's default), built once per process:
    loading the CA bundle costs ~30 ms, which every invocation's client would pay again."""
    return ssl.create_default_context(cafile=certifi.where())


def http_client(settings: Settings, *, max_connections: int = 32) -> httpx.Client:
    """One pooled client per invocation; TLS verification is always on."""
    timeout = httpx.Timeout(
        settings.http_timeout_seconds, connect=min(3.0, settings.http_timeout_seconds)
    )
    return httpx.Client(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        follow_redirects=False,
        verify=tls_context(),
        headers={"User-Agent": "jobrelay/0.1"},
    )


def build_provider(
    name: str, settings: Settings, client: httpx.Client, *, key: SecretKey | None = None
) -> Provider:
    """The adapter for `name`, wired to its configured base URL and API key secret."""
    config = settings.provider(name)
    http = ProviderHttp(
        client, provider=name, retry=RetryPolicy(max_attempts=settings.http_max_attempts)
    )
    secret = key or SecretKey(config.api_key_secret_arn, max_age=settings.secret_max_age_seconds)
    return REGISTRY[name].adapter(http, config.root, secret)


class ProviderPool:
    """One HTTP client (one connection pool) and one adapter per provider, for one
    invocation: `with ProviderPool(settings) as provider_for: provider_for("pixxel")`."""

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client or http_client(settings)
        self._lock = threading.Lock()
        self._providers: dict[str, Provider] = {}

    def __call__(self, name: str) -> Provider:
        with self._lock:
            if name not in self._providers:
                self._providers[name] = build_provider(name, self.settings, self.client)
            return self._providers[name]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ProviderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
