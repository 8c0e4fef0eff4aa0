"""DynamoDB on moto as DynamoDB behaves: atomic between threads, transactions without a table copy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_DYNAMODB_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_get_item",
    "batch_write_item",
    "transact_write_items",
    "transact_get_items",
)


def atomic_dynamodb() -> Callable[[], None]:
    """Make moto's DynamoDB operations atomic between threads, as DynamoDB's are.

    moto checks a ConditionExpression and then writes without a lock, and iterates a
    table's items while another thread may add one; the state machine, the asynchronous
    Lambda invocations and the caller all use it at once. Returns the undo.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in _DYNAMODB_OPERATIONS}
    for name, original in originals.items():

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, serialised)

    def undo() -> None:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)

    return undo


def transactions_without_table_copy() -> Callable[[], None]:
    """moto's TransactWriteItems deep-copies every table it touches (to roll back on failure), so a
    transaction costs as much as the table is large. Here the conditions are checked first and the
    operations applied only if all hold, which needs no copy; any other case (a condition fails,
    an operation moto must refuse) goes to moto's own code for its exact answer. Atomic between
    threads once :func:`atomic_dynamodb` serialises it. Returns the undo."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        plan = []
        seen = set()
        for entry in transact_items:
            if len(entry) != 1:
                return original(self, transact_items)
            op_type, op = next(iter(entry.items()))
            if op_type not in ("Put", "Delete", "ConditionCheck") or op["TableName"] not in self.tables:
                return original(self, transact_items)
            table = self.tables[op["TableName"]]
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            marker = (op["TableName"], str(sorted(key.items())))
            if marker in seen:
                return original(self, transact_items)
            seen.add(marker)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                )
                if not check.expr(self.get_item(op["TableName"], key)):
                    return original(self, transact_items)  # moto cancels it, with the reasons
            plan.append((op_type, op, key))
        for op_type, op, key in plan:
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"])
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key)
        return None

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    def undo() -> None:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]

    return undo
