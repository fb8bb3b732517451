"""Cached factories that hand each handler a ready service: settings read, ports and adapters
wired, idempotency applied.

Built on a handler's first call (settings come from the environment then), cached for the
life of the Lambda execution environment, and reset by `reset()` in tests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobrelay import aws, secrets, settings

# Each handler imports what only it needs on its first call (cold start): PollJobStatus
# never loads idempotency, creation or outcome code.
if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from jobrelay.admission import Gate
    from jobrelay.creation import JobCreator
    from jobrelay.intake import CreateJobService
    from jobrelay.models import TrackerState
    from jobrelay.outcome import OutcomeReporter, PublishResult
    from jobrelay.polling import PollService
    from jobrelay.providers.pool import ProviderPool
    from jobrelay.tracker_ended import TrackerEndedService


# The idempotency key of a request's outcome: `jobrelay.outcome#<hash of the request id>`.
OUTCOME_KEY_PREFIX = "jobrelay.outcome"


def _publish(reporter: OutcomeReporter, *, state: TrackerState) -> PublishResult:
    return reporter.publish(state)


def _idempotency(
    key_path: str, table: str, ttl_seconds: int
) -> tuple[IdempotencyConfig, DynamoDBPersistenceLayer]:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )

    config = IdempotencyConfig(
        event_key_jmespath=key_path,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
    )
    # The job ledger's DynamoDB client, not one of its own session (one fewer cold client).
    persistence = DynamoDBPersistenceLayer(
        table_name=table, boto3_client=aws.aws_client("dynamodb")
    )
    return config, persistence


def _has_limits(current: settings.CreateJobSettings | settings.PublishOutcomeSettings) -> bool:
    """Whether the function has connection limits: the limits table and the queue."""
    return bool(current.limits_table and current.jobs_queue_url)


def _gate(current: settings.CreateJobSettings | settings.PublishOutcomeSettings) -> Gate | None:
    """Connection limits, where the function has them (`_has_limits`)."""
    if not _has_limits(current):
        return None
    from jobrelay import aws_limits
    from jobrelay.admission import Gate

    return Gate(
        slots=aws_limits.get_slots(current.limits_table),
        queue=aws_limits.get_request_queue(current.jobs_queue_url),
        ledger=aws.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds),
    )


def _slot_freer(current: settings.PublishOutcomeSettings) -> Callable[[str, str], None] | None:
    """Frees a published job's slot through the limits gate, made with the first slot it
    frees: an outcome whose job held none (a connection without `max_in_flight`) never
    loads the limits code (cold start)."""
    if not _has_limits(current):
        return None
    made: list[Gate] = []

    def free(connection: str, request_id: str) -> None:
        if not made:
            gate = _gate(current)
            assert gate is not None  # it has limits (checked above)
            made.append(gate)
        made[0].free(connection, request_id)

    return free


@lru_cache(maxsize=1)
def create_job_service() -> CreateJobService:
    """CreateJob, once per request: the job ledger is its idempotency record (a delivery
    takes the request's lease and reads what earlier ones did in one write)."""
    from jobrelay.creation import JobCreator
    from jobrelay.intake import CreateJobService

    current = settings.get_settings(settings.CreateJobSettings)
    gate = _gate(current)
    requeue = None
    if current.jobs_queue_url:
        from jobrelay import aws_limits

        requeue = aws_limits.get_request_queue(current.jobs_queue_url)

    def creator_for(pool: ProviderPool) -> JobCreator:
        return JobCreator(
            settings=current,
            provider_for=pool,
            publisher=aws.get_publisher(current.events_topic_arn),
            starter=aws.get_tracker_starter(current.state_machine_arn),
            dead_letters=aws.get_dead_letter_queue(current.dlq_url),
            ledger=aws.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds),
            trackers=aws.get_tracker_starter(current.state_machine_arn),
            connection_of=pool.connection,
            gate=gate,
            requeue=requeue,
        )

    return CreateJobService(settings=current, creator_for=creator_for)


class PublishOutcomeService:
    """A ready PublishOutcome: one event per request, however often the task is retried. A
    plain class, not a dataclass: making one compiles its methods at import (cold start)."""

    def __init__(
        self,
        config: IdempotencyConfig,
        publish_once: Callable[..., PublishResult],
        reporter: OutcomeReporter,
    ) -> None:
        self.config = config
        self.publish_once = publish_once
        self.reporter = reporter

    def publish(self, state: TrackerState, context: LambdaContext) -> dict[str, Any]:
        self.config.register_lambda_context(context)
        return self.publish_once(self.reporter, state=state).model_dump(mode="json")


@lru_cache(maxsize=1)
def publish_outcome_service() -> PublishOutcomeService:
    """PublishOutcome, idempotent per request: a retried task does not publish twice."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (
        PydanticSerializer,
    )

    from jobrelay.outcome import OutcomeReporter, PublishResult

    current = settings.get_settings(settings.PublishOutcomeSettings)
    config, persistence = _idempotency(
        "job.request_id", current.idempotency_table, current.idempotency_ttl_seconds
    )
    publish_once = idempotent_function(
        data_keyword_argument="state",
        config=config,
        persistence_store=persistence,
        output_serializer=PydanticSerializer(model=PublishResult),
        # One record per request whichever function publishes (PublishOutcome, or
        # TrackerEnded for a tracker that stopped first): without a prefix of its own the
        # key would carry each function's name, and both could publish.
        key_prefix=OUTCOME_KEY_PREFIX,
    )(_publish)
    reporter = OutcomeReporter(
        publisher=aws.get_publisher(current.events_topic_arn),
        source=current.event_source,
        ledger=aws.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds),
        free_slot=_slot_freer(current),
    )
    return PublishOutcomeService(config=config, publish_once=publish_once, reporter=reporter)


@lru_cache(maxsize=1)
def poll_job_status_service() -> PollService:
    """PollJobStatus: the configured poll policy and round budget, providers per invocation,
    and continue-as-new through the tracker-starter port."""
    from jobrelay.polling import PollService, default_policy

    current = settings.get_settings(settings.PollJobStatusSettings)
    ledger = aws.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds)
    return PollService(
        settings=current,
        policy=default_policy(current),
        starter_for=aws.get_tracker_starter,
        cancel_of=ledger.cancel_of,
    )


@lru_cache(maxsize=1)
def tracker_ended_service() -> TrackerEndedService:
    """TrackerEnded: a stopped, failed or timed-out tracker's request ends in its outcome,
    published through PublishOutcome's idempotency (never a second event)."""
    from jobrelay.tracker_ended import TrackerEndedService

    current = settings.get_settings(settings.TrackerEndedSettings)
    return TrackerEndedService(
        settings=current,
        ledger=aws.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds),
        trackers_for=aws.get_tracker_starter,
        publish=publish_outcome_service().publish,
    )


def reset() -> None:
    """Forget every cached setting, client and service (tests, local stack restarts)."""
    settings.forget_settings()
    create_job_service.cache_clear()
    publish_outcome_service.cache_clear()
    poll_job_status_service.cache_clear()
    tracker_ended_service.cache_clear()
    secrets.secrets_provider.cache_clear()
    aws.forget()
    from jobrelay.providers.pool import forget_directories

    forget_directories()
