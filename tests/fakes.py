"""In-memory implementations of the layer's AWS ports (`jobrelay.ports`), shared by the tests.

Each behaves as its AWS service does where the layer depends on it (a tracker execution name
starts once; a claimed remote job stays its request's), and keeps what it was given so a
test can assert on what a user would see. mypy checks them against the protocols.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from jobrelay.errors import JobClaimed, RequestInProgress
from jobrelay.models import MAX_GENERATION, OutcomeEvent, TrackerState, execution_name
from jobrelay.ports import (
    CancelRecord,
    DeadLetterQueue,
    JobLedger,
    LedgerEntry,
    OutcomePublisher,
    TrackerControl,
    TrackerExecution,
    TrackerStarter,
)

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:JobTracker"


class MemoryLedger:
    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.cancels: dict[str, CancelRecord] = {}
        self.leases: dict[str, float] = {}

    def entry(self, request_id: str) -> LedgerEntry | None:
        entry = self.entries.get(request_id)
        cancel = self.cancels.get(request_id)
        if entry is None and cancel is None:
            return None
        return (entry or LedgerEntry(request_id, None, {}, None, None))._replace(cancel=cancel)

    def begin(
        self, request_id: str, at: datetime, *, lease_seconds: float, attempt: bool
    ) -> LedgerEntry | None:
        if self.leases.get(request_id, 0.0) > time.time():
            raise RequestInProgress(f"request {request_id} is being handled by another delivery")
        previous = self.entry(request_id)
        self.leases[request_id] = time.time() + lease_seconds
        if attempt:
            self.begin_attempt(request_id, at)
        return previous

    def release(self, request_id: str) -> None:
        self.leases.pop(request_id, None)

    def record_cancel(self, cancel: CancelRecord) -> tuple[CancelRecord, bool]:
        kept = self.cancels.setdefault(cancel.request_id, cancel)
        return kept, kept is cancel

    def cancel_of(self, request_id: str) -> CancelRecord | None:
        return self.cancels.get(request_id)

    def record_outcome(self, request_id: str, *, event_type: str, event_id: str) -> None:
        entry = self.entries.get(request_id) or LedgerEntry(request_id, None, {}, None, None)
        self.entries[request_id] = entry._replace(outcome_type=event_type, outcome_id=event_id)
        self.release(request_id)

    def get(self, request_id: str) -> LedgerEntry | None:
        return self.entries.get(request_id)

    def note_waiting(
        self, request_id: str, *, connection: str, waiting_for: str, at: datetime
    ) -> datetime:
        entry = self.entries.get(request_id) or LedgerEntry(request_id, None, {}, None, None)
        arrived = entry.arrived_at or at
        self.entries[request_id] = entry._replace(
            arrived_at=arrived, waiting_for=waiting_for, connection=connection
        )
        self.release(request_id)
        return arrived

    def begin_attempt(self, request_id: str, at: datetime) -> LedgerEntry | None:
        previous = self.entry(request_id)
        entry = self.entries.get(request_id)
        if entry is None:
            self.entries[request_id] = LedgerEntry(request_id, None, {}, at, None)
        elif entry.create_attempted_at is None:
            self.entries[request_id] = entry._replace(create_attempted_at=at)
        return previous

    def record_created(
        self, request_id: str, remote_job_id: str, locator: dict[str, str], *, provider: str
    ) -> None:
        owner = self.claims.setdefault((provider, remote_job_id), request_id)
        if owner != request_id:
            raise JobClaimed(f"{provider} job {remote_job_id} belongs to {owner}", owner=owner)
        entry = self.entries.get(request_id) or LedgerEntry(request_id, None, {}, None, None)
        self.entries[request_id] = entry._replace(
            remote_job_id=remote_job_id,
            locator=locator,
            created_at=datetime.now(UTC),
            waiting_for=None,
        )
        self.release(request_id)


class MemoryPublisher:
    def __init__(self) -> None:
        self.events: list[OutcomeEvent] = []

    def publish(self, event: OutcomeEvent) -> str:
        self.events.append(event)
        return str(len(self.events))


class MemoryStarter:
    """Step Functions' StartExecution as it behaves for names: an execution name starts once;
    the same name with the same input answers the running execution, with another input it
    is refused (here: not started)."""

    def __init__(self, state_machine_arn: str = MACHINE) -> None:
        self.state_machine_arn = state_machine_arn
        self.inputs: dict[str, str] = {}
        self.started: list[TrackerState] = []
        self.statuses: dict[str, str] = {}
        self.stops: list[tuple[str, str, str]] = []

    def execution_arn(self, name: str) -> str:
        prefix, _, machine = self.state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, state: TrackerState) -> tuple[str, bool]:
        name = state.poll.continue_as or execution_name(state.job.request_id, state.job.generation)
        document = state.model_dump_json(exclude={"action", "error"})
        if name in self.inputs:
            return self.execution_arn(name), False
        self.inputs[name] = document
        self.started.append(state)
        self.statuses[self.execution_arn(name)] = "RUNNING"
        return self.execution_arn(name), True

    def current(self, request_id: str) -> TrackerExecution | None:
        found = None
        for generation in range(MAX_GENERATION + 1):
            arn = self.execution_arn(execution_name(request_id, generation))
            if arn not in self.statuses:
                return found
            found = TrackerExecution(arn, generation, self.statuses[arn])
        return found

    def stop(self, execution_arn: str, *, error: str, cause: str) -> bool:
        if self.statuses.get(execution_arn) != "RUNNING":
            return False
        self.statuses[execution_arn] = "ABORTED"
        self.stops.append((execution_arn, error, cause))
        return True

    def input_of(self, execution_arn: str) -> str:
        return self.inputs[execution_arn.rsplit(":", 1)[1]]


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, body: str, *, reason: str, code: str, request_id: str, source_id: str) -> str:
        self.sent.append(body)
        return str(len(self.sent))


# mypy checks each fake against its port here.
_ledger: JobLedger = MemoryLedger()
_publisher: OutcomePublisher = MemoryPublisher()
_starter: TrackerStarter = MemoryStarter()
_trackers: TrackerControl = MemoryStarter()
_dead_letters: DeadLetterQueue = MemoryDeadLetters()
