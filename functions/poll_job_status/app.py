"""PollJobStatus: the tracker's provider task. `poll` does one GET and decides the next wait
(the adaptive poll policy) and whether the tracker continues as a new execution; `continue`
starts that execution; `outage` counts a round whose poll failed through every retry;
`cancel` runs at the deadline and stops the job where the provider can.

Transient provider errors are raised as `ProviderUnavailable`, which the state machine
retries with backoff (see `statemachine/job_tracker.asl.json`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# boto3 first, at the handler's own level: imported from inside jobrelay's nested imports,
# a few frames deeper, CPython (3.11, 3.12) mapped and unmapped a 16 KB frame-stack chunk
# 1,200 times as boto3's import crossed one, ~20 ms of every cold start on a VM
# (docs/performance.md, "Cold start against the floor").
import boto3  # noqa: F401
from jobrelay.models import TrackerState
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.wiring import poll_job_status_service

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = TrackerState.model_validate(event)
    job = state.job
    logger.append_keys(
        request_id=job.request_id,
        provider=job.provider,
        connection=job.connection_name,
        remote_job_id=job.remote_job_id,
        generation=job.generation,
    )
    service = poll_job_status_service()
    match state.action:
        case "continue":
            return service.continue_tracking(state, str(event["state_machine_arn"]))
        case "cancel":
            return service.cancel(state)
        case "outage":
            return service.outage(state)
        case _:
            return service.poll(state)
