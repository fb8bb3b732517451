"""PublishOutcome's decision: the tracker's final document becomes one published event."""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

from collections.abc import Callable
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from jobrelay.events import outcome_event
from jobrelay.models import LazyModel, TrackerState
from jobrelay.observability import OUTCOME_METRICS, count_job, logger, record_metric
from jobrelay.ports import JobLedger, OutcomePublisher, utc_now


class PublishResult(LazyModel):
    event_id: str
    event_type: str
    status: str
    message_id: str


class OutcomeReporter:
    """Publishes a request's outcome event and notes it. A plain class, not a dataclass:
    making one compiles its methods at import (cold start)."""

    def __init__(
        self,
        publisher: OutcomePublisher,
        source: str,
        # Where the request's outcome is noted once published (status and cancels read it).
        ledger: JobLedger | None = None,
        # Frees the slot of a job that held one, once its outcome is out (connection limits).
        free_slot: Callable[[str, str], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.publisher = publisher
        self.source = source
        self.ledger = ledger
        self.free_slot = free_slot
        self.clock = clock

    def publish(self, state: TrackerState) -> PublishResult:
        event = outcome_event(state, source=self.source, now=self.clock())
        message_id = self.publisher.publish(event)
        count_job(OUTCOME_METRICS[str(event.data.status)], event.data.provider)
        if event.data.duration_seconds is not None:
            record_metric(
                "RequestToOutcome",
                event.data.duration_seconds,
                MetricUnit.Seconds,
                provider=event.data.provider,
            )
        if self.ledger is not None:
            self.ledger.record_outcome(
                state.job.request_id, event_type=event.type, event_id=event.id
            )
        if state.job.holds_slot and self.free_slot is not None:
            self.free_slot(state.job.connection_name, state.job.request_id)
        logger.info("outcome published", event_id=event.id, event_type=event.type)
        return PublishResult(
            event_id=event.id,
            event_type=event.type,
            status=str(event.data.status),
            message_id=message_id,
        )
