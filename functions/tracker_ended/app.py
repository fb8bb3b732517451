"""TrackerEnded: Step Functions' status change of a tracker execution that was stopped,
failed or timed out in, the request's one outcome out (unless it had one already).

Delivered by an EventBridge rule (asynchronous invoke): a failure is retried by Lambda and
the rule, then kept in the rule's dead-letter queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# boto3 first, at the handler's own level: imported from inside jobrelay's nested imports,
# a few frames deeper, CPython (3.11, 3.12) mapped and unmapped a 16 KB frame-stack chunk
# 1,200 times as boto3's import crossed one, ~20 ms of every cold start on a VM
# (docs/performance.md, "Cold start against the floor").
import boto3  # noqa: F401
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.wiring import tracker_ended_service

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail", {})
    logger.append_keys(execution_arn=detail.get("executionArn"), status=detail.get("status"))
    return tracker_ended_service().handle(event, context)
