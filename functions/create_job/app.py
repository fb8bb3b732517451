"""CreateJob: an SQS batch in, one remote job and one tracker execution per request out.

Records are processed concurrently (Powertools `AsyncBatchProcessor`, each record's blocking
work on a worker thread), so a batch takes about as long as its slowest provider call. A
record that fails transiently is reported in `batchItemFailures` and only it is retried.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from jobrelay.creation import QueueMessage
from jobrelay.observability import capture_lambda_handler, logger
from jobrelay.wiring import ProviderPool, create_job_service, provider_pool

# A batch whose every record failed is reported record by record, not raised: Lambda then
# retries exactly those records, and a transient provider outage does not count as a
# function error.
MAX_WORKERS = 32  # as many as the provider pool has connections; more records queue briefly
# Records come as Powertools' `SQSRecord` data class, not the parser's pydantic model: the
# body is validated by jobrelay's own models, and the parser package costs ~0.2 s of import.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _process(pool: ProviderPool, record: SQSRecord) -> dict[str, Any]:
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(message_id=record.message_id)
    message = QueueMessage.from_record(record.message_id, record.body)
    logger.thread_safe_append_keys(request_id=message.request_key)
    service = create_job_service()
    try:
        result = service.create_once(service.creator(pool), message=message)
    except Exception as exc:
        logger.warning(
            "record will be retried", error_type=type(exc).__name__, error=str(exc)[:500]
        )
        raise
    logger.info("record handled", outcome=result.outcome)
    return result.model_dump(mode="json")


@logger.inject_lambda_context
@capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    create_job_service().config.register_lambda_context(context)
    # One worker per record (asyncio's default pool has only cpu + 4 threads): the records'
    # work is network waits, so a batch takes about as long as its slowest record.
    workers = max(1, min(MAX_WORKERS, len(event.get("Records", []))))
    with provider_pool() as pool, ThreadPoolExecutor(workers, "create-job") as executor:

        async def record_handler(record: SQSRecord) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, _process, pool, record)

        return async_process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
