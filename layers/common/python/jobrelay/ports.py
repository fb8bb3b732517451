"""The AWS side as ports: what the layer's decisions need from SNS, Step Functions, SQS and
DynamoDB. `jobrelay.aws` implements them with boto3; `tests/fakes.py` in memory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jobrelay.models import OutcomeEvent, TrackerState


class OutcomePublisher(Protocol):
    """Publishes outcome events to the JobEvents topic; answers the message id."""

    def publish(self, event: OutcomeEvent) -> str: ...


class TrackerStarter(Protocol):
    """Starts the tracker execution that carries a document: the request's first, or the one
    its `poll.continue_as` names. Answers the execution ARN and whether this call started it
    (False: an execution of that name exists, so the job is followed there)."""

    def start(self, state: TrackerState) -> tuple[str, bool]: ...


class DeadLetterQueue(Protocol):
    """Keeps a copy of a refused message with the reason; answers the message id."""

    def send(
        self, body: str, *, reason: str, code: str, request_id: str, source_id: str
    ) -> str: ...


@dataclass(frozen=True)
class LedgerEntry:
    request_id: str
    remote_job_id: str | None
    locator: dict[str, str]
    create_attempted_at: datetime | None
    created_at: datetime | None
    outcome_type: str | None = None
    outcome_id: str | None = None


@dataclass(frozen=True)
class CancelRecord:
    """A cancel asked for a request: kept for the retention window (the ledger's TTL), so a
    request that arrives after its cancel is cancelled too."""

    request_id: str
    reason: str | None
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True)
class TrackerExecution:
    """One tracker execution of a request: its ARN, generation and Step Functions status."""

    arn: str
    generation: int
    status: str


class JobLedger(Protocol):
    """Per request: when a create was attempted and which remote job it made; per remote job,
    which request claimed it (so no two requests share a job)."""

    def begin_attempt(self, request_id: str, at: datetime) -> LedgerEntry | None:
        """Note a create is about to be sent; answers what the ledger held before."""
        ...

    def record_created(
        self, request_id: str, remote_job_id: str, locator: dict[str, str], *, provider: str
    ) -> None:
        """Claim the remote job for the request (`JobClaimed` if another holds it), then
        record it as the request's job."""
        ...

    def entry(self, request_id: str) -> LedgerEntry | None:
        """What the ledger holds for the request, if anything."""
        ...

    def record_cancel(self, cancel: CancelRecord) -> tuple[CancelRecord, bool]:
        """Keep the request's cancel; answers the one kept (the first) and whether it is new."""
        ...

    def cancel_of(self, request_id: str) -> CancelRecord | None:
        """The cancel asked for the request, if any."""
        ...

    def record_outcome(self, request_id: str, *, event_type: str, event_id: str) -> None:
        """Note the request's published outcome (status and steering read it)."""
        ...


class TrackerControl(Protocol):
    """Finds and stops a request's tracker execution."""

    def current(self, request_id: str) -> TrackerExecution | None:
        """The request's latest tracker execution (generations continue as new), if any."""
        ...

    def stop(self, execution_arn: str, *, error: str, cause: str) -> bool:
        """Stop it; False when it had already ended."""
        ...

    def input_of(self, execution_arn: str) -> str:
        """The execution's input document (JSON)."""
        ...
