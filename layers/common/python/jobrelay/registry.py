"""The providers jobrelay talks to: the one list a new provider joins (see docs/providers.md).

Everything else that is per provider is derived from it: the request union and its JSON
Schema, the settings each function reads, the local stack's emulators and secrets, the
bench's sample requests, and the tests that check the template gives each function what the
provider needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from jobrelay.models import LAZY, CancelRequest, RequestBase
from jobrelay.providers.base import Provider
from jobrelay.providers.deepset import DeepsetProvider
from jobrelay.providers.matatika import MatatikaProvider
from jobrelay.providers.pixxel import PixxelProvider

ADAPTERS: tuple[type[Provider], ...] = (DeepsetProvider, PixxelProvider, MatatikaProvider)


@dataclass(frozen=True)
class ProviderEntry:
    """One provider and the names its configuration goes by, derived from its name."""

    adapter: type[Provider]

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def params_model(self) -> type[Any]:
        return self.adapter.params_model

    @property
    def default_base_url(self) -> str:
        return self.adapter.default_base_url

    @property
    def base_url_env(self) -> str:
        return f"{self.name.upper()}_BASE_URL"

    @property
    def secret_env(self) -> str:
        return f"{self.name.upper()}_API_KEY_SECRET_ARN"

    @property
    def allowed_hosts_env(self) -> str:
        return f"{self.name.upper()}_ALLOWED_HOSTS"

    @property
    def allowed_hosts_parameter(self) -> str:
        return f"{self.name.capitalize()}AllowedHosts"

    @property
    def base_url_parameter(self) -> str:
        return f"{self.name.capitalize()}BaseUrl"

    @property
    def secret_parameter(self) -> str:
        return f"{self.name.capitalize()}ApiKeySecretArn"

    @property
    def request_model(self) -> type[RequestBase]:
        """The request naming this provider: `provider` is its name, `params` its model."""
        return _request_models[self.name]


REGISTRY: dict[str, ProviderEntry] = {adapter.name: ProviderEntry(adapter) for adapter in ADAPTERS}
PROVIDER_NAMES: tuple[str, ...] = tuple(REGISTRY)

_request_models: dict[str, type[RequestBase]] = {
    entry.name: create_model(
        f"{entry.name.capitalize()}JobRequest",
        __base__=RequestBase,
        __doc__=f"A request for a {entry.adapter.title} job.",
        provider=(Literal[entry.name], ...),
        params=(entry.params_model, ...),
    )
    for entry in REGISTRY.values()
}

if TYPE_CHECKING:
    JobRequest = RequestBase
else:
    JobRequest = Annotated[
        Union[tuple(_request_models.values())],  # noqa: UP007 - a union built at run time
        Field(discriminator="provider"),
    ]
JOB_REQUEST_ADAPTER: TypeAdapter[RequestBase] = TypeAdapter(JobRequest, config=LAZY)
# What the queue takes: a create of any provider, or a cancel (the JSON Schema of both).
QUEUE_MESSAGE_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Union[JobRequest, CancelRequest],  # noqa: UP007 - JobRequest is built at run time
    config=LAZY,
)
