"""Settings: the environment the template gives each function, read once into a model.

Read inside a handler's first call (not at import) so tests can set the environment first.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated

from pydantic import AnyHttpUrl, ConfigDict, Field, ValidationError, field_validator

from jobrelay.errors import ConfigurationError
from jobrelay.models import ROUNDS_PER_EXECUTION, LazyModel, ProviderName

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


class ProviderSettings(LazyModel):
    """Where a provider lives and where its API key is kept."""

    model_config = ConfigDict(frozen=True)

    base_url: AnyHttpUrl
    api_key_secret_arn: str = ""

    @field_validator("base_url")
    @classmethod
    def _https_unless_loopback(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        host = (value.host or "").lower()
        is_loopback = host in _LOOPBACK_HOSTS or host.startswith("127.")
        if value.scheme != "https" and not is_loopback:
            raise ValueError("provider base URLs must be https (plain http only on loopback)")
        if value.path not in (None, "", "/") or value.query or value.fragment:
            raise ValueError("a provider base URL is the scheme and host only")
        return value

    @property
    def root(self) -> str:
        return str(self.base_url).rstrip("/")


class Settings(LazyModel):
    """Everything a handler reads from its environment."""

    model_config = ConfigDict(frozen=True)

    events_topic_arn: str = ""
    state_machine_arn: str = ""
    idempotency_table: str = ""
    dlq_url: str = ""
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
    max_poll_seconds: Annotated[int, Field(ge=1, le=86_400)] = 3600
    rounds_per_execution: Annotated[int, Field(ge=2, le=2000)] = ROUNDS_PER_EXECUTION
    providers: dict[ProviderName, ProviderSettings] = Field(default_factory=dict)

    def require(self, *names: str) -> Settings:
        """These settings, or `ConfigurationError` naming each one the environment lacks."""
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(sorted(missing))}")
        return self

    def provider(self, name: ProviderName) -> ProviderSettings:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigurationError(f"provider {name!r} is not configured") from None


_ENV_FIELDS = {
    "EVENTS_TOPIC_ARN": "events_topic_arn",
    "STATE_MACHINE_ARN": "state_machine_arn",
    "IDEMPOTENCY_TABLE": "idempotency_table",
    "DLQ_URL": "dlq_url",
    "EVENT_SOURCE": "event_source",
    "POLL_INTERVAL_SECONDS": "poll_interval_seconds",
    "FIRST_POLL_SECONDS": "first_poll_seconds",
    "DEFAULT_DEADLINE_SECONDS": "default_deadline_seconds",
    "PROVIDER_OUTAGE_WAIT_SECONDS": "provider_outage_wait_seconds",
    "HTTP_TIMEOUT_SECONDS": "http_timeout_seconds",
    "HTTP_MAX_ATTEMPTS": "http_max_attempts",
    "IDEMPOTENCY_TTL_SECONDS": "idempotency_ttl_seconds",
    "SECRET_MAX_AGE_SECONDS": "secret_max_age_seconds",
    "MIN_POLL_SECONDS": "min_poll_seconds",
    "MAX_POLL_SECONDS": "max_poll_seconds",
    "ROUNDS_PER_EXECUTION": "rounds_per_execution",
}


def settings_from_env(environ: dict[str, str] | os._Environ[str] | None = None) -> Settings:
    """Build `Settings` from environment variables; a provider counts once its base URL is set.

    Provider variables: `<NAME>_BASE_URL` and `<NAME>_API_KEY_SECRET_ARN`, NAME in
    DEEPSET, PIXXEL, MATATIKA.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {field: env[var] for var, field in _ENV_FIELDS.items() if env.get(var)}
    providers: dict[str, dict[str, str]] = {}
    for name in ("deepset", "pixxel", "matatika"):
        base_url = env.get(f"{name.upper()}_BASE_URL")
        if base_url:
            providers[name] = {
                "base_url": base_url,
                "api_key_secret_arn": env.get(f"{name.upper()}_API_KEY_SECRET_ARN", ""),
            }
    raw["providers"] = providers
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read on first use."""
    return settings_from_env()
