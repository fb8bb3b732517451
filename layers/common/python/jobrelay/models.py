"""The contracts: the request producers send, the job reference the tracker carries, the
normalized status, and the outcome event consumers receive.

Producer-facing models refuse unknown fields; provider-facing models (in `providers/`)
tolerate them. JSON Schemas of the request and the event are exported to `schemas/`.
"""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

import hashlib
import math
import re
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)


def _registered(name: str) -> str:
    # The registry imports the adapters, which import this module: looked up on use.
    from jobrelay.registry import PROVIDER_NAMES

    if name not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {name!r} (known: {', '.join(PROVIDER_NAMES)})")
    return name


# A provider's registry name (`jobrelay.registry`): the only list of providers.
ProviderName = Annotated[str, AfterValidator(_registered)]

# An identifier that is safe to put in a URL path segment and a log line: no slash, no dot
# segments, no whitespace, no scheme. Provider ids are opaque to us, so we allow what real ids
# use (UUIDs, slugs, numbers) and nothing that could change the URL's meaning.
SafeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=+@-]*$"),
]
RequestId = SafeId
# A connection's name (docs/connections.md): a provider account jobrelay reaches, kept as the
# secret `<CONNECTIONS_PREFIX><name>`; a request without one uses the connection named after
# its provider (the default, today's configuration).
ConnectionName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]
MAX_METADATA_BYTES = 2048
# The longest deadline a request may set: 30 days. Not a Step Functions limit (a tracker
# continues as a new execution every ROUNDS_PER_EXECUTION rounds, so neither the 25,000-event
# history nor the one-year execution limit binds), but a promise: every request ends in an
# outcome within a known time, and the whole chain of one request's executions (names and
# histories are kept 90 days after an execution closes) stays inspectable from its start
# until well after its outcome. See docs/performance.md, "Long jobs".
MAX_DEADLINE_SECONDS = 30 * 24 * 3600
# Poll rounds one tracker execution runs before it continues as a new execution of the same
# request. A round is 9 history events (Wait 2, Task 5, Choice 2) and at most ~40 when every
# retry and the outage wait are spent, so 500 rounds stay under Step Functions' 25,000-event
# history limit with room to spare even then.
ROUNDS_PER_EXECUTION = 500
# Execution names take 80 characters; the generation suffix keeps each continuation distinct.
MAX_GENERATION = 99_999


def empty_dict() -> dict[str, Any]:
    """The `default_factory` of an empty dict. Not `dict` itself: pydantic reads a factory's
    signature, and a builtin's is parsed from its text with `ast`, which the first one
    imports (~15 M instructions of every cold start)."""
    return {}


def empty_list() -> list[Any]:
    """The `default_factory` of an empty list (see `empty_dict`)."""
    return []


# Every model and adapter builds its validator on first use, once per process, not at
# import: a handler then pays only for the models its first event touches (cold start).
LAZY = ConfigDict(defer_build=True)


class LazyModel(BaseModel):
    """jobrelay's base model: validators built on first use (see `LAZY`)."""

    model_config = LAZY


class DocumentModel(BaseModel):
    """A model of the tracker's document, which every function's first event reads or
    writes: built at import, in the order of this module, so each is built once and a model
    that nests it reuses its validator (a deferred model nesting another deferred one builds
    the inner one's schema again, and the inner one builds it a third time when used alone).

    Their fields are documented in comments, not `Field(description=...)`: no JSON Schema is
    made of them, and each `Field()` costs a cold start ~0.3 M instructions to make.
    """


class Contract(LazyModel):
    """A model producers write: unknown fields are refused, strings are not coerced."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


def _no_dot_segments(value: str) -> str:
    if value in {".", ".."} or ".." in value:
        raise ValueError("must not contain '..'")
    return value


PathId = Annotated[SafeId, AfterValidator(_no_dot_segments)]
# Integers and booleans producers write are taken as they are: `"5"`, `5.0` or `true` for a
# count, or `"yes"` for a flag, is a producer bug to refuse, not to guess at.
StrictInt = Annotated[int, Field(strict=True)]
MAX_JSON_DEPTH = 32


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON passed on to a provider: finite numbers, nesting at most MAX_JSON_DEPTH.

    `json.loads` accepts NaN and Infinity (not JSON, RFC 8259) and nesting up to the
    interpreter's recursion limit; serializing either for the provider later would fail or
    silently turn NaN into null, so both are refused here with the field named.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


PlainJsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]


# Finite floats only: NaN and Infinity are not JSON, and an event would carry them as null.
MetadataValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None

# ---------------------------------------------------------------- the request
# The request's models (what producers send, which only CreateJob reads) are made in
# `jobrelay.request_models` on first use, not by every function's import of this module
# (cold start); they are imported from here as ever.
_REQUEST_MODELS = frozenset(
    {
        "CancelRequest",
        "METADATA_ADAPTER",
        "Metadata",
        "REQUEST_ID_ADAPTER",
        "RequestBase",
        "Tracking",
        "no_tracking",
    }
)

if TYPE_CHECKING:
    from jobrelay.request_models import METADATA_ADAPTER as METADATA_ADAPTER
    from jobrelay.request_models import REQUEST_ID_ADAPTER as REQUEST_ID_ADAPTER
    from jobrelay.request_models import CancelRequest as CancelRequest
    from jobrelay.request_models import Metadata as Metadata
    from jobrelay.request_models import RequestBase as RequestBase
    from jobrelay.request_models import Tracking as Tracking
    from jobrelay.request_models import no_tracking as no_tracking
else:

    def __getattr__(name: str) -> Any:
        if name in _REQUEST_MODELS:
            from jobrelay import request_models

            return getattr(request_models, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- status
class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class ErrorInfo(DocumentModel):
    code: str
    message: str
    retryable: bool = False
    problems: list[dict[str, str]] = Field(default_factory=empty_list)


class StatusReport(LazyModel):
    """What one provider GET tells us, already normalized by the adapter."""

    status: JobStatus
    raw_status: str
    progress: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    estimated_duration_seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=empty_dict)
    error: ErrorInfo | None = None
    # The provider expects a change within this many seconds (a Matatika retry due): the
    # next poll comes no later, whatever the poll policy would wait.
    recheck_seconds: int | None = None


# ---------------------------------------------------------------- what the tracker carries
class JobRef(DocumentModel):
    """The tracked job: everything the tracker needs to poll, cancel and report it."""

    request_id: RequestId
    provider: ProviderName
    # The connection that created the job (its name, never its credential); empty for the
    # provider's default.
    connection: str = ""
    # The job holds one of its connection's `max_in_flight` slots.
    holds_slot: bool = False
    remote_job_id: str
    locator: dict[str, str] = Field(
        default_factory=empty_dict,
        description="Provider path parameters needed to reach the job (workspace, workflow).",
    )
    created_at: datetime
    deadline_at: datetime
    poll_interval_seconds: int
    outage_wait_seconds: int = 300
    metadata: dict[str, MetadataValue] = Field(default_factory=empty_dict)
    # The request's bounds on a wait (its tracking overrides).
    min_poll_seconds: int | None = None
    max_poll_seconds: int | None = None
    generation: int = Field(
        default=0,
        ge=0,
        le=MAX_GENERATION,
        description="Which execution of this request's tracker carries the job (0: the first).",
    )

    @property
    def connection_name(self) -> str:
        """The connection to reach the job through: its own, or its provider's default."""
        return self.connection or self.provider


class PollResult(DocumentModel):
    """One tracker round: the normalized status and when to look again."""

    status: JobStatus
    raw_status: str | None = None
    terminal: bool = False
    deadline_passed: bool = False
    next_poll_seconds: int = 0
    polls: int = 0
    polled_at: datetime | None = None
    progress: float | None = None
    details: dict[str, Any] = Field(default_factory=empty_dict)
    error: ErrorInfo | None = None
    cancelled_remotely: bool | None = None
    # Poll rounds run by the current execution.
    rounds: int = 0
    # Set when the tracker must continue as a new execution: that execution's name.
    continue_as: str | None = None
    # The progress first seen while running (the rate hint's origin), and when.
    progress_origin: float | None = None
    progress_origin_at: datetime | None = None
    # The detection lag the policy keeps for this wait.
    lag_bound_seconds: int | None = None


class TrackerState(DocumentModel):
    """The state machine's document: `$.job`, `$.poll` and, after a Catch, `$.error`."""

    job: JobRef
    poll: PollResult
    error: dict[str, Any] | None = None
    action: Literal["poll", "cancel", "outage", "continue"] | None = None
    # The tracker execution publishing (`$$.Execution.Id`).
    execution_arn: str | None = None


class OutcomeTask(LazyModel):
    """PublishOutcome's input: the tracker's final document and the execution publishing."""

    document: TrackerState
    execution_arn: str

    def state(self) -> TrackerState:
        return self.document.model_copy(update={"execution_arn": self.execution_arn})


def execution_name(request_id: str, generation: int = 0) -> str:
    """A Step Functions execution name derived from the request id, unique per request and
    generation (the first execution is generation 0; each continuation adds one).

    Names allow 80 characters of [A-Za-z0-9-_]; a readable prefix plus a digest of the whole
    id keeps distinct ids distinct after the characters we cannot use are replaced, and
    `-g<generation>` (at most 7 more characters) tells continuations apart.
    """
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:24]
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", request_id)[:48]
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation must be 0..{MAX_GENERATION}, not {generation}")
    suffix = f"-g{generation}" if generation else ""
    return f"{readable}-{digest}{suffix}"


# ---------------------------------------------------------------- the outcome event
EventType = Literal[
    "jobrelay.job.succeeded",
    "jobrelay.job.failed",
    "jobrelay.job.cancelled",
    "jobrelay.job.timed_out",
    "jobrelay.job.rejected",
    "jobrelay.job.validated",
]


class OutcomeData(LazyModel):
    request_id: str
    provider: str
    connection: str | None = Field(
        default=None, description="The connection the request used (its name)."
    )
    remote_job_id: str | None = None
    status: JobStatus | Literal["VALIDATED"]
    raw_status: str | None = None
    created_at: datetime | None = None
    finished_at: datetime
    duration_seconds: float | None = None
    error: ErrorInfo | None = None
    details: dict[str, Any] = Field(default_factory=empty_dict)
    metadata: dict[str, MetadataValue] = Field(default_factory=empty_dict)
    links: dict[str, str] = Field(
        default_factory=empty_dict,
        description="Where to look further: `execution`, the tracker's console page.",
    )


class OutcomeEvent(LazyModel):
    """A CloudEvents 1.0 structured-mode JSON event (https://cloudevents.io)."""

    model_config = ConfigDict(populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: EventType
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: OutcomeData
