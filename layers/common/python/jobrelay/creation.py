"""CreateJob's decisions for one queue message: validate, create the job at the provider
once, start its tracker once; refuse what cannot succeed with a rejected event and a DLQ copy.

Transient failures are raised (`ProviderUnavailable`, AWS errors) so the edge reports the
record as a batch item failure and SQS delivers it again later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from jobrelay.admission import Ended, Entered, Gate
from jobrelay.connections import Connection, default_connection
from jobrelay.errors import (
    ConfigurationError,
    FieldProblem,
    JobClaimed,
    ProviderRejected,
    RequestInvalid,
    RequestWaiting,
    TrackerThrottled,
)
from jobrelay.events import (
    cancel_details,
    cancelled_event,
    rejected_event,
    validated_event,
    waited_out_event,
)
from jobrelay.messages import (
    QueueMessage,
    metadata_hint,
    parse_message,
    parse_request,
    provider_hint,
    request_key,
)
from jobrelay.models import (
    CancelRequest,
    JobRef,
    JobStatus,
    OutcomeEvent,
    PollResult,
    ProviderName,
    TrackerState,
)
from jobrelay.observability import count_job, logger
from jobrelay.ports import (
    CancelRecord,
    DeadLetterQueue,
    JobLedger,
    LedgerEntry,
    OutcomePublisher,
    RequestQueue,
    TrackerControl,
    TrackerStarter,
    utc_now,
)
from jobrelay.providers.base import CreatedJob, Provider
from jobrelay.settings import Settings

if TYPE_CHECKING:
    # The union of every provider's request, for the annotations only: built at run time,
    # it would import every adapter and make every request model (a request is validated by
    # its own provider's model, `messages.parse_request`).
    from jobrelay.registry import JobRequest

# How far before the first create attempt a reconciled job may have been created (clock skew
# between us and the provider).
RECONCILE_SKEW = timedelta(minutes=2)
# How long a delivery holds its request's lease when the caller does not say (CreateJob
# passes its invocation's remaining time): a crashed holder delays a retry by this at most.
LEASE_SECONDS = 900.0
# A request whose tracker Step Functions refused (throttled, or at the open-executions
# quota) comes back after this long, as often as it takes: SQS's longest delay.
TRACKER_RETRY_SECONDS = 900
# Listings re-read while passing over other requests' jobs, before the record is retried.
MAX_ADOPTION_TRIES = 5
MAX_EVENT_PROBLEMS = 50


__all__ = [
    "CreateResult",
    "JobCreator",
    "QueueMessage",
    "parse_message",
    "parse_request",
    "request_key",
]


def _default_connection_of(name: str, provider: str | None = None) -> Connection:
    """A `JobCreator`'s connections when it is given none (tests): each provider's default."""
    return default_connection(name)


class CreateResult(NamedTuple):
    """What became of one message (the record's result in the batch response). A
    NamedTuple: jobrelay makes it from its own decisions, nothing to validate."""

    outcome: Literal[
        "created", "rejected", "validated", "cancelled", "cancel_recorded", "timed_out"
    ]
    request_id: str
    provider: str | None = None
    remote_job_id: str | None = None
    execution_arn: str | None = None
    event_id: str | None = None
    adopted: bool = False


class JobCreator:
    """Decides each queue message (`handle`) through its ports. A plain class, not a
    dataclass: making one compiles its methods at import (cold start)."""

    def __init__(
        self,
        settings: Settings,
        provider_for: Callable[[ProviderName], Provider],
        publisher: OutcomePublisher,
        starter: TrackerStarter,
        dead_letters: DeadLetterQueue,
        ledger: JobLedger,
        trackers: TrackerControl,
        # The request's connection by name (checked to be of its provider); the provider
        # pool's.
        connection_of: Callable[..., Connection] = _default_connection_of,
        # Connection limits (slots, waiting, creation rate); needed once a connection has
        # any.
        gate: Gate | None = None,
        # The job requests queue: a request whose tracker Step Functions refuses for now
        # goes back to it with a delay (without it, the record is retried by SQS).
        requeue: RequestQueue | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.provider_for = provider_for
        self.publisher = publisher
        self.starter = starter
        self.dead_letters = dead_letters
        self.ledger = ledger
        self.trackers = trackers
        self.connection_of = connection_of
        self.gate = gate
        self.requeue = requeue
        self.clock = clock

    def handle(
        self, message: QueueMessage, *, lease_seconds: float = LEASE_SECONDS
    ) -> CreateResult:
        """One message, once: the request's lease is taken in the job ledger before anything
        is done for it (a concurrent duplicate is retried, `RequestInProgress`), and what an
        earlier delivery did (its job, its cancel, its outcome) is read in the same write.
        The lease is given up by the write that ends this delivery's work, or on failure."""
        # A malformed cancel is rejected under its own key (`cancel:<id>`), never as the
        # outcome of the request it names.
        request_id = message.request_key
        connection: Connection | None = None
        begun = False
        try:
            request = parse_message(message.body)
            if isinstance(request, CancelRequest):
                return self._cancel(request, message)
            request_id = request.request_id or message.message_id
            logger.thread_safe_append_keys(request_id=request_id, provider=request.provider)
            # An unknown connection, or another provider's, is refused before any call.
            connection = self.connection_of(
                request.connection or request.provider, provider=request.provider
            )
            logger.thread_safe_append_keys(connection=connection.name)
            # A provider whose params ask for a dry run (deepset's `dry_run`) validates only.
            dry_run = bool(getattr(request.params, "dry_run", False))
            # A request of a connection with limits notes its attempt once admitted.
            entry = self.ledger.begin(
                request_id,
                self.clock(),
                lease_seconds=lease_seconds,
                attempt=not (dry_run or connection.limits.any),
            )
            begun = True
            if entry is not None and entry.outcome_type is not None:
                return self._already_ended(request_id, request.provider, entry)
            if entry is not None and entry.cancel is not None and entry.remote_job_id is None:
                self._leave(connection, request_id)
                return self._cancelled_before_creation(
                    request, request_id, entry.cancel, connection
                )
            if dry_run:
                return self._validate(request, request_id, connection)
            return self._create_and_track(request, request_id, connection, message, entry)
        except (RequestInvalid, ProviderRejected) as exc:
            try:
                if not begun:
                    # A rejection is one outcome too: a duplicate of the message finds it.
                    entry = self.ledger.begin(
                        request_id, self.clock(), lease_seconds=lease_seconds, attempt=False
                    )
                    begun = True
                    if entry is not None and entry.outcome_type is not None:
                        return self._already_ended(request_id, provider_hint(message.body), entry)
                if connection is not None:
                    self._leave(connection, request_id)
                return self._reject(
                    message,
                    request_id,
                    provider_hint(message.body),
                    exc.code,
                    exc.message,
                    exc.problems,
                    connection=connection.name if connection else None,
                )
            except Exception:
                if begun:
                    self._release(request_id)
                raise
        except RequestWaiting:
            raise  # noted as waiting, its lease given up with it
        except Exception:
            if begun:
                self._release(request_id)
            raise

    def _release(self, request_id: str) -> None:
        """This delivery failed: the next one need not wait out the lease."""
        try:
            self.ledger.release(request_id)
        except Exception as exc:  # the lease runs out on its own
            logger.warning("lease not given up; it expires", error=str(exc)[:300])

    def _already_ended(
        self, request_id: str, provider: str | None, entry: LedgerEntry
    ) -> CreateResult:
        """A delivery of a request that has its outcome (a duplicate, or a retry after its
        work was done): nothing is done again."""
        kind = (entry.outcome_type or "").rsplit(".", 1)[-1]
        outcome: Any = kind if kind in ("rejected", "validated", "cancelled", "timed_out") else None
        if outcome == "timed_out" and entry.remote_job_id is not None:
            outcome = None  # timed out while tracked: it was created
        logger.info("request already has its outcome", outcome=entry.outcome_type)
        # Nothing is written for it, so its lease is given up here: a third delivery of it
        # would otherwise be refused until the lease ran out, and then again, to the DLQ.
        self._release(request_id)
        return CreateResult(
            outcome=outcome or "created",
            request_id=request_id,
            provider=provider,
            remote_job_id=entry.remote_job_id,
            event_id=entry.outcome_id,
            adopted=entry.remote_job_id is not None,
        )

    def _leave(self, connection: Connection, request_id: str) -> None:
        """The request ends here: out of its connection's queue, its slot (if any) freed."""
        if connection.limits.max_in_flight is not None and self.gate is not None:
            self.gate.leave(connection.name, request_id)

    def _enter(
        self, connection: Connection, request_id: str, body: str, deadline_seconds: int
    ) -> Entered | Ended:
        if not connection.limits.any:
            return Entered(deadline_at=None, holds_slot=False)
        if self.gate is None:
            raise ConfigurationError(
                f"connection {connection.name!r} has limits, and this function has no "
                "LIMITS_TABLE and JOBS_QUEUE_URL"
            )
        return self.gate.enter(
            connection,
            request_id,
            body,
            deadline_seconds=deadline_seconds,
            cancelled=lambda: self.ledger.cancel_of(request_id) is not None,
        )

    def _cancel(self, request: CancelRequest, message: QueueMessage) -> CreateResult:
        """Keep the cancel (a request arriving later is cancelled too) and stop the request's
        tracker if it runs: its stop ends in the `cancelled` outcome (TrackerEnded), and a
        tracker not yet started finds the cancel on its first poll."""
        request_id = request.request_id
        logger.thread_safe_append_keys(request_id=request_id, cancel=True)
        asked = CancelRecord(
            request_id=request_id,
            reason=request.reason,
            requested_by=request.requested_by or message.sender or "unknown",
            requested_at=self.clock(),
        )
        cancel, new = self.ledger.record_cancel(asked)
        entry = self.ledger.entry(request_id)
        stopped: str | None = None
        if entry is not None and entry.outcome_type is not None:
            logger.info("cancel after the outcome: nothing changes", outcome=entry.outcome_type)
        elif entry is not None and entry.remote_job_id is None and entry.waiting_for:
            # Waiting for its connection: its message comes back now and ends it cancelled
            # (a request over the creation rate comes back within the minute).
            woken = self.gate.wake_cancelled(entry) if self.gate is not None else False
            logger.info("cancel of a waiting request", woken=woken)
        elif entry is not None and entry.remote_job_id is not None:
            current = self.trackers.current(request_id)
            cause = f"cancelled by {cancel.requested_by}" + (
                f": {cancel.reason}" if cancel.reason else ""
            )
            if current is not None and self.trackers.stop(
                current.arn, error="jobrelay.Cancelled", cause=cause
            ):
                stopped = current.arn
        logger.info("cancel recorded", new=new, tracker_stopped=stopped)
        return CreateResult(outcome="cancel_recorded", request_id=request_id, execution_arn=stopped)

    def _cancelled_before_creation(
        self, request: JobRequest, request_id: str, cancel: CancelRecord, connection: Connection
    ) -> CreateResult:
        event = cancelled_event(
            source=self.settings.event_source,
            request_id=request_id,
            provider=request.provider,
            connection=connection.name,
            cancel=cancel_details(cancel),
            metadata=request.metadata,
            now=self.clock(),
        )
        self._announce(event, "JobsCancelled", request.provider)
        logger.info("request cancelled before creation", event_id=event.id)
        return CreateResult(
            outcome="cancelled", request_id=request_id, provider=request.provider, event_id=event.id
        )

    def _announce(self, event: OutcomeEvent, metric: str, provider: str | None) -> None:
        """An outcome decided here, with no tracker to publish it: the event, its metric,
        then the ledger's note of it (status and later cancels read it)."""
        self.publisher.publish(event)
        count_job(metric, provider)
        self.ledger.record_outcome(event.data.request_id, event_type=event.type, event_id=event.id)

    def _waited_out(
        self, request: JobRequest, request_id: str, connection: Connection, ended: Ended
    ) -> CreateResult:
        self._leave(connection, request_id)
        event = waited_out_event(
            source=self.settings.event_source,
            request_id=request_id,
            provider=request.provider,
            connection=connection.name,
            deadline_at=ended.deadline_at,
            waited_for=ended.waited_for,
            metadata=request.metadata,
            now=self.clock(),
        )
        self._announce(event, "JobsTimedOut", request.provider)
        logger.info("deadline passed while waiting", event_id=event.id)
        return CreateResult(
            outcome="timed_out", request_id=request_id, provider=request.provider, event_id=event.id
        )

    def _validate(
        self, request: JobRequest, request_id: str, connection: Connection
    ) -> CreateResult:
        details = self.provider_for(connection.name).validate(request.params)
        event = validated_event(
            source=self.settings.event_source,
            request_id=request_id,
            provider=request.provider,
            connection=connection.name,
            details=details,
            metadata=request.metadata,
            now=self.clock(),
        )
        self._announce(event, "JobsValidated", request.provider)
        logger.info("dry run validated", event_id=event.id)
        return CreateResult(
            outcome="validated", request_id=request_id, provider=request.provider, event_id=event.id
        )

    def _create_and_track(
        self,
        request: JobRequest,
        request_id: str,
        connection: Connection,
        message: QueueMessage,
        entry: LedgerEntry | None,
    ) -> CreateResult:
        provider = self.provider_for(connection.name)
        deadline = request.tracking.deadline_seconds or self.settings.default_deadline_seconds
        entered = self._enter(connection, request_id, message.body, deadline)
        if isinstance(entered, Ended):
            if entered.why == "waited_out":
                return self._waited_out(request, request_id, connection, entered)
            cancel = self.ledger.cancel_of(request_id)
            assert cancel is not None  # Ended("cancelled") only after reading one
            self._leave(connection, request_id)
            return self._cancelled_before_creation(request, request_id, cancel, connection)
        if connection.limits.any:
            # Admitted: the attempt is noted now (a wait is not an attempt).
            entry = self.ledger.begin_attempt(request_id, self.clock())
        created, adopted, arrived_at = self._create_once(provider, request, request_id, entry)
        now = self.clock()
        interval = request.tracking.poll_interval_seconds or self.settings.poll_interval_seconds
        report = created.report
        # A request that waited for its connection counts its deadline from its arrival.
        deadline_at = entered.deadline_at or (arrived_at or now) + timedelta(seconds=deadline)
        deadline = max(1, math.ceil((deadline_at - now).total_seconds()))
        job = JobRef(
            request_id=request_id,
            provider=request.provider,
            connection=connection.name,
            holds_slot=entered.holds_slot,
            remote_job_id=created.remote_job_id,
            locator=created.locator,
            created_at=now,
            deadline_at=deadline_at,
            poll_interval_seconds=interval,
            outage_wait_seconds=self.settings.provider_outage_wait_seconds,
            min_poll_seconds=request.tracking.min_poll_seconds,
            max_poll_seconds=request.tracking.max_poll_seconds,
            metadata=request.metadata,
        )
        state = TrackerState(
            job=job,
            poll=PollResult(
                status=report.status if report else JobStatus.QUEUED,
                raw_status=report.raw_status if report else None,
                next_poll_seconds=min(self.settings.first_poll_seconds, interval, deadline),
            ),
        )
        try:
            execution_arn, started = self.starter.start(state)
        except TrackerThrottled as exc:
            if self.requeue is None:
                raise
            # The job is recorded; its next delivery adopts it and starts its tracker.
            self.requeue.send(message.body, delay_seconds=TRACKER_RETRY_SECONDS)
            self._release(request_id)
            logger.warning(
                "tracker refused for now; the request comes back",
                error=exc.message,
                delay_seconds=TRACKER_RETRY_SECONDS,
            )
            raise RequestWaiting(
                exc.message, connection=connection.name, waiting_for="tracker"
            ) from exc
        if not adopted:
            count_job("JobsCreated", request.provider)
        elif entry is not None and entry.remote_job_id is not None:
            # A later delivery of a request whose job was recorded: nothing written, so
            # its lease is given up here (a new job's record gives it up with the job).
            self._release(request_id)
        logger.info(
            "job created and tracked",
            remote_job_id=created.remote_job_id,
            execution_arn=execution_arn,
            execution_started=started,
            adopted=adopted,
        )
        return CreateResult(
            outcome="created",
            request_id=request_id,
            provider=request.provider,
            remote_job_id=created.remote_job_id,
            execution_arn=execution_arn,
            adopted=adopted,
        )

    def _create_once(
        self, provider: Provider, request: JobRequest, request_id: str, entry: LedgerEntry | None
    ) -> tuple[CreatedJob, bool, datetime | None]:
        """Create the remote job unless an earlier attempt of this request already did (the
        ledger's entry before this attempt, `entry`); answers it, whether it was adopted, and
        when the request first arrived if it waited."""
        arrived_at = entry.arrived_at if entry else None
        if entry and entry.remote_job_id:
            job = CreatedJob(remote_job_id=entry.remote_job_id, locator=entry.locator)
            return job, True, arrived_at
        if entry and entry.create_attempted_at:
            # An earlier attempt may have reached the provider without an answer.
            found = self._adopt(provider, request, request_id, entry.create_attempted_at)
            if found is not None:
                return found, True, arrived_at
        created = provider.create(request.params)
        # Raises JobClaimed if another request's reconciliation adopted this job in the
        # moment between; the record is retried and its reconciliation passes over it.
        self.ledger.record_created(
            request_id, created.remote_job_id, created.locator, provider=request.provider
        )
        return created, False, arrived_at

    def _adopt(
        self, provider: Provider, request: JobRequest, request_id: str, attempted_at: datetime
    ) -> CreatedJob | None:
        """The job an earlier attempt made, found in the provider's listing and claimed for
        this request; jobs other requests have claimed are passed over."""
        claimed: set[str] = set()
        for _ in range(MAX_ADOPTION_TRIES):
            found = provider.find_created(
                request.params, attempted_at - RECONCILE_SKEW, exclude=claimed
            )
            if found is None:
                return None
            try:
                self.ledger.record_created(
                    request_id, found.remote_job_id, found.locator, provider=request.provider
                )
            except JobClaimed as exc:
                logger.info(
                    "matching job belongs to another request",
                    remote_job_id=found.remote_job_id,
                    owner=exc.owner,
                )
                claimed.add(found.remote_job_id)
                continue
            logger.info("adopted job from an earlier attempt", remote_job_id=found.remote_job_id)
            return found
        # Many requests on one target in one window: rather than guess, let SQS retry later.
        raise JobClaimed(
            f"more than {MAX_ADOPTION_TRIES} {request.provider} jobs on this target since the "
            "first attempt belong to other requests"
        )

    def _reject(
        self,
        message: QueueMessage,
        request_id: str,
        provider: str | None,
        code: str,
        reason: str,
        problems: list[FieldProblem],
        *,
        connection: str | None = None,
    ) -> CreateResult:
        metadata = metadata_hint(message.body)
        # An SNS message holds 256 KiB: a body with thousands of bad fields is reported by
        # its first problems and a count.
        details: dict[str, Any] = {}
        if len(problems) > MAX_EVENT_PROBLEMS:
            details["problems_total"] = len(problems)
        event = rejected_event(
            source=self.settings.event_source,
            request_id=request_id,
            provider=provider,
            code=code,
            message=reason[:2000],
            problems=problems[:MAX_EVENT_PROBLEMS],
            metadata=metadata,
            details=details,
            connection=connection,
            now=self.clock(),
        )
        # The DLQ copy first: if the publish then fails, the retry may copy twice, but it
        # never publishes the outcome twice.
        self.dead_letters.send(
            message.body,
            reason=reason,
            code=code,
            request_id=request_id,
            source_id=message.message_id,
        )
        self._announce(event, "JobsRejected", provider)
        logger.warning("request rejected", error_code=code, reason=reason, event_id=event.id)
        return CreateResult(
            outcome="rejected", request_id=request_id, provider=provider, event_id=event.id
        )
