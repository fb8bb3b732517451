"""Each provider's API key as a secret in (moto's) Secrets Manager, and the template
parameters that name the secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping

import boto3
from botocore.exceptions import ClientError
from jobrelay.registry import REGISTRY

from jobrelay_local.config import DEFAULT_REGION


def placeholder_key(provider: str) -> str:
    """The API key a provider gets locally when none is given (the emulators accept it)."""
    return f"local-{provider}-key"


def create_provider_secrets(
    api_keys: Mapping[str, str] | None = None,
    *,
    region: str | None = None,
    prefix: str = "jobrelay/local",
) -> dict[str, str]:
    """Store each provider's API key in (moto's) Secrets Manager; return the ARN parameters.

    Missing providers get a placeholder key `local-<provider>-key`. The result is meant to be
    merged into `deploy(parameters=...)`.
    """
    region = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    client = boto3.client("secretsmanager", region_name=region)
    keys = dict(api_keys or {})
    result: dict[str, str] = {}
    for provider, entry in REGISTRY.items():
        name = f"{prefix}/{provider}/api-key"
        value = keys.get(provider, placeholder_key(provider))
        try:
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
            arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        result[entry.secret_parameter] = arn
    return result
