"""The AWS side of connection limits (`jobrelay.ports.ConnectionSlots`, `RequestQueue`): the
slots and waiting requests of each connection in the limits table, and the job requests
queue a waiting request goes back to. With `jobrelay.aws`, the only modules of the layer
that use boto3.

The limits table (`pk`, `sk`) holds per connection (`pk` = its name):
- `sk = "slots"`: `held`, a map of request id to the deadline (epoch s) it may hold its slot
  to; `waiting`, how many wait; `cap`, the last `max_in_flight` seen; `swept_at`.
- `sk = "w#<arrival epoch>#<request id>"`: one waiting request, its message and deadline;
  the sort key is the arrival order.
- `sk = "rate#<minute>"`: the creates counted in that minute (`max_creates_per_minute`).

Every decision is one conditional write on the slots item, so concurrent CreateJob workers
and outcome publishers never hand out more slots than the cap: a slot is taken only while
fewer than `cap` are held and nobody waits, or handed to the oldest waiter, which is then
taken out of the queue. No transactions: a crash between a hand-over and the waiter's
removal leaves a waiter that already holds its slot, which the next admission removes; the
`waiting` count (what keeps newcomers behind the queue) is set right when it drifts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jobrelay.admission import WAITER_PREFIX
from jobrelay.aws import aws_client
from jobrelay.ports import SlotsView, Waiter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

SLOTS = "slots"
# Waiters admitted by one call at most (each a read, a query and a transaction).
MAX_ADMITS = 50
# How often a connection's held slots are checked for holders that are done.
SWEEP_EVERY_SECONDS = 60
# Waiting and rate items outlive their deadline by a day, then expire (TTL).
KEEP_AFTER_DEADLINE_SECONDS = 86_400


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _when(value: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(value["N"]), UTC)


def _failed_condition(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoConnectionSlots:
    """`max_in_flight` slots, the arrival-ordered queue and the per-minute create counts."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client

    @staticmethod
    def _slots_key(connection: str) -> dict[str, Any]:
        return {"pk": {"S": connection}, "sk": {"S": SLOTS}}

    def _ensure(self, connection: str, cap: int) -> None:
        """The connection's slots item, made on first use (idempotent)."""
        self.client.update_item(
            TableName=self.table_name,
            Key=self._slots_key(connection),
            UpdateExpression=(
                "SET held = if_not_exists(held, :none), waiting = if_not_exists(waiting, :zero), "
                "cap = :cap"
            ),
            ExpressionAttributeValues={
                ":none": {"M": {}},
                ":zero": {"N": "0"},
                ":cap": {"N": str(cap)},
            },
        )

    def take(
        self, connection: str, request_id: str, *, cap: int, deadline_at: datetime
    ) -> datetime | None:
        for _ in range(2):
            try:
                answer = self.client.update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(connection),
                    UpdateExpression="SET held.#r = if_not_exists(held.#r, :until), cap = :cap",
                    ConditionExpression=(
                        "attribute_exists(held.#r) OR "
                        "(attribute_exists(held) AND size(held) < :cap AND waiting <= :zero)"
                    ),
                    ExpressionAttributeNames={"#r": request_id},
                    ExpressionAttributeValues={
                        ":until": {"N": _epoch(deadline_at)},
                        ":cap": {"N": str(cap)},
                        ":zero": {"N": "0"},
                    },
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if not _failed_condition(exc):
                    raise
                old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
                if "held" in old:
                    return None
                self._ensure(connection, cap)
                continue
            return _when(answer["Attributes"]["held"]["M"][request_id])
        return None

    def wait(self, waiter: Waiter, *, cap: int) -> None:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": waiter.connection},
                    "sk": {"S": waiter.key},
                    "request_id": {"S": waiter.request_id},
                    "deadline": {"N": _epoch(waiter.deadline_at)},
                    "body": {"S": waiter.body},
                    "expiration": {
                        "N": str(int(waiter.deadline_at.timestamp()) + KEEP_AFTER_DEADLINE_SECONDS)
                    },
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            return  # already queued (a message delivered again): it keeps its place
        self.client.update_item(
            TableName=self.table_name,
            Key=self._slots_key(waiter.connection),
            UpdateExpression="ADD waiting :one SET cap = :cap",
            ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": str(cap)}},
        )

    def _slots(self, connection: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._slots_key(connection), ConsistentRead=True
        ).get("Item")
        return dict(item) if item else None

    def _oldest(self, connection: str) -> Waiter | None:
        items = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :w)",
            ExpressionAttributeValues={":pk": {"S": connection}, ":w": {"S": WAITER_PREFIX}},
            Limit=1,
            ConsistentRead=True,
        )["Items"]
        return self._waiter(connection, items[0]) if items else None

    @staticmethod
    def _waiter(connection: str, item: Mapping[str, Any]) -> Waiter:
        return Waiter(
            connection=connection,
            request_id=str(item["request_id"]["S"]),
            key=str(item["sk"]["S"]),
            deadline_at=_when(item["deadline"]),
            body=str(item["body"]["S"]),
        )

    def admit(
        self, connection: str, finished: Callable[[str], bool] = lambda request_id: False
    ) -> list[Waiter]:
        admitted: list[Waiter] = []
        for _ in range(MAX_ADMITS):
            slots = self._slots(connection)
            if slots is None:
                break
            held = slots.get("held", {}).get("M", {})
            cap = int(slots.get("cap", {}).get("N", "0"))
            if len(held) >= cap:
                break
            # The queue itself, not the count, says whether anyone waits: the count is what
            # keeps newcomers behind the queue, and is set right here when it drifted.
            waiting = int(slots.get("waiting", {}).get("N", "0"))
            oldest = self._oldest(connection)
            if oldest is None:
                if waiting != 0:
                    self._set_waiting(connection, waiting, 0)
                break
            if waiting <= 0:
                self._set_waiting(connection, waiting, 1)
            if finished(oldest.request_id):
                # Its request went on without its turn (it took a free slot on a later
                # delivery, or ended): out of the queue, and no slot for it.
                self.leave(connection, oldest.key)
                continue
            if self._hand_over(oldest, cap):
                admitted.append(oldest)
        return admitted

    def _set_waiting(self, connection: str, seen: int, value: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._slots_key(connection),
                UpdateExpression="SET waiting = :value",
                ConditionExpression="waiting = :seen",
                ExpressionAttributeValues={":value": {"N": str(value)}, ":seen": {"N": str(seen)}},
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def _hand_over(self, waiter: Waiter, cap: int) -> bool:
        """Give the oldest waiter a slot (one conditional write: fewer than `cap` held, and
        not already its), then take it out of the queue. False when the last slot went
        meanwhile, or another call admitted it first (the caller looks again); a waiter
        found holding a slot is taken out of the queue (an admission that stopped between
        its two writes)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._slots_key(waiter.connection),
                UpdateExpression="SET held.#r = :until ADD waiting :less",
                ConditionExpression=(
                    "attribute_exists(held) AND size(held) < :cap AND attribute_not_exists(held.#r)"
                ),
                ExpressionAttributeNames={"#r": waiter.request_id},
                ExpressionAttributeValues={
                    ":until": {"N": _epoch(waiter.deadline_at)},
                    ":less": {"N": "-1"},
                    ":cap": {"N": str(cap)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            if waiter.request_id in old.get("held", {}).get("M", {}):
                self._remove(waiter.connection, waiter.key)
            return False
        self._remove(waiter.connection, waiter.key)
        return True

    def _remove(self, connection: str, key: str) -> dict[str, Any] | None:
        answer = self.client.delete_item(
            TableName=self.table_name,
            Key={"pk": {"S": connection}, "sk": {"S": key}},
            ReturnValues="ALL_OLD",
        )
        item = answer.get("Attributes")
        return dict(item) if item else None

    def release(self, connection: str, request_id: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._slots_key(connection),
                UpdateExpression="REMOVE held.#r",
                ConditionExpression="attribute_exists(held)",
                ExpressionAttributeNames={"#r": request_id},
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def leave(self, connection: str, key: str) -> Waiter | None:
        item = self._remove(connection, key)
        if item is None:
            return None  # admitted (or taken out) meanwhile
        self.client.update_item(
            TableName=self.table_name,
            Key=self._slots_key(connection),
            UpdateExpression="ADD waiting :less",
            ExpressionAttributeValues={":less": {"N": "-1"}},
        )
        return self._waiter(connection, item)

    def reclaim(
        self, connection: str, stale: Callable[[str, datetime], bool], now: datetime
    ) -> list[str]:
        slots = self._slots(connection)
        if slots is None:
            return []
        swept = int(slots.get("swept_at", {}).get("N", "0"))
        if now.timestamp() - swept < SWEEP_EVERY_SECONDS:
            return []
        try:
            # One sweeper per minute per connection.
            self.client.update_item(
                TableName=self.table_name,
                Key=self._slots_key(connection),
                UpdateExpression="SET swept_at = :now",
                ConditionExpression="attribute_not_exists(swept_at) OR swept_at = :seen",
                ExpressionAttributeValues={
                    ":now": {"N": _epoch(now)},
                    ":seen": {"N": str(swept)},
                },
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            return []
        reclaimed = []
        for request_id, until in slots.get("held", {}).get("M", {}).items():
            if not stale(request_id, _when(until)):
                continue
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(connection),
                    UpdateExpression="REMOVE held.#r",
                    ConditionExpression="held.#r = :until",
                    ExpressionAttributeNames={"#r": request_id},
                    ExpressionAttributeValues={":until": until},
                )
            except ClientError as exc:
                if not _failed_condition(exc):
                    raise
                continue
            reclaimed.append(request_id)
        return reclaimed

    def count_create(self, connection: str, per_minute: int, now: datetime) -> float:
        epoch = now.timestamp()
        window = int(epoch // 60)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": connection}, "sk": {"S": f"rate#{window}"}},
                UpdateExpression="ADD n :one SET expiration = :exp",
                ConditionExpression="attribute_not_exists(n) OR n < :cap",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":cap": {"N": str(per_minute)},
                    ":exp": {"N": str(window * 60 + 60 + KEEP_AFTER_DEADLINE_SECONDS)},
                },
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            return max(0.001, (window + 1) * 60 - epoch)
        return 0.0

    def view(self, connection: str) -> SlotsView | None:
        slots = self._slots(connection)
        if slots is None:
            return None
        return SlotsView(
            connection=connection,
            cap=int(slots.get("cap", {}).get("N", "0")),
            held={rid: _when(until) for rid, until in slots.get("held", {}).get("M", {}).items()},
            waiting=int(slots.get("waiting", {}).get("N", "0")),
        )

    def position(self, connection: str, key: str) -> int:
        return int(
            self.client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :me",
                ExpressionAttributeValues={
                    ":pk": {"S": connection},
                    ":first": {"S": WAITER_PREFIX},
                    ":me": {"S": key},
                },
                Select="COUNT",
                ConsistentRead=True,
            )["Count"]
        )

    def waiters(self, connection: str, limit: int = 100) -> list[Waiter]:
        """The oldest waiters of a connection (the CLI's `jobs`)."""
        items = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :w)",
            ExpressionAttributeValues={":pk": {"S": connection}, ":w": {"S": WAITER_PREFIX}},
            Limit=limit,
            ConsistentRead=True,
        )["Items"]
        return [self._waiter(connection, item) for item in items]

    def connections(self) -> list[str]:
        """Every connection with slots (the CLI's `jobs`; a scan, so not on a request path)."""
        names: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "sk = :slots",
            "ExpressionAttributeValues": {":slots": {"S": SLOTS}},
            "ProjectionExpression": "pk",
        }
        while True:
            page = self.client.scan(**kwargs)
            names.extend(str(item["pk"]["S"]) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return sorted(names)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class SqsRequestQueue:
    """Sends a waiting request's message back to the job requests queue."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = aws_client("sqs")
        return self._client

    def send(self, body: str, *, delay_seconds: int = 0) -> str:
        response = self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            DelaySeconds=max(0, min(900, delay_seconds)),
        )
        return response["MessageId"]


_slots: dict[str, DynamoConnectionSlots] = {}
_queues: dict[str, SqsRequestQueue] = {}


def get_slots(table_name: str) -> DynamoConnectionSlots:
    return _slots.setdefault(table_name, DynamoConnectionSlots(table_name))


def get_request_queue(queue_url: str) -> SqsRequestQueue:
    return _queues.setdefault(queue_url, SqsRequestQueue(queue_url))


def forget() -> None:
    _slots.clear()
    _queues.clear()
