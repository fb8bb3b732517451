"""PollJobStatus: the tracker's provider task. `action: poll` does one GET and decides the
next wait; `action: cancel` runs at the deadline and stops the job where the provider can.

Transient provider errors are raised as `ProviderUnavailable`, which the state machine
retries with backoff (see `statemachine/job_tracker.asl.json`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from jobrelay.models import TrackerState
from jobrelay.observability import logger, tracer
from jobrelay.wiring import job_poller, provider_pool


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = TrackerState.model_validate(event)
    logger.append_keys(
        request_id=state.job.request_id,
        provider=state.job.provider,
        remote_job_id=state.job.remote_job_id,
    )
    with provider_pool() as pool:
        poller = job_poller(pool)
        result = poller.cancel(state) if state.action == "cancel" else poller.poll(state)
    return result.model_dump(mode="json", exclude={"action", "error"})
