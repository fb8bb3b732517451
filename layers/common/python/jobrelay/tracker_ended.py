"""TrackerEnded: a tracker execution that was stopped (a cancel, an operator's
`StopExecution`), failed or timed out before publishing still ends its request in exactly one
outcome: `cancelled` for a stop (after stopping the job where the provider can), `failed`
otherwise. Fed by an EventBridge rule on Step Functions' execution status changes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from jobrelay.models import LazyModel, TrackerState
from jobrelay.observability import logger
from jobrelay.polling import JobPoller
from jobrelay.ports import CancelRecord, JobLedger, TrackerControl
from jobrelay.providers.base import Provider
from jobrelay.providers.pool import ProviderPool
from jobrelay.settings import TrackerEndedSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


# The statuses the rule delivers; a generation that continued as new ends SUCCEEDED.
ENDED_WITHOUT_OUTCOME = frozenset({"ABORTED", "FAILED", "TIMED_OUT"})


class ExecutionStatusChange(LazyModel):
    """The `detail` of a "Step Functions Execution Status Change" event (the fields used)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: str
    input: str | None = None
    error: str | None = None
    cause: str | None = None


@dataclass
class TrackerEndedService:
    settings: TrackerEndedSettings
    ledger: JobLedger
    trackers_for: Callable[[str], TrackerControl]
    # PublishOutcome's idempotent publish: one outcome per request, whoever publishes.
    publish: Callable[[TrackerState, LambdaContext], dict[str, Any]]
    # One invocation's adapters (a pool of one HTTP client); tests give scripted ones.
    providers: Callable[
        [TrackerEndedSettings], AbstractContextManager[Callable[[str], Provider]]
    ] = ProviderPool
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        change = ExecutionStatusChange.model_validate(event["detail"])
        if change.status not in ENDED_WITHOUT_OUTCOME:
            return {"handled": "ignored", "status": change.status}
        trackers = self.trackers_for(change.state_machine_arn)
        # The event carries the input unless it is too large (then `inputDetails` says so).
        state = TrackerState.model_validate_json(
            change.input or trackers.input_of(change.execution_arn)
        )
        request_id = state.job.request_id
        logger.append_keys(
            request_id=request_id, provider=state.job.provider, connection=state.job.connection_name
        )
        entry = self.ledger.entry(request_id)
        if entry is not None and entry.outcome_type is not None:
            logger.info("tracker ended after its outcome", outcome=entry.outcome_type)
            return {"handled": "already_published", "status": change.status}
        cancel = self.ledger.cancel_of(request_id)
        if change.status == "ABORTED" and cancel is None:
            # An operator's stop: kept as the request's cancel, so a generation it started
            # while being stopped (continue-as-new) ends on its first poll too.
            cancel, _ = self.ledger.record_cancel(self._operator_stop(request_id, change))
        current = trackers.current(request_id)
        if current and current.arn != change.execution_arn and current.status == "RUNNING":
            # Stopped while continuing as new: the next generation carries the job; stopped
            # too, its own end publishes.
            if change.status == "ABORTED":
                trackers.stop(current.arn, error="jobrelay.Cancelled", cause="tracker stopped")
            return {"handled": "continued", "status": change.status}
        with self.providers(self.settings) as pool:
            poller = JobPoller(provider_for=pool)
            if change.status == "ABORTED":
                assert cancel is not None
                ended = poller.cancelled(state, cancel)
            else:
                ended = poller.tracker_failed(
                    state, status=change.status, cause=change.cause or change.error or ""
                )
        ended = ended.model_copy(update={"execution_arn": change.execution_arn})
        result = self.publish(ended, context)
        return {"handled": "published", "status": change.status, **result}

    def _operator_stop(self, request_id: str, change: ExecutionStatusChange) -> CancelRecord:
        said = ": ".join(part for part in (change.error, change.cause) if part)
        return CancelRecord(
            request_id=request_id,
            reason=said or "the tracker execution was stopped",
            requested_by="operator (StopExecution)",
            requested_at=self.clock(),
        )
