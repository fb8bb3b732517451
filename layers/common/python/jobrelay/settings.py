"""Settings: the environment the template gives each function, read once into that function's
model. Each model names what its function requires, so a missing or malformed variable fails
with the variable's name.

Read inside a handler's first call (not at import) so tests can set the environment first.
"""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a third of their class creation, on every cold start).
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Self, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from jobrelay.errors import ConfigurationError
from jobrelay.models import ROUNDS_PER_EXECUTION, LazyModel, ProviderName, empty_dict

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Set for a variable the model must have: present and not empty.
Required = Annotated[str, Field(min_length=1)]
# A host name or address as a URL carries it (IPv6 in brackets), lower case.
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


def _provider_base_url(value: str) -> str:
    """A provider's base URL: scheme and host (and port) only, https unless loopback; kept
    as `scheme://host[:port]`, lower case.

    Read with `urllib.parse`, not pydantic's `AnyHttpUrl`: its module costs a cold start
    ~10 M instructions, and only a connection document needs it.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ValueError("a provider base URL is an http(s) URL") from None
    if "@" in parts.netloc:
        raise ValueError("a provider base URL carries no credentials")
    scheme = parts.scheme.lower()
    host = parts.netloc.lower()
    if port is not None:
        host = host.rpartition(":")[0]
    if scheme not in ("http", "https") or not _HOST.fullmatch(host):
        raise ValueError("a provider base URL is an http(s) URL")
    is_loopback = host in _LOOPBACK_HOSTS or host.startswith("127.")
    if scheme != "https" and not is_loopback:
        raise ValueError("provider base URLs must be https (plain http only on loopback)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a provider base URL is the scheme and host only")
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


class ProviderSettings(LazyModel):
    """Where a provider lives and where its API key is kept."""

    model_config = ConfigDict(frozen=True)

    base_url: Annotated[str, AfterValidator(_provider_base_url)]
    api_key_secret_arn: str = ""

    @property
    def root(self) -> str:
        return self.base_url


class Settings(LazyModel):
    """What every function may read from its environment, each variable named as its field in
    capitals (`POLL_INTERVAL_SECONDS`); providers from `<NAME>_BASE_URL` and
    `<NAME>_API_KEY_SECRET_ARN` for each provider of the registry."""

    model_config = ConfigDict(
        frozen=True, alias_generator=str.upper, populate_by_name=True, extra="ignore"
    )

    event_source: str = "urn:jobrelay"
    poll_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    first_poll_seconds: Annotated[int, Field(ge=0, le=3600)] = 10
    default_deadline_seconds: Annotated[int, Field(ge=60)] = 86_400
    provider_outage_wait_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    http_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    http_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    idempotency_ttl_seconds: Annotated[int, Field(ge=60)] = 7 * 86_400
    secret_max_age_seconds: Annotated[int, Field(ge=0)] = 300
    # The poll policy's bounds on every wait (a request's `tracking` overrides them) and the
    # rounds one tracker execution runs before it continues as a new one (PollJobStatus).
    min_poll_seconds: Annotated[int, Field(ge=1, le=3600)] = 1
    max_poll_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300
    rounds_per_execution: Annotated[int, Field(ge=2, le=2000)] = ROUNDS_PER_EXECUTION
    providers: dict[ProviderName, ProviderSettings] = Field(default_factory=empty_dict)
    # Named connections (docs/connections.md): each one the secret `<prefix><name>`; empty
    # when the stack keeps none (every request then uses its provider's default).
    connections_prefix: str = ""
    # The hosts a connection's base URL may name, per provider (`<NAME>_ALLOWED_HOSTS`,
    # comma-separated; unset: the provider's public API hosts).
    allowed_hosts: dict[ProviderName, tuple[str, ...]] = Field(default_factory=empty_dict)
    # Connection limits: the slots and waiting requests (DynamoDB), and the queue a waiting
    # request is sent back to when its turn comes.
    limits_table: str = ""
    jobs_queue_url: str = ""
    # Whether the function reaches providers, so at least one must be configured (a flag
    # rather than a class between: each class costs its cold start ~1 ms to make).
    needs_providers: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _providers_from_variables(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        from jobrelay.registry import REGISTRY

        derived: dict[str, Any] = {}
        if "providers" not in data and "PROVIDERS" not in data:
            derived["providers"] = {
                name: {
                    "base_url": data[entry.base_url_env],
                    "api_key_secret_arn": data.get(entry.secret_env, ""),
                }
                for name, entry in REGISTRY.items()
                if data.get(entry.base_url_env)
            }
        if "allowed_hosts" not in data and "ALLOWED_HOSTS" not in data:
            derived["allowed_hosts"] = {
                name: tuple(
                    host.strip().lower()
                    for host in str(data[entry.allowed_hosts_env]).split(",")
                    if host.strip()
                )
                for name, entry in REGISTRY.items()
                if data.get(entry.allowed_hosts_env)
            }
        return {**data, **derived}

    @model_validator(mode="after")
    def _some_provider(self) -> Self:
        if self.needs_providers and not self.providers:
            from jobrelay.registry import REGISTRY

            names = ", ".join(entry.base_url_env for entry in REGISTRY.values())
            raise ValueError(f"no provider is configured: set at least one of {names}")
        return self

    def hosts_allowed(self, provider: str) -> tuple[str, ...]:
        """The hosts a connection of `provider` may send its credential to."""
        from jobrelay.registry import REGISTRY

        configured = self.allowed_hosts.get(provider)
        return configured if configured else REGISTRY[provider].adapter.public_hosts

    def provider(self, name: ProviderName) -> ProviderSettings:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigurationError(f"provider {name!r} is not configured") from None


class CreateJobSettings(Settings):
    """CreateJob publishes rejections, starts trackers, keeps DLQ copies and the job ledger."""

    needs_providers = True

    events_topic_arn: Required
    state_machine_arn: Required
    idempotency_table: Required
    dlq_url: Required


class PollJobStatusSettings(Settings):
    """PollJobStatus reaches providers and reads a request's cancel from the job ledger; the
    state machine passes its own ARN in the event."""

    needs_providers = True

    idempotency_table: Required


class PublishOutcomeSettings(Settings):
    """PublishOutcome publishes once per request (idempotency records in the table)."""

    events_topic_arn: Required
    idempotency_table: Required


class TrackerEndedSettings(Settings):
    """TrackerEnded cancels at the provider and publishes through PublishOutcome's
    idempotency records; the state machine's ARN comes in each event."""

    needs_providers = True

    events_topic_arn: Required
    idempotency_table: Required


# Each function's settings model, by the function's logical id in template.yaml.
FUNCTION_SETTINGS: dict[str, type[Settings]] = {
    "CreateJobFunction": CreateJobSettings,
    "PollJobStatusFunction": PollJobStatusSettings,
    "PublishOutcomeFunction": PublishOutcomeSettings,
    "TrackerEndedFunction": TrackerEndedSettings,
}

S = TypeVar("S", bound=Settings)


def read_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    """`model` from environment variables, or `ConfigurationError` naming each variable that
    is missing or malformed."""
    env = os.environ if environ is None else environ
    try:
        return model.model_validate(dict(env))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'environment'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid settings ({model.__name__}): {problems}") from exc


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings every function shares (tests, tools)."""
    return read_settings(Settings, environ)


@lru_cache(maxsize=8)
def _cached(model: type[Settings]) -> Settings:
    return read_settings(model)


def get_settings(model: type[S]) -> S:
    """The function's settings, read on first use and kept for the process."""
    return cast(S, _cached(model))


def forget_settings() -> None:
    """Read the environment again on next use (tests, local stack restarts)."""
    _cached.cache_clear()
