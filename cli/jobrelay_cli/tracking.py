"""Where a request stands, read from its stack: its current tracker execution (Step Functions),
the job ledger (DynamoDB) and, for a request waiting for its connection, the limits table; and
the requests in flight and those waiting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from jobrelay.admission import WAITER_PREFIX, waiter_key
from jobrelay.aws import StepFunctionsTrackerStarter
from jobrelay.aws_limits import DynamoConnectionSlots
from jobrelay.models import TrackerState
from jobrelay.ports import CancelRecord, LedgerEntry, SlotsView, Waiter
from pydantic import ValidationError

CONSOLE_URL = (
    "https://{region}.console.aws.amazon.com/states/home?region={region}"
    "#/v2/executions/details/{arn}"
)
# A poll round is 9 history events, so the newest tracker document is in the first page of a
# reversed history unless retries fill it (Step Functions pages at most 1000 events).
HISTORY_PAGE = 200
# Executions a closed-since look reads: the newest started first (ListExecutions' order).
RECENT_EXECUTIONS = 100
# Waiting requests `jobs` lists per connection (the oldest; the rest are counted).
WAITERS_SHOWN = 100
# What a request is while it waits for its connection (no tracker yet, no job).
WAITING = "WAITING"


class LedgerReader(Protocol):
    """What status reads of the job ledger (`jobrelay.aws.DynamoJobLedger` is one)."""

    def entry(self, request_id: str) -> LedgerEntry | None: ...

    def cancel_of(self, request_id: str) -> CancelRecord | None: ...


class LimitsReader(Protocol):
    """What status and jobs read of the limits table (`LimitsTableReader` is one)."""

    def connections(self) -> list[str]: ...

    def view(self, connection: str) -> SlotsView | None: ...

    def waiters(self, connection: str, limit: int = 100) -> list[Waiter]: ...

    def waiter(self, connection: str, key: str) -> Waiter | None: ...

    def position(self, connection: str, key: str) -> int: ...


class LimitsTableReader(DynamoConnectionSlots):
    """The limits table as the CLI reads it: the layer's reads, and one waiter by its key
    (no request path needs that read, so the layer has none)."""

    def waiter(self, connection: str, key: str) -> Waiter | None:
        item = self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": connection}, "sk": {"S": key}},
            ConsistentRead=True,
        ).get("Item")
        return self._waiter(connection, item) if item else None


@dataclass(frozen=True)
class Waiting:
    """What a request waits for before its job is created: a slot of its connection (its
    place in line, how many of the connection's slots are held) or its creation rate."""

    connection: str
    waiting_for: str
    since: datetime | None = None
    deadline_at: datetime | None = None
    # 1-based place in the connection's queue; None when it is not in it (yet, or any more).
    position: int | None = None
    # The connection's slots as they stand: its cap, how many are held, how many wait.
    cap: int | None = None
    in_flight: int | None = None
    queued: int | None = None
    # A slot is held for it: it came to it (its job is being created) or it waits for the rate.
    holds_slot: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "waiting_for": self.waiting_for,
            "since": self.since.isoformat() if self.since else None,
            "deadline_at": self.deadline_at.isoformat() if self.deadline_at else None,
            "position": self.position,
            "cap": self.cap,
            "in_flight": self.in_flight,
            "queued": self.queued,
            "holds_slot": self.holds_slot,
        }


@dataclass(frozen=True)
class ConnectionQueue:
    """A connection with slots, as `jobs` shows it: its cap, the slots held, and its oldest
    waiting requests (`queued` counts them all)."""

    connection: str
    cap: int
    in_flight: int
    queued: int
    waiters: list[RequestStatus]


@dataclass(frozen=True)
class Outcome:
    type: str
    id: str


@dataclass(frozen=True)
class RequestStatus:
    """What is known of one request; a field nobody knows yet is None."""

    request_id: str
    provider: str | None = None
    connection: str | None = None
    remote_job_id: str | None = None
    status: str | None = None
    raw_status: str | None = None
    created_at: datetime | None = None
    last_poll_at: datetime | None = None
    next_poll_at: datetime | None = None
    deadline_at: datetime | None = None
    polls: int | None = None
    generation: int | None = None
    execution_arn: str | None = None
    execution_status: str | None = None
    console_url: str | None = None
    stopped_at: datetime | None = None
    cancel: CancelRecord | None = None
    outcome: Outcome | None = None
    waiting: Waiting | None = None

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        cancel = self.cancel
        return {
            "request_id": self.request_id,
            "provider": self.provider,
            "connection": self.connection,
            "remote_job_id": self.remote_job_id,
            "status": self.status,
            "raw_status": self.raw_status,
            "created_at": when(self.created_at),
            "last_poll_at": when(self.last_poll_at),
            "next_poll_at": when(self.next_poll_at),
            "deadline_at": when(self.deadline_at),
            "polls": self.polls,
            "generation": self.generation,
            "execution_arn": self.execution_arn,
            "execution_status": self.execution_status,
            "console_url": self.console_url,
            "stopped_at": when(self.stopped_at),
            "cancel": None
            if cancel is None
            else {
                "reason": cancel.reason,
                "requested_by": cancel.requested_by,
                "requested_at": when(cancel.requested_at),
            },
            "outcome": None
            if self.outcome is None
            else {"type": self.outcome.type, "id": self.outcome.id},
            "waiting": None if self.waiting is None else self.waiting.as_json(),
        }


def status_of_outcome(event_type: str) -> str:
    """`jobrelay.job.timed_out` -> `TIMED_OUT`: the request's last word, once published."""
    return event_type.rsplit(".", 1)[-1].upper()


class Tracking:
    """Reads a stack's requests: `sfn` is its Step Functions client (boto3 or a fake);
    `limits` is None for a stack without connection limits (deployed before them)."""

    def __init__(
        self,
        sfn: Any,
        state_machine_arn: str,
        ledger: LedgerReader,
        region: str,
        limits: LimitsReader | None = None,
    ):
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.ledger = ledger
        self.region = region
        self.limits = limits
        # The layer's own walk over the generations decides which execution is current.
        self.trackers = StepFunctionsTrackerStarter(state_machine_arn, client=sfn)

    def request(self, request_id: str) -> RequestStatus | None:
        """The request as its current execution and the ledger know it; None for an id
        neither knows."""
        current = self.trackers.current(request_id)
        entry = self.ledger.entry(request_id)
        cancel = self.ledger.cancel_of(request_id)
        if current is None and entry is None and cancel is None:
            return None
        if current is not None:
            reading = self._read(self.sfn.describe_execution(executionArn=current.arn))
        else:
            reading = RequestStatus(request_id)
        known: dict[str, Any] = {"request_id": request_id, "cancel": cancel}
        if entry is not None:
            known["remote_job_id"] = reading.remote_job_id or entry.remote_job_id
            known["created_at"] = reading.created_at or entry.created_at
            known["connection"] = reading.connection or entry.connection
            if entry.outcome_type and entry.outcome_id:
                known["outcome"] = Outcome(entry.outcome_type, entry.outcome_id)
        outcome = known.get("outcome") or reading.outcome
        if outcome is not None:
            known["outcome"] = outcome
            known["status"] = status_of_outcome(outcome.type)
            known["next_poll_at"] = None
        elif current is None and entry is not None and entry.remote_job_id is None:
            found = self._waiting(entry)
            if found is not None:
                waiting, provider = found
                known.update(status=WAITING, waiting=waiting, deadline_at=waiting.deadline_at)
                known["provider"] = reading.provider or provider
        return replace(reading, **known)

    def _waiting(self, entry: LedgerEntry) -> tuple[Waiting, str | None] | None:
        """What a request the ledger says waits (and that has no job) waits for: its place
        in its connection's queue, or the slot that came to it, or the creation rate; and
        its provider when its queued message tells (the ledger does not)."""
        if entry.waiting_for is None or entry.connection is None:
            return None
        waiting = Waiting(entry.connection, entry.waiting_for, since=entry.arrived_at)
        if self.limits is None:
            return waiting, None
        name, request_id = entry.connection, entry.request_id
        queued: Waiter | None = None
        key = waiter_key(entry.arrived_at, request_id) if entry.arrived_at else None
        if entry.waiting_for == "slot" and key is not None:
            # Before the slots: a waiter admitted between the two reads is still seen in line.
            queued = self.limits.waiter(name, key)
        view = self.limits.view(name)
        if view is not None:
            waiting = replace(
                waiting,
                cap=view.cap,
                in_flight=len(view.held),
                queued=view.waiting,
                holds_slot=queued is None and request_id in view.held,
            )
        if queued is not None and key is not None:
            place = self.limits.position(name, key)
            in_line = replace(waiting, deadline_at=queued.deadline_at, position=place)
            return in_line, _provider_of(queued.body)
        if view is not None and waiting.holds_slot:
            return replace(waiting, deadline_at=view.held[request_id]), None
        return waiting, None

    def queues(
        self, provider: str | None = None, providers_of: dict[str, str] | None = None
    ) -> list[ConnectionQueue]:
        """Each connection with a slot held or a request waiting, and its oldest waiters in
        line. With `provider`, only that provider's connections: known by their waiters'
        messages, else by `providers_of` (connection -> provider, from the running jobs)."""
        if self.limits is None:
            return []
        found: list[ConnectionQueue] = []
        for name in self.limits.connections():
            view = self.limits.view(name)
            if view is None or (not view.held and view.waiting <= 0):
                continue
            waiters = self.limits.waiters(name, WAITERS_SHOWN) if view.waiting > 0 else []
            readings = [
                _waiter_reading(waiter, place, view) for place, waiter in enumerate(waiters, 1)
            ]
            owner = next((r.provider for r in readings if r.provider), None)
            owner = owner or (providers_of or {}).get(name)
            if provider is not None and owner != provider:
                continue
            queued = max(view.waiting, len(readings))
            found.append(ConnectionQueue(name, view.cap, len(view.held), queued, readings))
        return found

    def in_flight(self, provider: str | None = None) -> list[RequestStatus]:
        """One reading per request whose tracker runs (the newest generation of a request
        that is continuing as new), oldest created first."""
        readings: dict[str, RequestStatus] = {}
        for item in self._executions(statusFilter="RUNNING"):
            reading = self._read(self.sfn.describe_execution(executionArn=item["executionArn"]))
            if provider is not None and reading.provider != provider:
                continue
            seen = readings.get(reading.request_id)
            if seen is None or (reading.generation or 0) > (seen.generation or 0):
                readings[reading.request_id] = reading
        return sorted(readings.values(), key=_by_creation)

    def closed_since(self, since: datetime) -> list[str]:
        """The ARNs of the recently started executions that closed at or after `since`."""
        page = self.sfn.list_executions(
            stateMachineArn=self.state_machine_arn, maxResults=RECENT_EXECUTIONS
        )
        return [
            item["executionArn"]
            for item in page.get("executions", [])
            if item.get("status") != "RUNNING"
            and item.get("stopDate")
            and item["stopDate"] >= since
        ]

    def request_of(self, execution_arn: str) -> str | None:
        """The request an execution tracks (from its input)."""
        state = _tracker_state(self.sfn.describe_execution(executionArn=execution_arn).get("input"))
        return state.job.request_id if state else None

    def _executions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, **filters}
        while True:
            page = self.sfn.list_executions(**kwargs)
            yield from page.get("executions", [])
            if not page.get("nextToken"):
                return
            kwargs["nextToken"] = page["nextToken"]

    def _read(self, execution: dict[str, Any]) -> RequestStatus:
        """An execution's job and its latest poll: the newest tracker document in its history,
        else its input (no round has run yet)."""
        arn = str(execution["executionArn"])
        started = _tracker_state(execution.get("input"))
        latest = self._latest_document(arn)
        state, exited_at = latest if latest else (started, execution.get("startDate"))
        if state is None:  # not a tracker document: an execution started by hand
            return RequestStatus(arn.rsplit(":", 1)[-1], execution_arn=arn)
        job, poll = state.job, state.poll
        running = execution.get("status") == "RUNNING"
        polled_at = poll.polled_at or (exited_at if latest else None)
        wait_from = polled_at or exited_at
        next_poll = None
        if running and not poll.terminal and wait_from is not None:
            next_poll = wait_from + timedelta(seconds=poll.next_poll_seconds)
        return RequestStatus(
            request_id=job.request_id,
            provider=job.provider,
            connection=job.connection_name,
            remote_job_id=job.remote_job_id,
            status=str(poll.status),
            raw_status=poll.raw_status,
            created_at=job.created_at,
            last_poll_at=polled_at,
            next_poll_at=next_poll,
            deadline_at=job.deadline_at,
            polls=poll.polls,
            generation=job.generation,
            execution_arn=arn,
            execution_status=execution.get("status"),
            console_url=CONSOLE_URL.format(region=self.region, arn=arn),
            stopped_at=execution.get("stopDate"),
            outcome=_published(execution),
        )

    def _latest_document(self, execution_arn: str) -> tuple[TrackerState, datetime] | None:
        """The output of the newest task state that exited with the tracker's document
        (PollJobStatus's rounds, and the outage, cancel and continue steps), by event id:
        an emulator may ignore `reverseOrder`."""
        kwargs: dict[str, Any] = {
            "executionArn": execution_arn,
            "reverseOrder": True,
            "maxResults": HISTORY_PAGE,
        }
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            exits = sorted(
                (e for e in page.get("events", []) if e.get("type") == "TaskStateExited"),
                key=lambda e: int(e["id"]),
                reverse=True,
            )
            for event in exits:
                state = _tracker_state((event.get("stateExitedEventDetails") or {}).get("output"))
                if state is not None:
                    return state, event["timestamp"]
            if not page.get("nextToken"):
                return None
            kwargs["nextToken"] = page["nextToken"]


def _waiter_reading(waiter: Waiter, place: int, view: SlotsView) -> RequestStatus:
    """A request in a connection's queue, as `jobs` lists it."""
    waiting = Waiting(
        connection=waiter.connection,
        waiting_for="slot",
        since=arrival_of(waiter.key),
        deadline_at=waiter.deadline_at,
        position=place,
        cap=view.cap,
        in_flight=len(view.held),
        queued=view.waiting,
    )
    return RequestStatus(
        request_id=waiter.request_id,
        provider=_provider_of(waiter.body),
        connection=waiter.connection,
        status=WAITING,
        deadline_at=waiter.deadline_at,
        waiting=waiting,
    )


def arrival_of(key: str) -> datetime | None:
    """When a waiter arrived, from its sort key (`jobrelay.admission.waiter_key`)."""
    epoch, _, _ = key.removeprefix(WAITER_PREFIX).partition("#")
    try:
        return datetime.fromtimestamp(float(epoch), UTC)
    except ValueError:
        return None


def _provider_of(body: str) -> str | None:
    """The provider a waiting request's message names (a request waits only once valid)."""
    try:
        provider = json.loads(body).get("provider")
    except (ValueError, AttributeError):
        return None
    return provider if isinstance(provider, str) else None


def _by_creation(reading: RequestStatus) -> tuple[float, str]:
    created = reading.created_at.timestamp() if reading.created_at else float("inf")
    return created, reading.request_id


def _tracker_state(document: str | None) -> TrackerState | None:
    if not document:
        return None
    try:
        return TrackerState.model_validate_json(document)
    except ValidationError:
        return None


def _published(execution: dict[str, Any]) -> Outcome | None:
    """The outcome PublishOutcome answered, when it is the execution's last step."""
    try:
        output = json.loads(execution.get("output") or "null")
    except ValueError:
        return None
    if isinstance(output, dict) and output.get("event_type") and output.get("event_id"):
        return Outcome(str(output["event_type"]), str(output["event_id"]))
    return None
