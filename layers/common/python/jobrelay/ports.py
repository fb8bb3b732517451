"""The AWS side as ports: what the layer's decisions need from SNS, Step Functions, SQS and
DynamoDB. `jobrelay.aws` implements them with boto3; `tests/fakes.py` in memory.

The values the ports carry are NamedTuples, not frozen dataclasses: as immutable, compared by
value, and made without compiling methods (a dataclass costs ~4 M instructions to make, and
every function imports this module: 22 M of each cold start)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from jobrelay.models import OutcomeEvent, TrackerState


def utc_now() -> datetime:
    """The clock every service takes by default (a test passes its own)."""
    return datetime.now(UTC)


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


class CancelRecord(NamedTuple):
    """A cancel asked for a request: kept for the retention window (the ledger's TTL), so a
    request that arrives after its cancel is cancelled too."""

    request_id: str
    reason: str | None
    requested_by: str
    requested_at: datetime


class LedgerEntry(NamedTuple):
    request_id: str
    remote_job_id: str | None
    locator: dict[str, str]
    create_attempted_at: datetime | None
    created_at: datetime | None
    outcome_type: str | None = None
    outcome_id: str | None = None
    # Set while the request waits for its connection (`slot` or `rate`), and from its first
    # wait on: when it arrived (its deadline counts from then) and through which connection.
    waiting_for: str | None = None
    arrived_at: datetime | None = None
    connection: str | None = None
    # The request's cancel, kept on the same item (one read tells both).
    cancel: CancelRecord | None = None


class TrackerExecution(NamedTuple):
    """One tracker execution of a request: its ARN, generation and Step Functions status."""

    arn: str
    generation: int
    status: str


class JobLedger(Protocol):
    """Per request: when a create was attempted and which remote job it made; per remote job,
    which request claimed it (so no two requests share a job)."""

    def begin(
        self, request_id: str, at: datetime, *, lease_seconds: float, attempt: bool
    ) -> LedgerEntry | None:
        """Take the request's lease for this delivery (`RequestInProgress` while another
        holds it) and, with `attempt`, note that a create is about to be sent; answers what
        the ledger held before, its cancel included. One write."""
        ...

    def begin_attempt(self, request_id: str, at: datetime) -> LedgerEntry | None:
        """Note a create is about to be sent; answers what the ledger held before."""
        ...

    def release(self, request_id: str) -> None:
        """Give the request's lease up (this delivery failed, another may go on now)."""
        ...

    def record_created(
        self, request_id: str, remote_job_id: str, locator: dict[str, str], *, provider: str
    ) -> None:
        """Claim the remote job for the request (`JobClaimed` if another holds it) and
        record it as the request's job, its lease given up: both or neither."""
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

    def note_waiting(
        self, request_id: str, *, connection: str, waiting_for: str, at: datetime
    ) -> datetime:
        """Note the request waits for its connection; answers when it first arrived."""
        ...


class Waiter(NamedTuple):
    """A request waiting for a slot of its connection, kept in arrival order (`key`) with
    the message that is sent back to the queue when its turn comes."""

    connection: str
    request_id: str
    key: str
    deadline_at: datetime
    body: str


class SlotsView(NamedTuple):
    """A connection's slots as they stand: its cap, who holds one (until their deadline),
    and how many wait."""

    connection: str
    cap: int
    held: dict[str, datetime]
    waiting: int


class ConnectionSlots(Protocol):
    """The `max_in_flight` slots of each connection and the requests waiting for one, in
    arrival order, and the per-minute count of creates (`max_creates_per_minute`)."""

    def take(
        self, connection: str, request_id: str, *, cap: int, deadline_at: datetime
    ) -> datetime | None:
        """A slot for the request if it holds one already (answers the deadline it holds it
        to) or one is free and nobody waits; None otherwise."""
        ...

    def wait(self, waiter: Waiter, *, cap: int) -> None:
        """Queue the request (once: a request already queued keeps its place)."""
        ...

    def admit(
        self, connection: str, finished: Callable[[str], bool] = lambda request_id: False
    ) -> list[Waiter]:
        """Hand free slots to the oldest waiters, passing over (and dropping) those whose
        request `finished` says needs no slot any more; answers those admitted, whose
        messages the caller sends back to the queue."""
        ...

    def release(self, connection: str, request_id: str) -> None:
        """Free the request's slot, if it holds one."""
        ...

    def leave(self, connection: str, key: str) -> Waiter | None:
        """Take a waiter out of the queue; answers it if it was still there."""
        ...

    def reclaim(
        self, connection: str, stale: Callable[[str, datetime], bool], now: datetime
    ) -> list[str]:
        """Free the slots whose holder `stale` says is done (at most once a minute per
        connection); answers their request ids."""
        ...

    def count_create(self, connection: str, per_minute: int, now: datetime) -> float:
        """Count a create in this minute's window: 0 if within `per_minute`, else the seconds
        until the next window."""
        ...

    def view(self, connection: str) -> SlotsView | None:
        """The connection's slots, if it has any."""
        ...

    def position(self, connection: str, key: str) -> int:
        """A waiter's place in its connection's queue (1: next)."""
        ...


class RequestQueue(Protocol):
    """The job requests queue: a waiting request's message goes back to it when its turn
    comes (or after `delay_seconds`, to look at its deadline again)."""

    def send(self, body: str, *, delay_seconds: int = 0) -> str: ...


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
