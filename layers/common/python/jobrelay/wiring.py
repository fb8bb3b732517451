"""Cached factories that wire settings, ports and adapters for the three handlers.

Built on a handler's first call (settings come from the environment then), cached for the
life of the Lambda execution environment, and reset by `reset()` in tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobrelay import ports, secrets, settings
from jobrelay.providers import Provider, build_provider, http_client

# Each handler imports what only it needs on its first call (cold start): PollJobStatus
# never loads idempotency, creation or outcome code.
if TYPE_CHECKING:
    import httpx
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )

    from jobrelay.creation import CreateResult, JobCreator, QueueMessage
    from jobrelay.models import ProviderName, TrackerState
    from jobrelay.outcome import OutcomeReporter, PublishResult
    from jobrelay.polling import JobPoller

# What each handler needs from its environment (checked on its first call, and against the
# template's per-function environment by the tests).
REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {
    "CreateJobFunction": (
        "events_topic_arn",
        "state_machine_arn",
        "idempotency_table",
        "dlq_url",
        "providers",
    ),
    "PollJobStatusFunction": ("providers",),
    "PublishOutcomeFunction": ("events_topic_arn", "idempotency_table"),
}


class ProviderPool:
    """One HTTP client (one connection pool) and one adapter per provider, per invocation."""

    def __init__(self, config: settings.Settings, client: httpx.Client | None = None) -> None:
        self.settings = config
        self.client = client or http_client(config)
        self._lock = threading.Lock()
        self._providers: dict[ProviderName, Provider] = {}

    def __call__(self, name: ProviderName) -> Provider:
        with self._lock:
            if name not in self._providers:
                self._providers[name] = build_provider(name, self.settings, self.client)
            return self._providers[name]

    def close(self) -> None:
        self.client.close()


# Tests swap this for a factory that injects an httpx transport of their own.
provider_pool_factory: Callable[[settings.Settings], ProviderPool] = ProviderPool


@contextmanager
def provider_pool() -> Iterator[ProviderPool]:
    pool = provider_pool_factory(settings.get_settings())
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class CreateJobService:
    config: IdempotencyConfig
    create_once: Callable[..., CreateResult]

    def creator(self, pool: ProviderPool) -> JobCreator:
        from jobrelay.creation import JobCreator

        current = settings.get_settings()
        return JobCreator(
            settings=current,
            provider_for=pool,
            publisher=ports.get_publisher(current.events_topic_arn),
            starter=ports.get_tracker_starter(current.state_machine_arn),
            dead_letters=ports.get_dead_letter_queue(current.dlq_url),
            ledger=ports.get_ledger(current.idempotency_table, current.idempotency_ttl_seconds),
        )


def _create(creator: JobCreator, *, message: QueueMessage) -> CreateResult:
    return creator.handle(message)


def _publish(reporter: OutcomeReporter, *, state: TrackerState) -> PublishResult:
    return reporter.publish(state)


def _idempotency(key_path: str) -> tuple[IdempotencyConfig, DynamoDBPersistenceLayer]:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )

    current = settings.get_settings()
    config = IdempotencyConfig(
        event_key_jmespath=key_path,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=current.idempotency_ttl_seconds,
    )
    # The job ledger's DynamoDB client, not one of its own session (one fewer cold client).
    persistence = DynamoDBPersistenceLayer(
        table_name=current.idempotency_table, boto3_client=ports.aws_client("dynamodb")
    )
    return config, persistence


@lru_cache(maxsize=1)
def create_job_service() -> CreateJobService:
    """CreateJob, idempotent per request: a duplicate delivery returns the first result."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (
        PydanticSerializer,
    )

    from jobrelay.creation import CreateResult

    settings.get_settings().require(*REQUIRED_SETTINGS["CreateJobFunction"])
    config, persistence = _idempotency("request_key")
    create_once = idempotent_function(
        data_keyword_argument="message",
        config=config,
        persistence_store=persistence,
        output_serializer=PydanticSerializer(model=CreateResult),
    )(_create)
    return CreateJobService(config=config, create_once=create_once)


@dataclass
class PublishOutcomeService:
    config: IdempotencyConfig
    publish_once: Callable[..., PublishResult]

    def reporter(self) -> OutcomeReporter:
        from jobrelay.outcome import OutcomeReporter

        current = settings.get_settings()
        return OutcomeReporter(
            publisher=ports.get_publisher(current.events_topic_arn), source=current.event_source
        )


@lru_cache(maxsize=1)
def publish_outcome_service() -> PublishOutcomeService:
    """PublishOutcome, idempotent per request: a retried task does not publish twice."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (
        PydanticSerializer,
    )

    from jobrelay.outcome import PublishResult

    settings.get_settings().require(*REQUIRED_SETTINGS["PublishOutcomeFunction"])
    config, persistence = _idempotency("job.request_id")
    publish_once = idempotent_function(
        data_keyword_argument="state",
        config=config,
        persistence_store=persistence,
        output_serializer=PydanticSerializer(model=PublishResult),
    )(_publish)
    return PublishOutcomeService(config=config, publish_once=publish_once)


def job_poller(pool: ProviderPool) -> JobPoller:
    from jobrelay.polling import JobPoller

    pool.settings.require(*REQUIRED_SETTINGS["PollJobStatusFunction"])
    return JobPoller(provider_for=pool)


def reset() -> None:
    """Forget every cached setting, client and service (tests, local stack restarts)."""
    global provider_pool_factory
    provider_pool_factory = ProviderPool
    settings.get_settings.cache_clear()
    create_job_service.cache_clear()
    publish_outcome_service.cache_clear()
    secrets.secrets_provider.cache_clear()
    ports.forget_clients()
    for factory in (
        ports.get_publisher,
        ports.get_tracker_starter,
        ports.get_dead_letter_queue,
        ports.get_ledger,
    ):
        factory.cache_clear()


__all__: list[Any] = [
    "CreateJobService",
    "ProviderPool",
    "create_job_service",
    "job_poller",
    "provider_pool",
    "publish_outcome_service",
    "reset",
]
