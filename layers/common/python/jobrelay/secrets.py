"""API keys from AWS Secrets Manager through Powertools parameters: cached, refreshed on
demand (a 401 forces a fresh read), never logged."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from jobrelay.errors import ConfigurationError

# Powertools parameters is imported with the first secret read: PublishOutcome reads none.
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider


@lru_cache(maxsize=1)
def secrets_provider() -> SecretsProvider:
    """Powertools' Secrets Manager provider (and its cache), on the process's shared client."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from jobrelay.aws import aws_client

    return SecretsProvider(boto3_client=aws_client("secretsmanager"))


class SecretKey:
    """One secret's value, read lazily and cached for `max_age` seconds by Powertools."""

    def __init__(self, secret_arn: str, *, max_age: int = 300) -> None:
        self.secret_arn = secret_arn
        self.max_age = max_age

    def value(self, *, refresh: bool = False) -> str:
        if not self.secret_arn:
            raise ConfigurationError("no API key secret is configured for this provider")
        provider = secrets_provider()
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            secret = provider.get(self.secret_arn, max_age=self.max_age, force_fetch=refresh)
        except GetParameterError as exc:
            # The message of GetParameterError names the secret, never its value.
            raise ConfigurationError(f"cannot read the provider API key secret: {exc}") from exc
        if isinstance(secret, bytes):
            secret = secret.decode()
        if not isinstance(secret, str) or not secret.strip():
            raise ConfigurationError("the provider API key secret is empty")
        return secret.strip()


class StaticKey(SecretKey):
    """A key given directly (tests, benchmarks); behaves like a secret that never changes."""

    def __init__(self, key: str) -> None:
        super().__init__("static", max_age=0)
        self._key = key

    def value(self, *, refresh: bool = False) -> str:
        return self._key
