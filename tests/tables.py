"""The template's DynamoDB tables as tests create them in moto, where a test needs one alone."""

from __future__ import annotations

from typing import Any


def create_limits_table(client: Any, name: str = "limits") -> None:
    """The connection limits' table: `pk` (the connection) and `sk` (its slots item, its
    waiters in arrival order), on demand."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
