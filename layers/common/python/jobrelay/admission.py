"""Connection limits at CreateJob: whether a request may create its job now, or waits.

A connection with `max_in_flight` has that many slots. A request takes one before its create
and keeps it until its outcome is published (`Gate.free`, from PublishOutcome, TrackerEnded
through it, or CreateJob for an outcome it decides itself). A request that finds no free
slot, or others already waiting, joins its connection's queue in arrival order and its
message is done with: the slot that frees next is handed to the oldest waiter, whose
message is sent back to the queue at once. A timer message (the request's own, delayed up to
15 minutes) comes back until its deadline, so a waiting request ends `timed_out` at its
deadline even if no slot ever frees. A connection with `max_creates_per_minute` counts
creates per minute; a request over the count comes back at the next minute.

Waiting never goes through SQS's receive count (each return is a new message), so it never
reaches the DLQ; and every decision about a waiting request is taken by processing its own
message under its idempotency key, so it ends in exactly one outcome.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from jobrelay.connections import Connection
from jobrelay.errors import RequestWaiting
from jobrelay.observability import logger
from jobrelay.ports import (
    ConnectionSlots,
    JobLedger,
    LedgerEntry,
    RequestQueue,
    Waiter,
    utc_now,
)

WAITER_PREFIX = "w#"
# The longest delay of an SQS message: a waiting request looks at its deadline this often.
TIMER_SECONDS = 900
# A slot whose request has had its outcome is reclaimed at once; one whose holder is this
# long past its deadline with no outcome too: its tracker would have ended it at the
# deadline, so its message went to the DLQ through SQS's receive count before a tracker
# started (the request, and any job it made, are then an operator's).
STALE_AFTER_DEADLINE = timedelta(hours=1)
# Requests over the creation rate come back spread over this many seconds of the next minute.
RATE_SPREAD_SECONDS = 5


def waiter_key(arrived_at: datetime, request_id: str) -> str:
    """Sorts in arrival order: a fixed-width epoch, then the id (ties broken by it)."""
    return f"{WAITER_PREFIX}{arrived_at.timestamp():017.6f}#{request_id}"


def with_request_id(body: str, request_id: str) -> str:
    """The message as it goes back to the queue: with its request id, so a request that
    came without one (its id is its first message's id) stays the same request."""
    raw = json.loads(body)
    if raw.get("request_id") == request_id:
        return body
    return json.dumps({**raw, "request_id": request_id}, separators=(",", ":"))


# The answers of `Gate.enter` are NamedTuples and the gate a plain class, not dataclasses:
# as immutable and compared by value, and made without compiling methods at import (~3 M
# instructions each, which CreateJob's cold start paid for every one of them).
class Entered(NamedTuple):
    """The request may create its job: until when (None: its deadline counts from now, it
    never waited) and whether it holds a slot."""

    deadline_at: datetime | None
    holds_slot: bool


class Ended(NamedTuple):
    """The request ends without a job: its deadline passed while it waited, or it was
    cancelled while it waited."""

    why: Literal["waited_out", "cancelled"]
    waited_for: str
    deadline_at: datetime


class Gate:
    """Connection limits at CreateJob (and the slot a published outcome frees): the slots
    and waiting requests, the queue a waiting request goes back to, the job ledger."""

    def __init__(
        self,
        slots: ConnectionSlots,
        queue: RequestQueue,
        ledger: JobLedger,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.slots = slots
        self.queue = queue
        self.ledger = ledger
        self.clock = clock

    def __repr__(self) -> str:
        return f"Gate(slots={self.slots!r}, queue={self.queue!r}, ledger={self.ledger!r})"

    def enter(
        self,
        connection: Connection,
        request_id: str,
        body: str,
        *,
        deadline_seconds: int,
        cancelled: Callable[[], bool],
    ) -> Entered | Ended:
        """Take the request's slot and count its create, or raise `RequestWaiting` (its
        message is done with: it is queued, or comes back later)."""
        limits = connection.limits
        if not limits.any:
            return Entered(deadline_at=None, holds_slot=False)
        now = self.clock()
        deadline_at: datetime | None = None
        holds = False
        if limits.max_in_flight is not None:
            until = self.slots.take(
                connection.name,
                request_id,
                cap=limits.max_in_flight,
                deadline_at=now + timedelta(seconds=deadline_seconds),
            )
            if until is None:
                waited = self._wait(connection, request_id, body, deadline_seconds, now, cancelled)
                if isinstance(waited, Ended):
                    return waited
                until = waited
            holds, deadline_at = True, until
            if now >= until:
                return Ended("waited_out", "slot", until)
        if limits.max_creates_per_minute is not None:
            wait = self.slots.count_create(connection.name, limits.max_creates_per_minute, now)
            if wait > 0:
                return self._rate_wait(
                    connection, request_id, body, deadline_seconds, deadline_at, now, wait
                )
        return Entered(deadline_at=deadline_at, holds_slot=holds)

    def _wait(
        self,
        connection: Connection,
        request_id: str,
        body: str,
        deadline_seconds: int,
        now: datetime,
        cancelled: Callable[[], bool],
    ) -> datetime | Ended:
        """Queue the request and hand out any free slot; answers the request's deadline if
        the slot came to it, else raises `RequestWaiting`."""
        name = connection.name
        cap = connection.limits.max_in_flight or 1
        arrived = self.ledger.note_waiting(request_id, connection=name, waiting_for="slot", at=now)
        deadline_at = arrived + timedelta(seconds=deadline_seconds)
        key = waiter_key(arrived, request_id)
        if now >= deadline_at:
            self.slots.leave(name, key)
            return Ended("waited_out", "slot", deadline_at)
        waiter = Waiter(name, request_id, key, deadline_at, with_request_id(body, request_id))
        self.slots.wait(waiter, cap=cap)
        self.slots.reclaim(name, self._stale, now)
        mine = None
        for admitted in self.slots.admit(name, self._finished):
            if admitted.request_id == request_id:
                mine = admitted
            else:
                self._wake(admitted)
        if mine is not None:
            return mine.deadline_at
        # A cancel recorded while this request was being queued found nothing to wake.
        if cancelled():
            if self.slots.leave(name, key) is None:
                # Admitted meanwhile: its slot is freed by the cancelled outcome.
                logger.info("cancelled as its slot came")
            return Ended("cancelled", "slot", deadline_at)
        until_deadline = math.ceil((deadline_at - now).total_seconds())
        self.queue.send(waiter.body, delay_seconds=min(TIMER_SECONDS, max(1, until_deadline)))
        logger.info("waiting for a slot", connection=name, deadline_at=deadline_at.isoformat())
        raise RequestWaiting(
            f"waiting for a slot of connection {name!r}", connection=name, waiting_for="slot"
        )

    def _rate_wait(
        self,
        connection: Connection,
        request_id: str,
        body: str,
        deadline_seconds: int,
        deadline_at: datetime | None,
        now: datetime,
        wait: float,
    ) -> Ended:
        name = connection.name
        arrived = self.ledger.note_waiting(request_id, connection=name, waiting_for="rate", at=now)
        deadline = deadline_at or arrived + timedelta(seconds=deadline_seconds)
        delay = math.ceil(wait) + random.randint(0, RATE_SPREAD_SECONDS)  # noqa: S311 - spread
        if now + timedelta(seconds=delay) >= deadline:
            return Ended("waited_out", "rate", deadline)
        self.queue.send(with_request_id(body, request_id), delay_seconds=delay)
        logger.info("waiting for the creation rate", connection=name, delay_seconds=delay)
        raise RequestWaiting(
            f"over the creation rate of connection {name!r}", connection=name, waiting_for="rate"
        )

    def _stale(self, request_id: str, until: datetime) -> bool:
        """A holder done with its slot: its outcome is out, or its deadline is long past."""
        if self.clock() > until + STALE_AFTER_DEADLINE:
            return True
        entry = self.ledger.entry(request_id)
        return entry is not None and entry.outcome_type is not None

    def _finished(self, request_id: str) -> bool:
        """A waiter whose request needs no slot any more: it made its job (a later delivery
        found a slot free) or has its outcome."""
        entry = self.ledger.entry(request_id)
        return entry is not None and (
            entry.remote_job_id is not None or entry.outcome_type is not None
        )

    def _wake(self, waiter: Waiter) -> None:
        """Send an admitted waiter's message back to the queue (its slot is held for it; if
        this fails its timer brings it back)."""
        try:
            self.queue.send(waiter.body)
        except Exception as exc:
            logger.warning(
                "could not wake an admitted request; its timer will",
                waiter=waiter.request_id,
                error=str(exc)[:300],
            )

    def free(self, connection: str, request_id: str) -> None:
        """The request is done with its slot (its outcome is out): free it and hand free
        slots to the oldest waiters. Never raises: a slot left held is reclaimed."""
        try:
            self.slots.release(connection, request_id)
            self.slots.reclaim(connection, self._stale, self.clock())
            for admitted in self.slots.admit(connection, self._finished):
                self._wake(admitted)
        except Exception as exc:
            logger.warning(
                "slot not freed; it is reclaimed later", connection=connection, error=str(exc)
            )

    def leave(self, connection: str, request_id: str) -> None:
        """The request ended while it may hold a slot or wait (cancelled, waited out): out of
        the queue, and its slot freed."""
        entry = self.ledger.entry(request_id)
        if entry is not None and entry.arrived_at is not None:
            self.slots.leave(connection, waiter_key(entry.arrived_at, request_id))
        self.free(connection, request_id)

    def wake_cancelled(self, entry: LedgerEntry) -> bool:
        """A cancel for a request waiting for a slot: its message goes back to the queue at
        once, and its processing ends it `cancelled`. False when it was not queued."""
        if entry.connection is None or entry.arrived_at is None or entry.waiting_for != "slot":
            return False
        waiter = self.slots.leave(entry.connection, waiter_key(entry.arrived_at, entry.request_id))
        if waiter is None:
            return False
        self.queue.send(waiter.body)
        return True
