"""What subscribers of the JobEvents topic receive, collected through a queue subscribed to
it (raw delivery)."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3


class EventSink:
    """A queue subscribed to the JobEvents topic (raw delivery): what subscribers receive."""

    def __init__(self, topic_arn: str, name: str = "jobrelay-local-events") -> None:
        self.sqs = boto3.client("sqs")
        self.sns = boto3.client("sns")
        self.queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []

    def drain(self) -> list[dict[str, Any]]:
        """Move what arrived into `events`; returns the new events, in arrival order."""
        new: list[dict[str, Any]] = []
        with self._lock:
            while True:
                answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
                messages = answer.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    self.raw.append(message["Body"])
                    new.append(json.loads(message["Body"]))
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            self.events.extend(new)
        return new
