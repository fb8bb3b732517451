"""The request producers send: a create (each provider's request is `RequestBase` narrowed by
the registry, `jobrelay.registry.JobRequest`) or a cancel, and the adapters CreateJob reads a
request's id and metadata with. Imported from `jobrelay.models` as ever, and made only when
first asked for there: CreateJob needs them, the tracker's functions never do (cold start).
"""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

import json
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, model_validator

from jobrelay.models import (
    LAZY,
    MAX_DEADLINE_SECONDS,
    MAX_METADATA_BYTES,
    ConnectionName,
    Contract,
    MetadataValue,
    RequestId,
    empty_dict,
)


class Tracking(Contract):
    """Per-request overrides of how the job is followed.

    `poll_interval_seconds` is the base of the adaptive poll policy: the wait while a job is
    young and the floor of the detection lag it keeps (`max(base, 10% of the job's age)`).
    `min_poll_seconds` and `max_poll_seconds` bound every wait (the deadline still cuts the
    last one short); `max_poll_seconds` equal to the base gives a fixed-interval poller.
    """

    deadline_seconds: Annotated[int, Field(ge=5, le=MAX_DEADLINE_SECONDS, strict=True)] | None = (
        None
    )
    poll_interval_seconds: Annotated[int, Field(ge=1, le=3600, strict=True)] | None = None
    min_poll_seconds: Annotated[int, Field(ge=1, le=3600, strict=True)] | None = None
    max_poll_seconds: Annotated[int, Field(ge=1, le=86_400, strict=True)] | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        low, high = self.min_poll_seconds, self.max_poll_seconds
        if low is not None and high is not None and low > high:
            raise ValueError("min_poll_seconds must not exceed max_poll_seconds")
        return self


def no_tracking() -> Tracking:
    """The `default_factory` of a request's `tracking` (see `empty_dict`)."""
    return Tracking()


def _small_metadata(value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes, at most {MAX_METADATA_BYTES} allowed")
    return value


Metadata = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], MetadataValue],
    Field(max_length=32),
    AfterValidator(_small_metadata),
]


class RequestBase(Contract):
    """What every request carries. Each provider's request narrows `provider` to its name and
    `params` to its own model; the union of them is built from the provider registry
    (`jobrelay.registry.JobRequest`)."""

    action: Literal["create"] | None = Field(
        default=None, description="A create may say so; a message without `action` is one."
    )
    request_id: RequestId | None = None
    tracking: Tracking = Field(default_factory=no_tracking)
    metadata: Metadata = Field(default_factory=empty_dict)
    connection: ConnectionName | None = Field(
        default=None,
        description="The provider account to use (default: the connection named after the provider).",
    )
    provider: str
    params: Contract


class CancelRequest(Contract):
    """Cancel a request wherever it is: not yet created (no job is ever created), tracked (the
    job is stopped where the provider can), or ended (nothing changes). Sent on the same queue
    as creates; the request still ends in exactly one outcome, `cancelled`."""

    action: Literal["cancel"]
    request_id: RequestId
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None
    requested_by: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="Who asks (default: the queue message's sender)."
    )


REQUEST_ID_ADAPTER: TypeAdapter[str] = TypeAdapter(RequestId, config=LAZY)
METADATA_ADAPTER: TypeAdapter[dict[str, MetadataValue]] = TypeAdapter(Metadata, config=LAZY)
