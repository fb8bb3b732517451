"""moto's DynamoDB conditional writes made atomic, as DynamoDB's are."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Make moto's DynamoDB conditional writes atomic, as DynamoDB's are.

    moto evaluates a ConditionExpression and writes in two steps without a lock, so two
    threads can both pass `attribute_not_exists(id)`. Idempotency (ours and Powertools')
    relies on exactly that check, so the local stack serializes writes per backend.

    Each DynamoDB request is also answered whole under that lock: moto updates an item in
    place and serializes its answers outside the backend, so a read (or a write's own
    answer) could iterate an item's map while another thread changed it ("dictionary
    changed size during iteration": the connection limits' slots item, whose `held` map
    gains and loses holders, under a burst). DynamoDB never shows half an update.

    A transaction also backs up only the items it writes, not (as moto does) a deep copy of
    every table it touches: that copy costs each write time in the number of items held (the
    job ledger's table holds several per request), and raced concurrent reads.
    """
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    originals = {
        name: getattr(DynamoDBBackend, name)
        for name in ("put_item", "update_item", "delete_item", "transact_write_items")
    }

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    transact = originals["transact_write_items"]

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            saved = _items_of(backend, transact_items)
            try:
                transact(backend, transact_items)
            except Exception:
                _restore(backend, saved)
                raise

    real_copy = getattr(models, "copy")  # noqa: B009 - not exported
    call_action = DynamoHandler.call_action
    for name, original in originals.items():
        setattr(DynamoDBBackend, name, locked(original))
    setattr(DynamoHandler, "call_action", locked(call_action))  # noqa: B010
    setattr(DynamoDBBackend, "transact_write_items", transact_write_items)  # noqa: B010
    setattr(models, "copy", _TablesNotCopied(real_copy))  # noqa: B010
    try:
        yield
    finally:
        setattr(models, "copy", real_copy)  # noqa: B010
        setattr(DynamoHandler, "call_action", call_action)  # noqa: B010
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


class _TablesNotCopied:
    """`copy` for moto's DynamoDB module: a table is "copied" as itself (its transaction's
    items are backed up one by one instead); everything else as `copy` does."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if isinstance(value, Table):
            return value
        return self._real.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _items_of(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """(table, key, a copy of the item or None) for each item the transaction writes."""
    import copy

    saved = []
    for operation in transact_items:
        for op in operation.values():
            table_name = op.get("TableName")
            if table_name not in backend.tables:
                continue
            table = backend.tables[table_name]
            if "Key" in op:
                key = op["Key"]
            else:
                names = [table.hash_key_attr, table.range_key_attr]
                key = {name: op["Item"][name] for name in names if name and name in op["Item"]}
            try:
                item = backend.get_item(table_name, key)
            except Exception:  # noqa: S112 - a malformed key: moto refuses it before any write
                continue
            saved.append((table, key, copy.deepcopy(item) if item is not None else None))
    return saved


def _restore(backend: Any, saved: list[tuple[Any, Any, Any]]) -> None:
    for table, key, item in reversed(saved):
        if item is None:
            with contextlib.suppress(Exception):  # not written after all
                backend.delete_item(table.name, key)
        elif table.range_key_attr:
            table.items[item.hash_key][item.range_key] = item
        else:
            table.items[item.hash_key] = item
