"""Adapters built from settings: one pooled HTTP client per invocation, one adapter per
connection on it, and the process's one verifying TLS context."""

from __future__ import annotations

import ssl
import threading
from functools import lru_cache

import certifi
import httpx

from jobrelay.connections import Connection, ConnectionDirectory
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
    """The adapter for provider `name`'s default connection (its configured base URL and
    API key secret)."""
    config = settings.provider(name)
    secret = key or SecretKey(config.api_key_secret_arn, max_age=settings.secret_max_age_seconds)
    return adapter_for(
        Connection(name=name, provider=name, root=config.root, key=secret), settings, client
    )


def adapter_for(connection: Connection, settings: Settings, client: httpx.Client) -> Provider:
    """The adapter of `connection`'s provider, reaching it with its base URL and credential."""
    http = ProviderHttp(
        client,
        provider=connection.provider,
        retry=RetryPolicy(max_attempts=settings.http_max_attempts),
    )
    return REGISTRY[connection.provider].adapter(http, connection.root, connection.key)


_directories: dict[int, tuple[Settings, ConnectionDirectory]] = {}


def directory_for(settings: Settings) -> ConnectionDirectory:
    """The process's connection directory for these settings (its cache of documents and
    absent names), kept across invocations."""
    with _directories_lock:
        kept = _directories.get(id(settings))
        if kept is None or kept[0] is not settings:
            kept = _directories[id(settings)] = (settings, ConnectionDirectory(settings))
        return kept[1]


def forget_directories() -> None:
    with _directories_lock:
        _directories.clear()


_directories_lock = threading.Lock()


class ProviderPool:
    """One HTTP client (one connection pool) and one adapter per connection, for one
    invocation: `with ProviderPool(settings) as provider_for: provider_for("geo-team")`.
    A provider's name is its default connection."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.Client | None = None,
        directory: ConnectionDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or http_client(settings)
        self.directory = directory or directory_for(settings)
        self._lock = threading.Lock()
        self._providers: dict[str, Provider] = {}

    def connection(self, name: str, *, provider: str | None = None) -> Connection:
        """The connection `name` (see `ConnectionDirectory.get`)."""
        return self.directory.get(name, provider=provider)

    def __call__(self, name: str) -> Provider:
        with self._lock:
            adapter = self._providers.get(name)
        if adapter is None:
            adapter = adapter_for(self.connection(name), self.settings, self.client)
            with self._lock:
                adapter = self._providers.setdefault(name, adapter)
        return adapter

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ProviderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
