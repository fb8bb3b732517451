"""The contracts: the request producers send, the job reference the tracker carries, the
normalized status, and the outcome event consumers receive.

Producer-facing models refuse unknown fields; provider-facing models (in `providers/`)
tolerate them. JSON Schemas of the request and the event are exported to `schemas/`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

ProviderName = Literal["deepset", "pixxel", "matatika"]
PROVIDERS: tuple[ProviderName, ...] = ("deepset", "pixxel", "matatika")

# An identifier that is safe to put in a URL path segment and a log line: no slash, no dot
# segments, no whitespace, no scheme. Provider ids are opaque to us, so we allow what real ids
# use (UUIDs, slugs, numbers) and nothing that could change the URL's meaning.
SafeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=+@-]*$"),
]
RequestId = SafeId
MAX_METADATA_BYTES = 2048
MAX_DEADLINE_SECONDS = 30 * 24 * 3600


class _Contract(BaseModel):
    """A model producers write: unknown fields are refused, strings are not coerced."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


def _no_dot_segments(value: str) -> str:
    if value in {".", ".."} or ".." in value:
        raise ValueError("must not contain '..'")
    return value


PathId = Annotated[SafeId, AfterValidator(_no_dot_segments)]


# ---------------------------------------------------------------- provider parameters
class DeepsetQuery(_Contract):
    query: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    filters: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    group_name: str | None = None
    query_label: str | None = None
    query_index: int | None = None
    absolute_query_index: int | None = None


class DeepsetParams(_Contract):
    """deepset Cloud `POST /api/v2/workspaces/{workspace_id}/jobs` fields (seed 000)."""

    workspace_id: UUID
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    pipeline_id: UUID
    execution_mode: Literal["PER_FILE", "ACROSS_FILES"]
    queries: Annotated[list[DeepsetQuery], Field(min_length=1, max_length=10_000)] | None = None
    query_set_id: UUID | None = None
    concurrency: Annotated[int, Field(ge=1, le=20)] = 3
    description: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _queries_or_query_set(self) -> DeepsetParams:
        if self.queries is None and self.query_set_id is None:
            raise ValueError("one of 'queries' or 'query_set_id' is required")
        return self


class PixxelParams(_Contract):
    """Pixxel `POST /v0/workflows/{workflow_id}/jobs?project_id=` (seeds 001, 002, 004)."""

    workflow_id: PathId
    project_id: PathId


class MatatikaParams(_Contract):
    """Matatika `POST /api/pipelines/{pipeline_id}/jobs` (seed 003)."""

    pipeline_id: PathId


# ---------------------------------------------------------------- the request
class Tracking(_Contract):
    """Per-request overrides of how the job is followed."""

    deadline_seconds: Annotated[int, Field(ge=5, le=MAX_DEADLINE_SECONDS)] | None = None
    poll_interval_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None


MetadataValue = str | int | float | bool | None


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


class _RequestBase(_Contract):
    request_id: RequestId | None = None
    tracking: Tracking = Field(default_factory=Tracking)
    metadata: Metadata = Field(default_factory=dict)


class DeepsetJobRequest(_RequestBase):
    provider: Literal["deepset"]
    params: DeepsetParams


class PixxelJobRequest(_RequestBase):
    provider: Literal["pixxel"]
    params: PixxelParams


class MatatikaJobRequest(_RequestBase):
    provider: Literal["matatika"]
    params: MatatikaParams


JobRequest = Annotated[
    DeepsetJobRequest | PixxelJobRequest | MatatikaJobRequest,
    Field(discriminator="provider"),
]
JOB_REQUEST_ADAPTER: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)
REQUEST_ID_ADAPTER: TypeAdapter[str] = TypeAdapter(RequestId)
METADATA_ADAPTER: TypeAdapter[dict[str, MetadataValue]] = TypeAdapter(Metadata)


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


class ErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool = False
    problems: list[dict[str, str]] = Field(default_factory=list)


class StatusReport(BaseModel):
    """What one provider GET tells us, already normalized by the adapter."""

    status: JobStatus
    raw_status: str
    progress: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    estimated_duration_seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None


# ---------------------------------------------------------------- what the tracker carries
class JobRef(BaseModel):
    """The tracked job: everything the tracker needs to poll, cancel and report it."""

    request_id: RequestId
    provider: ProviderName
    remote_job_id: str
    locator: dict[str, str] = Field(
        default_factory=dict,
        description="Provider path parameters needed to reach the job (workspace, workflow).",
    )
    created_at: datetime
    deadline_at: datetime
    poll_interval_seconds: int
    outage_wait_seconds: int = 300
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class PollResult(BaseModel):
    """One tracker round: the normalized status and when to look again."""

    status: JobStatus
    raw_status: str | None = None
    terminal: bool = False
    deadline_passed: bool = False
    next_poll_seconds: int = 0
    polls: int = 0
    polled_at: datetime | None = None
    progress: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    cancelled_remotely: bool | None = None


class TrackerState(BaseModel):
    """The state machine's document: `$.job`, `$.poll` and, after a Catch, `$.error`."""

    job: JobRef
    poll: PollResult
    error: dict[str, Any] | None = None
    action: Literal["poll", "cancel"] | None = None


def execution_name(request_id: str) -> str:
    """A Step Functions execution name derived from the request id, unique per request.

    Names allow 80 characters of [A-Za-z0-9-_]; a readable prefix plus a digest of the whole
    id keeps distinct ids distinct after the characters we cannot use are replaced.
    """
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:24]
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", request_id)[:48]
    return f"{readable}-{digest}"


# ---------------------------------------------------------------- the outcome event
EventType = Literal[
    "jobrelay.job.succeeded",
    "jobrelay.job.failed",
    "jobrelay.job.cancelled",
    "jobrelay.job.timed_out",
    "jobrelay.job.rejected",
    "jobrelay.job.validated",
]


class OutcomeData(BaseModel):
    request_id: str
    provider: str
    remote_job_id: str | None = None
    status: JobStatus | Literal["VALIDATED"]
    raw_status: str | None = None
    created_at: datetime | None = None
    finished_at: datetime
    duration_seconds: float | None = None
    error: ErrorInfo | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class OutcomeEvent(BaseModel):
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
