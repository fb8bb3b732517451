"""The local stack's DynamoDB answers whole requests atomically: a read (or a write's own
answer) never sees an item halfway through another thread's in-place update."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from jobrelay_local.atomic_writes import atomic_dynamodb_writes
from moto import mock_aws

from tests.tables import create_limits_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY = {"pk": {"S": "connection"}, "sk": {"S": "slots"}}


@pytest.fixture
def slots_table() -> Iterator[DynamoDBClient]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_limits_table(client)
        client.put_item(TableName="limits", Item={**KEY, "held": {"M": {}}})
        with atomic_dynamodb_writes():
            yield client


def test_reads_and_answers_never_race_an_update_of_the_same_map(
    slots_table: DynamoDBClient,
) -> None:
    # The connection limits' slots item: holders added to and removed from its `held` map
    # while others read it. moto updates the item in place and serializes answers outside
    # its backend, so without the whole request under one lock a reader (or the writer's
    # own answer) iterates the map while it changes: "dictionary changed size during
    # iteration", a retried record or a slot freed late.
    client = slots_table
    errors: list[str] = []
    stop = time.monotonic() + 2.0

    def holder(n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            name = {"#r": f"request-{n}-{i}"}
            try:
                client.update_item(
                    TableName="limits",
                    Key=KEY,
                    UpdateExpression="SET held.#r = :until",
                    ExpressionAttributeNames=name,
                    ExpressionAttributeValues={":until": {"S": "2026-12-02T00:00:00+00:00"}},
                )
                client.update_item(
                    TableName="limits",
                    Key=KEY,
                    UpdateExpression="REMOVE held.#r",
                    ExpressionAttributeNames=name,
                )
            except Exception as exc:  # every failure is the finding
                errors.append(repr(exc))
            i += 1

    def reader() -> None:
        while time.monotonic() < stop:
            try:
                client.get_item(TableName="limits", Key=KEY, ConsistentRead=True)
                client.query(
                    TableName="limits",
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": "connection"}},
                )
            except Exception as exc:
                errors.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so a race shows within the test
    try:
        threads = [threading.Thread(target=holder, args=(n,)) for n in range(3)]
        threads += [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    item = client.get_item(TableName="limits", Key=KEY)["Item"]
    assert item["held"] == {"M": {}}
