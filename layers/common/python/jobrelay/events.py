"""Building outcome events: pure functions from what happened to a CloudEvents 1.0 event.

The event `id` is a UUIDv5 of the request id and the event type, so a retried publish of the
same outcome carries the same id and consumers can deduplicate on it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from jobrelay.errors import FieldProblem
from jobrelay.models import (
    ErrorInfo,
    EventType,
    JobStatus,
    MetadataValue,
    OutcomeData,
    OutcomeEvent,
    TrackerState,
)
from jobrelay.ports import CancelRecord

EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c1e-8a53-4f36-9b7e-3c1f8a0f2a11")

EVENT_TYPES: dict[JobStatus, EventType] = {
    JobStatus.SUCCEEDED: "jobrelay.job.succeeded",
    JobStatus.FAILED: "jobrelay.job.failed",
    JobStatus.CANCELLED: "jobrelay.job.cancelled",
    JobStatus.TIMED_OUT: "jobrelay.job.timed_out",
    JobStatus.REJECTED: "jobrelay.job.rejected",
}


def event_id(request_id: str, event_type: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{request_id}/{event_type}"))


def _event(
    *,
    source: str,
    event_type: EventType,
    provider: str,
    subject_id: str,
    data: OutcomeData,
) -> OutcomeEvent:
    return OutcomeEvent(
        id=event_id(data.request_id, event_type),
        source=source,
        type=event_type,
        subject=f"{provider}/{subject_id}",
        time=data.finished_at,
        data=data,
    )


def rejected_event(
    *,
    source: str,
    request_id: str,
    provider: str | None,
    code: str,
    message: str,
    problems: list[FieldProblem],
    metadata: dict[str, MetadataValue] | None = None,
    details: dict[str, Any] | None = None,
    connection: str | None = None,
    now: datetime | None = None,
) -> OutcomeEvent:
    """A request refused before any job existed: by our validation or by the provider."""
    finished = now or datetime.now(UTC)
    data = OutcomeData(
        request_id=request_id,
        provider=provider or "unknown",
        connection=connection,
        status=JobStatus.REJECTED,
        finished_at=finished,
        error=ErrorInfo(
            code=code,
            message=message,
            retryable=False,
            problems=[p.as_dict() for p in problems],
        ),
        details=details or {},
        metadata=metadata or {},
    )
    return _event(
        source=source,
        event_type="jobrelay.job.rejected",
        provider=provider or "unknown",
        subject_id=f"request/{request_id}",
        data=data,
    )


def validated_event(
    *,
    source: str,
    request_id: str,
    provider: str,
    details: dict[str, Any],
    metadata: dict[str, MetadataValue],
    connection: str | None = None,
    now: datetime | None = None,
) -> OutcomeEvent:
    """A dry run the provider accepted: nothing was created."""
    data = OutcomeData(
        request_id=request_id,
        provider=provider,
        connection=connection,
        status="VALIDATED",
        finished_at=now or datetime.now(UTC),
        details=details,
        metadata=metadata,
    )
    return _event(
        source=source,
        event_type="jobrelay.job.validated",
        provider=provider,
        subject_id=f"request/{request_id}",
        data=data,
    )


def cancel_details(cancel: CancelRecord) -> dict[str, Any]:
    """Who asked to cancel, why and when, as the outcome event carries it."""
    return {
        "requested_by": cancel.requested_by,
        "reason": cancel.reason,
        "requested_at": cancel.requested_at.isoformat(),
    }


def console_link(execution_arn: str) -> str:
    """The AWS console page of a tracker execution (its history: every poll and wait)."""
    region = execution_arn.split(":")[3]
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{execution_arn}"
    )


def cancelled_event(
    *,
    source: str,
    request_id: str,
    provider: str,
    cancel: dict[str, Any],
    metadata: dict[str, MetadataValue],
    connection: str | None = None,
    now: datetime | None = None,
) -> OutcomeEvent:
    """A request cancelled before any job was created for it: none ever will be."""
    data = OutcomeData(
        request_id=request_id,
        provider=provider,
        connection=connection,
        status=JobStatus.CANCELLED,
        finished_at=now or datetime.now(UTC),
        error=ErrorInfo(
            code="CANCELLED",
            message=f"cancelled by {cancel['requested_by']} before a job was created"
            + (f": {cancel['reason']}" if cancel.get("reason") else ""),
        ),
        details={"cancel": cancel, "cancelled_remotely": False, "job_created": False},
        metadata=metadata,
    )
    return _event(
        source=source,
        event_type="jobrelay.job.cancelled",
        provider=provider,
        subject_id=f"request/{request_id}",
        data=data,
    )


def waited_out_event(
    *,
    source: str,
    request_id: str,
    provider: str,
    connection: str,
    deadline_at: datetime,
    waited_for: str,
    metadata: dict[str, MetadataValue],
    now: datetime | None = None,
) -> OutcomeEvent:
    """A request that was still waiting for its connection (a free slot, or the creation
    rate) at its deadline: it ends `timed_out`, and no job was ever created."""
    data = OutcomeData(
        request_id=request_id,
        provider=provider,
        connection=connection,
        status=JobStatus.TIMED_OUT,
        finished_at=now or datetime.now(UTC),
        error=ErrorInfo(
            code="DEADLINE_EXCEEDED",
            message=f"still waiting for connection {connection!r} ({waited_for}) at its "
            f"deadline {deadline_at.isoformat()}; no job was created",
        ),
        details={"job_created": False, "waited_for": waited_for},
        metadata=metadata,
    )
    return _event(
        source=source,
        event_type="jobrelay.job.timed_out",
        provider=provider,
        subject_id=f"request/{request_id}",
        data=data,
    )


def tracking_error(error: dict[str, Any]) -> ErrorInfo:
    """A Step Functions Catch result (`{"Error", "Cause"}`) as the event's error."""
    name = str(error.get("Error") or "States.TaskFailed")
    cause = str(error.get("Cause") or "")
    message = cause
    # A Lambda error's Cause is the function's JSON error payload; its message is the point.
    if cause.startswith("{"):
        with contextlib.suppress(ValueError):
            message = str(json.loads(cause).get("errorMessage") or cause)
    return ErrorInfo(code=name, message=message[:1000] or name, retryable=False)


def outcome_event(state: TrackerState, *, source: str, now: datetime | None = None) -> OutcomeEvent:
    """The one terminal event of a tracked job, from the tracker's final document."""
    job, poll = state.job, state.poll
    finished = now or datetime.now(UTC)
    status = poll.status
    error = poll.error
    details = dict(poll.details)
    if state.error is not None:
        if poll.deadline_passed:
            # The cancel task failed: the deadline still passed, the job may still run remotely.
            status = JobStatus.TIMED_OUT
            details["cancelled_remotely"] = False
            details["cancel_error"] = tracking_error(state.error).model_dump()
        else:
            status = JobStatus.FAILED
            error = tracking_error(state.error)
            details["tracking_failed"] = True
    elif not status.terminal:
        # Only reachable if the definition routes a non-terminal state here; say so plainly.
        status = JobStatus.FAILED
        error = ErrorInfo(code="TRACKING_INCOMPLETE", message="tracking ended before the job")
    if status is JobStatus.TIMED_OUT and error is None:
        error = ErrorInfo(
            code="DEADLINE_EXCEEDED",
            message=f"the job did not finish by its deadline {job.deadline_at.isoformat()}",
            retryable=False,
        )
    if poll.cancelled_remotely is not None:
        details.setdefault("cancelled_remotely", poll.cancelled_remotely)
    if poll.progress is not None:
        details.setdefault("progress", poll.progress)
    details.setdefault("polls", poll.polls)
    data = OutcomeData(
        request_id=job.request_id,
        provider=job.provider,
        connection=job.connection_name,
        remote_job_id=job.remote_job_id,
        status=status,
        raw_status=poll.raw_status,
        created_at=job.created_at,
        finished_at=finished,
        duration_seconds=round((finished - job.created_at).total_seconds(), 3),
        error=error,
        details=details,
        metadata=job.metadata,
        links={"execution": console_link(state.execution_arn)} if state.execution_arn else {},
    )
    return _event(
        source=source,
        event_type=EVENT_TYPES[status],
        provider=job.provider,
        subject_id=job.remote_job_id,
        data=data,
    )


def message_attributes(event: OutcomeEvent) -> dict[str, dict[str, str]]:
    """SNS message attributes subscribers filter on (`connection` once it is known: a
    request rejected before its connection was read has none)."""
    attributes = {
        "event_type": {"DataType": "String", "StringValue": event.type},
        "provider": {"DataType": "String", "StringValue": event.data.provider},
        "status": {"DataType": "String", "StringValue": str(event.data.status)},
    }
    if event.data.connection:
        attributes["connection"] = {"DataType": "String", "StringValue": event.data.connection}
    return attributes
