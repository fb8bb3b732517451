"""The providers jobrelay talks to: the one list a new provider joins (see docs/providers.md).

Everything else that is per provider is derived from it: the request union and its JSON
Schema, the settings each function reads, the local stack's emulators and secrets, the
bench's sample requests, and the tests that check the template gives each function what the
provider needs.

Each entry names its adapter's module and class, imported on first use: a function loads the
adapters its events reach and no other (PublishOutcome none, PollJobStatus the provider of
the job it polls), and the request models are built the first time something asks for them
(CreateJob, the schemas), not by every import of the registry (cold start).
"""

from __future__ import annotations

import importlib
import threading
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union

from jobrelay.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from jobrelay.models import RequestBase
    from jobrelay.providers.base import Provider

# Each provider's registry name (the `provider` of its requests, the prefix of its settings)
# and its adapter, as `module:class`.
ADAPTERS: tuple[tuple[str, str], ...] = (
    ("deepset", "jobrelay.providers.deepset:DeepsetProvider"),
    ("pixxel", "jobrelay.providers.pixxel:PixxelProvider"),
    ("matatika", "jobrelay.providers.matatika:MatatikaProvider"),
)


@cache
def _adapter(name: str, path: str) -> type[Provider]:
    module, _, attribute = path.partition(":")
    adapter: type[Provider] = getattr(importlib.import_module(module), attribute)
    if adapter.name != name:
        raise ConfigurationError(f"the registry lists {path} as {name!r}, not {adapter.name!r}")
    return adapter


class ProviderEntry:
    """One provider and the names its configuration goes by, derived from its name.

    A plain class: making a dataclass compiles its methods, a millisecond of every cold
    start for each one."""

    __slots__ = ("adapter_path", "name")

    def __init__(self, name: str, adapter_path: str) -> None:
        self.name = name
        self.adapter_path = adapter_path

    def __repr__(self) -> str:
        return f"ProviderEntry({self.name!r}, {self.adapter_path!r})"

    @property
    def adapter(self) -> type[Provider]:
        return _adapter(self.name, self.adapter_path)

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
        return request_model(self.name)


REGISTRY: dict[str, ProviderEntry] = {name: ProviderEntry(name, path) for name, path in ADAPTERS}
PROVIDER_NAMES: tuple[str, ...] = tuple(REGISTRY)


class _Requests(NamedTuple):
    union: Any
    job_request: TypeAdapter[RequestBase]
    queue_message: TypeAdapter[Any]


_requests_lock = threading.RLock()


@cache
def _build_request_model(name: str) -> type[RequestBase]:
    from pydantic import create_model

    from jobrelay.models import RequestBase, Tracking

    entry = REGISTRY[name]
    # The models a request nests that are also used alone are built first, so the
    # request's validator takes their schemas as they are. Deferred, each would be built
    # twice: inside the request's, then alone, when a request without `tracking` gets its
    # default `Tracking()` and when the adapter dumps the params into the provider's body
    # (~14 M instructions of CreateJob's first event).
    Tracking.model_rebuild()
    entry.params_model.model_rebuild()
    model: type[RequestBase] = create_model(
        f"{name.capitalize()}JobRequest",
        __base__=RequestBase,
        __doc__=f"A request for a {entry.adapter.title} job.",
        provider=(Literal[name], ...),
        params=(entry.params_model, ...),
    )
    return model


def request_model(name: str) -> type[RequestBase]:
    """The request naming provider `name`, made on first use: a request is parsed with its
    own provider's model, so CreateJob never imports the other adapters nor builds their
    validators (cold start)."""
    # CreateJob's worker threads may ask at once: each model is made once.
    with _requests_lock:
        return _build_request_model(name)


@cache
def _build_requests() -> _Requests:
    from pydantic import Field, TypeAdapter

    from jobrelay.models import LAZY, CancelRequest

    models = [request_model(name) for name in REGISTRY]
    union: Any = Annotated[
        Union[tuple(models)],  # noqa: UP007 - a union built at run time
        Field(discriminator="provider"),
    ]
    return _Requests(
        union=union,
        job_request=TypeAdapter(union, config=LAZY),
        # What the queue takes: a create of any provider, or a cancel (the JSON Schema of
        # both).
        queue_message=TypeAdapter(
            Union[union, CancelRequest],  # noqa: UP007 - the union is built at run time
            config=LAZY,
        ),
    )


def _requests() -> _Requests:
    # CreateJob's worker threads may ask at once: the models are built once.
    with _requests_lock:
        return _build_requests()


if TYPE_CHECKING:
    JobRequest = RequestBase
    JOB_REQUEST_ADAPTER: TypeAdapter[RequestBase]
    # What the queue takes: a create of any provider, or a cancel (the JSON Schema of both).
    QUEUE_MESSAGE_ADAPTER: TypeAdapter[Any]
else:

    def __getattr__(name: str) -> Any:
        """The request union and its adapters, built on first use."""
        if name == "JobRequest":
            return _requests().union
        if name == "JOB_REQUEST_ADAPTER":
            return _requests().job_request
        if name == "QUEUE_MESSAGE_ADAPTER":
            return _requests().queue_message
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
