"""CreateJob: an SQS batch in, one remote job and one tracker execution per request out.

Records are processed concurrently and each is reported on its own: a record that failed
transiently comes back in `batchItemFailures` and only it is delivered again
(`jobrelay.intake`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# boto3 first, at the handler's own level (see functions/poll_job_status/app.py).
import boto3  # noqa: F401

# Powertools' batch utility before anything imports pydantic: its types module, imported
# with pydantic already loaded, imports the parser's event models for its type hints
# (`aws_lambda_powertools.utilities.batch.types`: 114 M instructions of the cold start);
# records come as the `SQSRecord` data class here and never need them.
import aws_lambda_powertools.utilities.batch  # noqa: F401  # isort: skip
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.wiring import create_job_service

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # Each record appends its own message and request ids on its worker thread.
    return create_job_service().handle_batch(event, context)
