"""A connection's document: the JSON value of its secret (docs/connections.md). Imported from
`jobrelay.connections` as ever, and made with the first document read: a function whose
connections are all its providers' defaults (the environment's) never makes it, nor loads
pydantic's URL types (cold start).
"""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

import json
from typing import Annotated, Self

from pydantic import AnyHttpUrl, Field, model_validator

from jobrelay.models import Contract, ProviderName

Secret = Annotated[str, Field(min_length=1, max_length=8192)]


class ConnectionDocument(Contract):
    """A connection's secret value. One credential form: `api_key` (every provider), or for
    providers that take them, a bearer `token` or OAuth client credentials (`client_id`,
    `client_secret`, optionally `token_url` and `audience`)."""

    provider: ProviderName
    base_url: AnyHttpUrl
    api_key: Secret | None = None
    token: Secret | None = None
    client_id: Secret | None = None
    client_secret: Secret | None = None
    token_url: AnyHttpUrl | None = None
    audience: Annotated[str, Field(max_length=512)] | None = None
    max_in_flight: Annotated[int, Field(ge=1, le=100_000, strict=True)] | None = None
    max_creates_per_minute: Annotated[int, Field(ge=1, le=100_000, strict=True)] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        from jobrelay.registry import REGISTRY

        forms = [
            form
            for form, given in (
                ("api_key", self.api_key is not None),
                ("token", self.token is not None),
                (
                    "client_credentials",
                    self.client_id is not None or self.client_secret is not None,
                ),
            )
            if given
        ]
        if len(forms) != 1:
            raise ValueError("give exactly one of api_key, token, or client_id and client_secret")
        if forms[0] == "client_credentials" and not (self.client_id and self.client_secret):
            raise ValueError("client credentials need both client_id and client_secret")
        allowed = REGISTRY[self.provider].adapter.credential_forms
        if forms[0] not in allowed:
            raise ValueError(f"{self.provider} connections take {', '.join(sorted(allowed))}")
        if (self.token_url or self.audience) and forms[0] != "client_credentials":
            raise ValueError("token_url and audience go with client credentials")
        return self

    def credential(self) -> str:
        """The credential as the adapter takes it: the key or token itself, or the client
        credentials as JSON (the form a Matatika API key secret may hold)."""
        if self.api_key is not None:
            return self.api_key
        if self.token is not None:
            return self.token
        client = {"client_id": self.client_id, "client_secret": self.client_secret}
        if self.token_url is not None:
            client["token_url"] = str(self.token_url)
        if self.audience is not None:
            client["audience"] = self.audience
        return json.dumps(client)
