"""Provider adapters behind one port, and the factory that builds them from settings.

Adding a provider is one module with a `Provider` subclass plus its line in `REGISTRY`.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import certifi
import httpx

from jobrelay.models import ProviderName
from jobrelay.providers.base import CreatedJob, Provider
from jobrelay.providers.deepset import DeepsetProvider
from jobrelay.providers.http import ProviderHttp, RetryPolicy
from jobrelay.providers.matatika import MatatikaProvider
from jobrelay.providers.pixxel import PixxelProvider
from jobrelay.secrets import SecretKey
from jobrelay.settings import Settings

REGISTRY: dict[ProviderName, type[Provider]] = {
    "deepset": DeepsetProvider,
    "pixxel": PixxelProvider,
    "matatika": MatatikaProvider,
}

__all__ = ["REGISTRY", "CreatedJob", "Provider", "build_provider", "http_client"]


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
    name: ProviderName,
    settings: Settings,
    client: httpx.Client,
    *,
    key: SecretKey | None = None,
) -> Provider:
    """The adapter for `name`, wired to its configured base URL and API key secret."""
    config = settings.provider(name)
    http = ProviderHttp(
        client, provider=name, retry=RetryPolicy(max_attempts=settings.http_max_attempts)
    )
    secret = key or SecretKey(config.api_key_secret_arn, max_age=settings.secret_max_age_seconds)
    return REGISTRY[name](http, config.root, secret)
