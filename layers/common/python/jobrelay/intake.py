"""CreateJob's SQS batch: records processed concurrently, each created once (the job
ledger's lease and record, `JobCreator`), transient failures reported as batch item failures.

Records run at once (Powertools `AsyncBatchProcessor`, each record's blocking work on a
worker thread of its own), so a batch takes about as long as its slowest provider call, and
only a record that failed is delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from jobrelay.creation import JobCreator, QueueMessage
from jobrelay.errors import RequestInProgress, RequestWaiting
from jobrelay.observability import logger
from jobrelay.providers.pool import ProviderPool

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from jobrelay.settings import CreateJobSettings

# As many workers as the provider pool has connections; more records queue briefly.
# asyncio's default pool has only cpu + 4 threads, and the records' work is network waits.
MAX_WORKERS = 32
# A batch whose every record failed is reported record by record, not raised: Lambda then
# retries exactly those records, and a transient provider outage does not count as a
# function error. Records come as Powertools' `SQSRecord` data class, not the parser's
# pydantic model: the body is validated by jobrelay's own models, and the parser package
# costs ~0.2 s of import.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class CreateJobService:
    """A ready CreateJob: its settings and the creator's ports. A plain class, not a
    dataclass: making one compiles its methods at import (cold start)."""

    def __init__(
        self, settings: CreateJobSettings, creator_for: Callable[[ProviderPool], JobCreator]
    ) -> None:
        self.settings = settings
        self.creator_for = creator_for

    def handle_batch(
        self, event: dict[str, Any], context: LambdaContext
    ) -> PartialItemFailureResponse:
        # A record's lease on its request lasts this invocation at most.
        lease_seconds = max(1.0, context.get_remaining_time_in_millis() / 1000)
        workers = max(1, min(MAX_WORKERS, len(event.get("Records", []))))
        with (
            ProviderPool(self.settings) as pool,
            ThreadPoolExecutor(workers, "create-job") as executor,
        ):
            creator = self.creator_for(pool)

            async def record_handler(record: SQSRecord) -> dict[str, Any]:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    executor, self._process, creator, record, lease_seconds
                )

            return async_process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )

    def _process(
        self, creator: JobCreator, record: SQSRecord, lease_seconds: float
    ) -> dict[str, Any]:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(message_id=record.message_id)
        message = QueueMessage.from_record(
            record.message_id, record.body, sender=record.attributes.sender_id
        )
        logger.thread_safe_append_keys(request_id=message.request_key)
        try:
            result = creator.handle(message, lease_seconds=lease_seconds)
        except RequestInProgress as exc:
            logger.info("record will be retried: another delivery holds it", error=str(exc))
            raise
        except RequestWaiting as exc:
            # Queued for its connection, or sent back for later: this message is done with.
            logger.info("request waits", connection=exc.connection, waiting_for=exc.waiting_for)
            return {"outcome": "waiting", "request_id": message.request_key}
        except Exception as exc:
            logger.warning(
                "record will be retried", error_type=type(exc).__name__, error=str(exc)[:500]
            )
            raise
        logger.info("record handled", outcome=result.outcome)
        return result._asdict()
