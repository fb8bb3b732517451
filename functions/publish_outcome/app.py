"""PublishOutcome: the tracker's final document in, exactly one outcome event out to SNS.

Idempotent per request (Powertools idempotency keyed on the request id), so a task retried by
the state machine after a publish that succeeded does not publish again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# boto3 first, at the handler's own level: imported from inside jobrelay's nested imports,
# a few frames deeper, CPython (3.11, 3.12) mapped and unmapped a 16 KB frame-stack chunk
# 1,200 times as boto3's import crossed one, ~20 ms of every cold start on a VM
# (docs/performance.md, "Cold start against the floor").
import boto3  # noqa: F401
from jobrelay.models import OutcomeTask
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.wiring import publish_outcome_service

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = OutcomeTask.model_validate(event).state()
    logger.append_keys(request_id=state.job.request_id, provider=state.job.provider)
    return publish_outcome_service().publish(state, context)
