"""The AWS side of the ports (`jobrelay.ports`): SNS publisher, Step Functions tracker starter,
SQS dead-letter queue and the DynamoDB job ledger, and the process's shared boto3 clients.
The only module of the layer that imports boto3 or botocore.

Each is built by a cached factory; tests use the fakes of `tests/fakes.py` instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from jobrelay.errors import JobClaimed
from jobrelay.events import message_attributes
from jobrelay.models import MAX_GENERATION, OutcomeEvent, TrackerState, execution_name
from jobrelay.ports import CancelRecord, LedgerEntry, TrackerExecution

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

# SDK retries in standard mode: throttling and 5xx are retried with backoff by botocore.
_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=20)

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def aws_client(service: str) -> Any:
    """One client per service per process, from boto3's default session.

    Every port, the idempotency store and the secrets provider share these: a client built
    from a session of its own reloads the endpoint rules and the service model (tens of ms of
    cold start each). Built under a lock, because CreateJob's worker threads ask at once and
    a boto3 session is not thread-safe.
    """
    client = _clients.get(service)
    if client is None:
        with _clients_lock:
            client = _clients.get(service)
            if client is None:
                client = _clients[service] = boto3.client(service, config=_BOTO_CONFIG)  # type: ignore[call-overload]
    return client


def forget_clients() -> None:
    """Drop the shared clients (tests and local stack restarts change endpoints and mocks)."""
    with _clients_lock:
        _clients.clear()


class SnsOutcomePublisher:
    """Publishes outcome events to the JobEvents topic with filterable attributes."""

    def __init__(self, topic_arn: str, client: SNSClient | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    @property
    def client(self) -> SNSClient:
        if self._client is None:
            self._client = aws_client("sns")
        return self._client

    def publish(self, event: OutcomeEvent) -> str:
        response = self.client.publish(
            TopicArn=self.topic_arn,
            Message=event.model_dump_json(),
            MessageAttributes=message_attributes(event),  # type: ignore[arg-type]
        )
        return response["MessageId"]


class StepFunctionsTrackerStarter:
    """Starts one JobTracker execution per request; a name already used means it is started."""

    def __init__(self, state_machine_arn: str, client: SFNClient | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self) -> SFNClient:
        if self._client is None:
            self._client = aws_client("stepfunctions")
        return self._client

    def execution_arn(self, name: str) -> str:
        prefix, _, machine = self.state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, state: TrackerState) -> tuple[str, bool]:
        """Start the execution that carries `state`: the request's first (CreateJob) or the
        one `state.poll.continue_as` names (continue-as-new). Returns its ARN and whether
        this call started it.

        Standard workflows refuse a second execution with the same name (for 90 days after
        the first closes), which backs CreateJob's idempotency and makes a repeated
        continuation harmless.
        """
        name = state.poll.continue_as or execution_name(state.job.request_id, state.job.generation)
        try:
            response = self.client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=state.model_dump_json(exclude={"action", "error"}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return self.execution_arn(name), False
            raise
        return response["executionArn"], True

    def current(self, request_id: str) -> TrackerExecution | None:
        """The latest generation: each one that continued as new started the next under the
        next name, so the first name that does not exist ends the walk (one describe per
        generation; a generation is 500 poll rounds)."""
        found: TrackerExecution | None = None
        for generation in range(MAX_GENERATION + 1):
            arn = self.execution_arn(execution_name(request_id, generation))
            try:
                status = self.client.describe_execution(executionArn=arn)["status"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                    return found
                raise
            found = TrackerExecution(arn=arn, generation=generation, status=status)
        return found

    def stop(self, execution_arn: str, *, error: str, cause: str) -> bool:
        if self.client.describe_execution(executionArn=execution_arn)["status"] != "RUNNING":
            return False
        self.client.stop_execution(executionArn=execution_arn, error=error, cause=cause[:32768])
        return True

    def input_of(self, execution_arn: str) -> str:
        return str(self.client.describe_execution(executionArn=execution_arn)["input"])


class SqsDeadLetterQueue:
    """Copies refused messages to the DLQ with the reason as message attributes."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = aws_client("sqs")
        return self._client

    def send(self, body: str, *, reason: str, code: str, request_id: str, source_id: str) -> str:
        response = self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageAttributes={
                "jobrelay_reason": {"DataType": "String", "StringValue": reason[:1000] or code},
                "jobrelay_error_code": {"DataType": "String", "StringValue": code},
                "jobrelay_request_id": {"DataType": "String", "StringValue": request_id},
                "jobrelay_source_message_id": {"DataType": "String", "StringValue": source_id},
            },
        )
        return response["MessageId"]


class DynamoJobLedger:
    """Per request: when a create was attempted and which remote job it made.

    Written the moment the provider answers, before anything else can fail, so a retry of
    the same request adopts the job instead of creating another; and per remote job, which
    request it is (its claim), so no other request adopts it. Kept in the idempotency table
    under their own key prefixes, expiring with the same TTL attribute.
    """

    KEY_PREFIX = "ledger#"
    CLAIM_PREFIX = "claim#"
    CANCEL_PREFIX = "cancel#"

    def __init__(self, table_name: str, ttl_seconds: int, client: DynamoDBClient | None = None):
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client

    def _key(self, request_id: str) -> dict[str, Any]:
        return {"id": {"S": self.KEY_PREFIX + request_id}}

    def begin_attempt(self, request_id: str, at: datetime) -> LedgerEntry | None:
        """Note that a create is about to be sent (the first attempt's time is kept) and
        return what the ledger held before: one write instead of a read and a write, on
        every record of every batch."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression="SET #at = if_not_exists(#at, :at), #exp = :exp",
            ExpressionAttributeNames={"#at": "create_attempted_at", "#exp": "expiration"},
            ExpressionAttributeValues={
                ":at": {"S": at.isoformat()},
                ":exp": {"N": self._expiration()},
            },
            ReturnValues="ALL_OLD",
        )
        previous = answer.get("Attributes")
        return self._entry(request_id, previous) if previous else None

    @staticmethod
    def _entry(request_id: str, item: Mapping[str, Any]) -> LedgerEntry:
        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return str(value) if value is not None else None

        def when(name: str) -> datetime | None:
            value = text(name)
            return datetime.fromisoformat(value) if value else None

        return LedgerEntry(
            request_id=request_id,
            remote_job_id=text("remote_job_id"),
            locator=json.loads(text("locator") or "{}"),
            create_attempted_at=when("create_attempted_at"),
            created_at=when("created_at"),
            outcome_type=text("outcome_type"),
            outcome_id=text("outcome_id"),
            waiting_for=text("waiting_for"),
            arrived_at=when("arrived_at"),
            connection=text("connection"),
        )

    def entry(self, request_id: str) -> LedgerEntry | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._key(request_id), ConsistentRead=True
        ).get("Item")
        return self._entry(request_id, item) if item else None

    def _cancel_key(self, request_id: str) -> dict[str, Any]:
        return {"id": {"S": self.CANCEL_PREFIX + request_id}}

    @staticmethod
    def _cancel(request_id: str, item: Mapping[str, Any]) -> CancelRecord:
        reason = item.get("reason", {}).get("S")
        return CancelRecord(
            request_id=request_id,
            reason=str(reason) if reason is not None else None,
            requested_by=str(item["requested_by"]["S"]),
            requested_at=datetime.fromisoformat(str(item["requested_at"]["S"])),
        )

    def record_cancel(self, cancel: CancelRecord) -> tuple[CancelRecord, bool]:
        """Written once (a cancel delivered twice is one cancel): the first one is kept."""
        item: dict[str, Any] = {
            **self._cancel_key(cancel.request_id),
            "requested_by": {"S": cancel.requested_by},
            "requested_at": {"S": cancel.requested_at.isoformat()},
            "expiration": {"N": self._expiration()},
        }
        if cancel.reason is not None:
            item["reason"] = {"S": cancel.reason}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            answer: dict[str, Any] = dict(exc.response)
            if answer.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            kept = answer.get("Item") or self.client.get_item(
                TableName=self.table_name, Key=self._cancel_key(cancel.request_id)
            ).get("Item", {})
            return self._cancel(cancel.request_id, kept), False
        return cancel, True

    def cancel_of(self, request_id: str) -> CancelRecord | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._cancel_key(request_id), ConsistentRead=True
        ).get("Item")
        return self._cancel(request_id, item) if item else None

    def record_outcome(self, request_id: str, *, event_type: str, event_id: str) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression="SET #type = :type, #id = :id, #at = :at, #exp = :exp",
            ExpressionAttributeNames={
                "#type": "outcome_type",
                "#id": "outcome_id",
                "#at": "outcome_at",
                "#exp": "expiration",
            },
            ExpressionAttributeValues={
                ":type": {"S": event_type},
                ":id": {"S": event_id},
                ":at": {"S": datetime.now(UTC).isoformat()},
                ":exp": {"N": self._expiration()},
            },
        )

    def note_waiting(
        self, request_id: str, *, connection: str, waiting_for: str, at: datetime
    ) -> datetime:
        """One write: the first arrival is kept (the deadline counts from it)."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression=(
                "SET #arr = if_not_exists(#arr, :at), #for = :for, #conn = :conn, #exp = :exp"
            ),
            ExpressionAttributeNames={
                "#arr": "arrived_at",
                "#for": "waiting_for",
                "#conn": "connection",
                "#exp": "expiration",
            },
            ExpressionAttributeValues={
                ":at": {"S": at.isoformat()},
                ":for": {"S": waiting_for},
                ":conn": {"S": connection},
                ":exp": {"N": self._expiration()},
            },
            ReturnValues="ALL_NEW",
        )
        return datetime.fromisoformat(str(answer["Attributes"]["arrived_at"]["S"]))

    def _expiration(self) -> str:
        return str(int(time.time()) + self.ttl_seconds)

    def _claim_key(self, provider: str, remote_job_id: str) -> dict[str, Any]:
        return {"id": {"S": f"{self.CLAIM_PREFIX}{provider}#{remote_job_id}"}}

    def record_created(
        self, request_id: str, remote_job_id: str, locator: dict[str, str], *, provider: str
    ) -> None:
        """Claim the remote job for the request, then record it as the request's job.

        The claim (`claim#<provider>#<job id>` → request id, written only if absent or
        already this request's) is what stops a second request adopting this job when it
        reconciles an ambiguous create on the same target; `JobClaimed` when another request
        holds it. Two writes, not one transaction: a claim without its ledger entry (a crash
        in between) is found and claimed again, by the same request, on the retry; and two
        plain writes cost half the capacity of a two-item transaction.
        """
        expiration = self._expiration()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **self._claim_key(provider, remote_job_id),
                    "request_id": {"S": request_id},
                    "expiration": {"N": expiration},
                },
                ConditionExpression="attribute_not_exists(id) OR request_id = :request",
                ExpressionAttributeValues={":request": {"S": request_id}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            answer: dict[str, Any] = dict(exc.response)
            if answer.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            owner = answer.get("Item", {}).get("request_id", {}).get("S")
            raise JobClaimed(
                f"{provider} job {remote_job_id} belongs to request {owner or 'another request'}",
                owner=owner,
            ) from exc
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression=(
                "SET #job = :job, #loc = :loc, #now = :now, #exp = :exp REMOVE waiting_for"
            ),
            ExpressionAttributeNames={
                "#job": "remote_job_id",
                "#loc": "locator",
                "#now": "created_at",
                "#exp": "expiration",
            },
            ExpressionAttributeValues={
                ":job": {"S": remote_job_id},
                ":loc": {"S": json.dumps(locator, sort_keys=True)},
                ":now": {"S": datetime.now(UTC).isoformat()},
                ":exp": {"N": expiration},
            },
        )


@lru_cache(maxsize=4)
def get_publisher(topic_arn: str) -> SnsOutcomePublisher:
    return SnsOutcomePublisher(topic_arn)


@lru_cache(maxsize=4)
def get_tracker_starter(state_machine_arn: str) -> StepFunctionsTrackerStarter:
    return StepFunctionsTrackerStarter(state_machine_arn)


@lru_cache(maxsize=4)
def get_dead_letter_queue(queue_url: str) -> SqsDeadLetterQueue:
    return SqsDeadLetterQueue(queue_url)


@lru_cache(maxsize=4)
def get_ledger(table_name: str, ttl_seconds: int) -> DynamoJobLedger:
    return DynamoJobLedger(table_name, ttl_seconds)


def forget() -> None:
    """Drop the shared clients and the ports built on them (tests, local stack restarts)."""
    from jobrelay import aws_limits

    forget_clients()
    aws_limits.forget()
    for factory in (get_publisher, get_tracker_starter, get_dead_letter_queue, get_ledger):
        factory.cache_clear()
