"""The DLQ as a workflow: list dead requests with their reason, send them back to the queue.
Works against any endpoint boto3 can reach: the local stack, or AWS with the user's credentials."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

REDRIVE_VISIBILITY_SECONDS = 30


@dataclass(frozen=True)
class DeadLetter:
    """A message in the DLQ, of one of two kinds.

    - Refused by CreateJob (invalid, or refused by the provider): it carries
      `jobrelay_error_code` and `jobrelay_reason` attributes and was already answered with a
      `jobrelay.job.rejected` event; redriving it would only find that answer again (the
      request id is the idempotency key), so it is not `redrivable`: fix the request and
      send it under a new request id.
    - Moved by SQS after `maxReceiveCount` failed deliveries (a provider down for longer
      than the retries, missing credentials): no outcome was published, and redriving it is
      the fix.
    """

    message_id: str
    request_id: str
    reason: str
    code: str | None
    receive_count: int
    body: str
    receipt_handle: str

    @property
    def redrivable(self) -> bool:
        return self.code is None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {}).get("StringValue")
    return str(value) if value is not None else None


def _request_id(body: str, fallback: str) -> str:
    try:
        value = json.loads(body).get("request_id")
    except (ValueError, AttributeError):
        return fallback
    return value if isinstance(value, str) else fallback


def dead_letter(message: dict[str, Any]) -> DeadLetter:
    code = _attribute(message, "jobrelay_error_code")
    receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "0"))
    reason = _attribute(message, "jobrelay_reason") or (
        "delivery failed on every attempt (maxReceiveCount reached); see CreateJob's logs "
        "for this request id"
    )
    source_id = _attribute(message, "jobrelay_source_message_id") or message["MessageId"]
    return DeadLetter(
        message_id=message["MessageId"],
        request_id=_attribute(message, "jobrelay_request_id")
        or _request_id(message["Body"], source_id),
        reason=reason,
        code=code,
        receive_count=receives,
        body=message["Body"],
        receipt_handle=message["ReceiptHandle"],
    )


def list_dead_letters(
    sqs: Any, dlq_url: str, *, visibility: int = 0, rounds: int = 50
) -> list[DeadLetter]:
    """Every message in the DLQ (received without hiding them, unless `visibility` > 0)."""
    found: dict[str, DeadLetter] = {}
    empty_rounds = 0
    for _ in range(rounds):
        answer = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        new = [m for m in answer.get("Messages", []) if m["MessageId"] not in found]
        for message in new:
            found[message["MessageId"]] = dead_letter(message)
        empty_rounds = 0 if new else empty_rounds + 1
        if empty_rounds >= 2:
            break
    return list(found.values())


@dataclass(frozen=True)
class RedriveResult:
    redriven: list[DeadLetter]
    left: list[DeadLetter]


def redrive(
    sqs: Any, dlq_url: str, queue_url: str, *, message_ids: set[str] | None = None
) -> RedriveResult:
    """Send dead requests back to the requests queue (all redrivable ones, or these ids)."""
    letters = list_dead_letters(sqs, dlq_url, visibility=REDRIVE_VISIBILITY_SECONDS)
    redriven, left = [], []
    for letter in letters:
        chosen = (
            message_ids is None
            or letter.message_id in message_ids
            or letter.request_id in message_ids
        )
        if not chosen or not letter.redrivable:
            left.append(letter)
            continue
        sqs.send_message(QueueUrl=queue_url, MessageBody=letter.body)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        redriven.append(letter)
    for letter in left:  # make the ones we leave visible again at once
        sqs.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
        )
    return RedriveResult(redriven=redriven, left=left)
