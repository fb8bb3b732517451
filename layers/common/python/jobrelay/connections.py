"""Connections: the provider accounts jobrelay reaches, each a name, a provider, a base URL, a
credential and optional limits (docs/connections.md).

A connection is one Secrets Manager secret, `<CONNECTIONS_PREFIX><name>`, whose value is a
JSON `ConnectionDocument`; adding one needs no redeploy. A request names one with
`connection`; without it, the connection named after its provider, which is the secret of
that name when there is one and otherwise today's configuration (`<NAME>_BASE_URL` and
`<NAME>_API_KEY_SECRET_ARN`). Documents are read through Powertools parameters and cached
like API keys; a provider's name that has no secret is remembered as absent for as long (any
other missing name is looked up afresh: a request naming it is refused).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from jobrelay.errors import ConfigurationError, FieldProblem, RequestInvalid
from jobrelay.secrets import SecretKey

if TYPE_CHECKING:
    from pydantic import AnyHttpUrl

    from jobrelay.connection_documents import ConnectionDocument as ConnectionDocument
    from jobrelay.settings import Settings
else:

    def __getattr__(name: str) -> Any:
        # The document model (and pydantic's URL types) is made with the first document
        # read: a function whose connections are all its providers' defaults never makes it.
        if name == "ConnectionDocument":
            from jobrelay.connection_documents import ConnectionDocument

            return ConnectionDocument
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Value types here are NamedTuples, not dataclasses: making a dataclass compiles its
# methods, about a millisecond of every cold start each.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class ConnectionUnknown(RequestInvalid):
    """A request names a connection the stack does not have, or one of another provider:
    refused before any provider call (a rejected event naming `connection`)."""

    code = "CONNECTION_UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(
            message, [FieldProblem(field="connection", message=message, kind="connection")]
        )


class Limits(NamedTuple):
    """How much jobrelay asks of one connection (none: unbounded)."""

    max_in_flight: int | None = None
    max_creates_per_minute: int | None = None

    @property
    def any(self) -> bool:
        return self.max_in_flight is not None or self.max_creates_per_minute is not None


class Connection(NamedTuple):
    """A resolved connection: where its provider is, how to read its credential, its limits.
    `secret_name` is None for a provider's default from the environment."""

    name: str
    provider: str
    root: str
    key: SecretKey
    limits: Limits = Limits()
    secret_name: str | None = None


def default_connection(name: str) -> Connection:
    """A provider's connection with no settings behind it (tests and fakes)."""
    return Connection(name=name, provider=name, root="", key=SecretKey(""))


def check_host(url: AnyHttpUrl, allowed: tuple[str, ...], *, what: str) -> None:
    """https to an allowed host (plain http only to loopback, which must itself be allowed):
    a connection cannot send its credential anywhere else."""
    host = (url.host or "").lower()
    loopback = host in _LOOPBACK or host.startswith("127.")
    if url.scheme != "https" and not loopback:
        raise ValueError(f"{what} must be https")
    if url.path not in (None, "", "/") and what == "base_url":
        raise ValueError("a base_url is the scheme and host only")
    if host not in allowed:
        raise ValueError(f"{what} host {host!r} is not allowed (allowed: {', '.join(allowed)})")


# Reads a secret's value: None when no secret has the name; `ConfigurationError` when it
# exists but cannot be read.
SecretReader = Callable[[str, int, bool], str | None]


def read_secret(name: str, max_age: int, refresh: bool) -> str | None:
    """A connection secret through Powertools (cached `max_age` s); None if it does not exist."""
    from aws_lambda_powertools.utilities import parameters

    from jobrelay.secrets import secrets_provider

    try:
        value = secrets_provider().get(name, max_age=max_age, force_fetch=refresh)
    except parameters.exceptions.GetParameterError as exc:
        # Powertools wraps the SDK error; its text carries the error code, never a value.
        if "ResourceNotFoundException" in str(exc) or "ResourceNotFound" in repr(exc.__context__):
            return None
        raise ConfigurationError(f"cannot read the secret {name!r}: {exc}") from exc
    if isinstance(value, bytes):
        value = value.decode()
    return str(value)


class ConnectionDirectory:
    """Resolves connection names, for the life of a process (each document cached `max_age`
    seconds, the secret's own cache; a provider's name without a secret remembered as
    missing as long)."""

    def __init__(self, settings: Settings, reader: SecretReader = read_secret) -> None:
        self.settings = settings
        self.reader = reader
        self.max_age = settings.secret_max_age_seconds
        self._absent: dict[str, float] = {}
        self._suspect: set[str] = set()
        self._lock = threading.Lock()

    def secret_name(self, name: str) -> str:
        return f"{self.settings.connections_prefix}{name}"

    def get(self, name: str, *, provider: str | None = None) -> Connection:
        """The connection `name`, checked to be of `provider` when given.

        `ConnectionUnknown` when there is no such connection (or it is another provider's);
        `ConfigurationError`, naming the connection, when its secret cannot be read or does
        not hold a valid document (retried: an operator fixes it, the request is not lost).
        """
        from jobrelay.registry import REGISTRY

        document = self.document(name)
        if document is not None:
            if provider is not None and document.provider != provider:
                raise ConnectionUnknown(
                    f"connection {name!r} is a {document.provider} connection, not {provider}"
                )
            self._check_hosts(name, document)
            connection = self._connection(name, document)
        elif name in REGISTRY:
            connection = self._default(name)
        else:
            raise ConnectionUnknown(f"no connection named {name!r}")
        if provider is not None and connection.provider != provider:
            raise ConnectionUnknown(
                f"connection {name!r} is a {connection.provider} connection, not {provider}"
            )
        return connection

    def document(self, name: str, *, refresh: bool = False) -> ConnectionDocument | None:
        """The connection's document, or None when it has no secret.

        Only a provider's name is remembered as absent (its default is used meanwhile); any
        other name is looked up afresh each time it is missing, since a request naming it is
        then refused for good. A document found malformed is read afresh next time, so an
        operator's fix is seen on the request's next delivery.
        """
        if not self.settings.connections_prefix:
            return None
        from jobrelay.registry import REGISTRY

        with self._lock:
            absent_until = self._absent.get(name, 0.0)
            suspect = name in self._suspect
        if not refresh and time.monotonic() < absent_until:
            return None
        raw = self.reader(self.secret_name(name), self.max_age, refresh or suspect)
        if raw is None:
            if name in REGISTRY:
                with self._lock:
                    self._absent[name] = time.monotonic() + self.max_age
            return None
        from pydantic import ValidationError

        from jobrelay.connection_documents import ConnectionDocument

        try:
            document = ConnectionDocument.model_validate_json(raw)
        except ValidationError as exc:
            with self._lock:
                self._suspect.add(name)
            raise ConfigurationError(
                f"connection {name!r} is malformed: {_problems(exc)}"
            ) from None
        if suspect:
            with self._lock:
                self._suspect.discard(name)
        return document

    def _check_hosts(self, name: str, document: ConnectionDocument) -> None:
        allowed = self.settings.hosts_allowed(document.provider)
        try:
            check_host(document.base_url, allowed, what="base_url")
            if document.token_url is not None:
                check_host(document.token_url, allowed, what="token_url")
        except ValueError as exc:
            with self._lock:
                self._suspect.add(name)
            raise ConfigurationError(f"connection {name!r} is malformed: {exc}") from None

    def _connection(self, name: str, document: ConnectionDocument) -> Connection:
        return Connection(
            name=name,
            provider=document.provider,
            root=str(document.base_url).rstrip("/"),
            key=ConnectionKey(self, name),
            limits=Limits(document.max_in_flight, document.max_creates_per_minute),
            secret_name=self.secret_name(name),
        )

    def _default(self, provider: str) -> Connection:
        config = self.settings.provider(provider)
        return Connection(
            name=provider,
            provider=provider,
            root=config.root,
            key=SecretKey(config.api_key_secret_arn, max_age=self.max_age),
        )


class ConnectionKey(SecretKey):
    """A connection's credential, read from its document (a 401 reads it afresh)."""

    def __init__(self, directory: ConnectionDirectory, name: str) -> None:
        super().__init__(directory.secret_name(name), max_age=directory.max_age)
        self.directory = directory
        self.name = name

    def value(self, *, refresh: bool = False) -> str:
        document = self.directory.document(self.name, refresh=refresh)
        if document is None:
            raise ConfigurationError(f"connection {self.name!r} no longer exists")
        return document.credential()


def _problems(exc: Exception) -> str:
    """What is wrong with a document, by field, never quoting a value (it may be a key)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )[:1000]
    return str(exc)[:1000]


def describe(document: ConnectionDocument) -> dict[str, Any]:
    """A document without its credential (for logs and the CLI)."""
    return document.model_dump(
        mode="json",
        exclude={"api_key", "token", "client_secret"},
        exclude_none=True,
    )
