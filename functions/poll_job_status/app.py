"""PollJobStatus: the tracker's provider task. `action: poll` does one GET and decides the
next wait (the adaptive poll policy) and whether the tracker continues as a new execution;
`action: continue` starts that execution; `action: outage` counts a round whose poll failed
through every retry; `action: cancel` runs at the deadline and stops the job where the
provider can.

Transient provider errors are raised as `ProviderUnavailable`, which the state machine
retries with backoff (see `statemachine/job_tracker.asl.json`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jobrelay.models import TrackerState
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.polling import default_policy
from jobrelay.ports import get_tracker_starter
from jobrelay.wiring import job_poller, provider_pool

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = TrackerState.model_validate(event)
    logger.append_keys(
        request_id=state.job.request_id,
        provider=state.job.provider,
        remote_job_id=state.job.remote_job_id,
        generation=state.job.generation,
    )
    with provider_pool() as pool:
        poller = replace(
            job_poller(pool),
            policy=default_policy(pool.settings),
            rounds_per_execution=pool.settings.rounds_per_execution,
        )
        if state.action == "continue":
            # The state machine passes its own ARN ($$.StateMachine.Id): the function's
            # environment cannot name it without a circular reference in the template.
            starter = get_tracker_starter(str(event["state_machine_arn"]))
            return poller.continue_tracking(state, starter)
        if state.action == "cancel":
            result = poller.cancel(state)
        elif state.action == "outage":
            result = poller.outage(state)
        else:
            result = poller.poll(state)
    return result.model_dump(mode="json", exclude={"action", "error"})
