"""PublishOutcome's decision: the tracker's final document becomes one published event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from jobrelay.events import outcome_event
from jobrelay.models import TrackerState
from jobrelay.observability import logger
from jobrelay.ports import OutcomePublisher


class PublishResult(BaseModel):
    event_id: str
    event_type: str
    status: str
    message_id: str


@dataclass
class OutcomeReporter:
    publisher: OutcomePublisher
    source: str
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def publish(self, state: TrackerState) -> PublishResult:
        event = outcome_event(state, source=self.source, now=self.clock())
        message_id = self.publisher.publish(event)
        logger.info("outcome published", event_id=event.id, event_type=event.type)
        return PublishResult(
            event_id=event.id,
            event_type=event.type,
            status=str(event.data.status),
            message_id=message_id,
        )
