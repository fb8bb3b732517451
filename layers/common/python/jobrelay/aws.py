"""The AWS side of the ports (`jobrelay.ports`): SNS publisher, Step Functions tracker starter,
SQS dead-letter queue and the DynamoDB job ledger, and the process's shared boto3 clients.
The only module of the layer that imports boto3 or botocore.

Each is built by a cached factory; tests use the fakes of `tests/fakes.py` instead.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from jobrelay.errors import JobClaimed, RequestInProgress, TrackerThrottled
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
            code = exc.response.get("Error", {}).get("Code")
            if code == "ExecutionAlreadyExists":
                return self.execution_arn(name), False
            if code in ("ThrottlingException", "ExecutionLimitExceeded"):
                raise TrackerThrottled(f"StartExecution refused for now: {code}") from exc
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
    """Per request, one item (`ledger#<request id>`): the lease of the delivery working on it,
    when a create was attempted and which remote job it made, its cancel and its outcome;
    and per remote job, which request it is (its claim), so no other request adopts it.

    The ledger is CreateJob's idempotency record: a delivery takes the request's lease and
    reads what earlier ones did in one write (`begin`), and the job is recorded the moment
    the provider answers, its claim with it (`record_created`), before anything else can
    fail, so a retry of the same request adopts the job instead of creating another. Kept in
    the idempotency table under their own key prefixes, expiring with the same TTL attribute.
    """

    KEY_PREFIX = "ledger#"
    CLAIM_PREFIX = "claim#"

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

    def begin(
        self, request_id: str, at: datetime, *, lease_seconds: float, attempt: bool
    ) -> LedgerEntry | None:
        """Take the request's lease until `at + lease_seconds` (refused while another
        delivery holds one: `RequestInProgress`), with `attempt` keep the first attempt's
        time, and answer what the item held before: a concurrent duplicate never creates,
        and a later one learns the job, the cancel or the outcome without another read."""
        now = int(at.timestamp())
        names = {"#lease": "lease_until", "#exp": "expiration"}
        values: dict[str, Any] = {
            ":until": {"N": str(now + max(1, math.ceil(lease_seconds)))},
            ":now": {"N": str(now)},
            ":exp": {"N": self._expiration()},
        }
        update = "SET #lease = :until, #exp = :exp"
        if attempt:
            names["#at"] = "create_attempted_at"
            values[":at"] = {"S": at.isoformat()}
            update += ", #at = if_not_exists(#at, :at)"
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(request_id),
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#lease) OR #lease < :now",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise RequestInProgress(
                f"request {request_id} is being handled by another delivery"
            ) from exc
        previous = answer.get("Attributes")
        return self._entry(request_id, previous) if previous else None

    def release(self, request_id: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(request_id),
                UpdateExpression="REMOVE lease_until",
                ConditionExpression="attribute_exists(id)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def begin_attempt(self, request_id: str, at: datetime) -> LedgerEntry | None:
        """Note that a create is about to be sent (the first attempt's time is kept) and
        return what the ledger held before (a request that waited for its connection: its
        lease was taken without an attempt)."""
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

        cancel = None
        requested_at = when("cancel_requested_at")
        if requested_at is not None:
            cancel = CancelRecord(
                request_id=request_id,
                reason=text("cancel_reason"),
                requested_by=text("cancel_requested_by") or "unknown",
                requested_at=requested_at,
            )
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
            cancel=cancel,
        )

    def entry(self, request_id: str) -> LedgerEntry | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._key(request_id), ConsistentRead=True
        ).get("Item")
        return self._entry(request_id, item) if item else None

    def record_cancel(self, cancel: CancelRecord) -> tuple[CancelRecord, bool]:
        """Written once (a cancel delivered twice is one cancel): the first one is kept, on
        the request's own item, so the request's next delivery reads it with its lease."""
        names = {
            "#at": "cancel_requested_at",
            "#by": "cancel_requested_by",
            "#exp": "expiration",
        }
        values: dict[str, Any] = {
            ":at": {"S": cancel.requested_at.isoformat()},
            ":by": {"S": cancel.requested_by},
            ":exp": {"N": self._expiration()},
        }
        update = "SET #at = :at, #by = :by, #exp = :exp"
        if cancel.reason is not None:
            names["#why"] = "cancel_reason"
            values[":why"] = {"S": cancel.reason}
            update += ", #why = :why"
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(cancel.request_id),
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#at)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            answer: dict[str, Any] = dict(exc.response)
            if answer.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            kept = answer.get("Item") or self.client.get_item(
                TableName=self.table_name, Key=self._key(cancel.request_id), ConsistentRead=True
            ).get("Item", {})
            found = self._entry(cancel.request_id, kept).cancel
            return (found or cancel), False
        return cancel, True

    def cancel_of(self, request_id: str) -> CancelRecord | None:
        entry = self.entry(request_id)
        return entry.cancel if entry else None

    def record_outcome(self, request_id: str, *, event_type: str, event_id: str) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression=(
                "SET #type = :type, #id = :id, #at = :at, #exp = :exp REMOVE lease_until"
            ),
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
        """One write: the first arrival is kept (the deadline counts from it), and the lease
        given up (the message is done with until it comes back)."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=self._key(request_id),
            UpdateExpression=(
                "SET #arr = if_not_exists(#arr, :at), #for = :for, #conn = :conn, #exp = :exp "
                "REMOVE lease_until"
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
        """Claim the remote job for the request and record it as the request's job, its
        lease given up: one transaction, so both or neither.

        The claim (`claim#<provider>#<job id>` → request id, written only if absent or
        already this request's) is what stops a second request adopting this job when it
        reconciles an ambiguous create on the same target; `JobClaimed` when another request
        holds it (then nothing is written, and the retry's reconciliation passes over it).
        """
        expiration = self._expiration()
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {
                                **self._claim_key(provider, remote_job_id),
                                "request_id": {"S": request_id},
                                "expiration": {"N": expiration},
                            },
                            "ConditionExpression": (
                                "attribute_not_exists(id) OR request_id = :request"
                            ),
                            "ExpressionAttributeValues": {":request": {"S": request_id}},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": self._key(request_id),
                            "UpdateExpression": (
                                "SET #job = :job, #loc = :loc, #now = :now, #exp = :exp "
                                "REMOVE waiting_for, lease_until"
                            ),
                            "ExpressionAttributeNames": {
                                "#job": "remote_job_id",
                                "#loc": "locator",
                                "#now": "created_at",
                                "#exp": "expiration",
                            },
                            "ExpressionAttributeValues": {
                                ":job": {"S": remote_job_id},
                                ":loc": {"S": json.dumps(locator, sort_keys=True)},
                                ":now": {"S": datetime.now(UTC).isoformat()},
                                ":exp": {"N": expiration},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            answer: dict[str, Any] = dict(exc.response)
            if answer.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = answer.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
            owner = reasons[0].get("Item", {}).get("request_id", {}).get("S")
            raise JobClaimed(
                f"{provider} job {remote_job_id} belongs to request {owner or 'another request'}",
                owner=owner,
            ) from exc


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
