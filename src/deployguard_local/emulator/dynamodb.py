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


class _NotPlain(Exception):
    """An attribute value the fast serialisation does not take: moto's own serialiser writes it."""


_ATTRIBUTE_VALUE_MEMBERS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")


def _attribute_value_json(value: Any, base64: Callable[[Any], str]) -> dict[str, Any]:
    """An AttributeValue (``{"S": "x"}``, ``{"M": {...}}``, ...) as moto's JSON serialiser writes it: the members
    in the model's order, None left out, strings as strings, binaries in base64, maps and lists member by member."""
    if not isinstance(value, dict) or not value.keys() <= set(_ATTRIBUTE_VALUE_MEMBERS):
        raise _NotPlain
    out: dict[str, Any] = {}
    for member in _ATTRIBUTE_VALUE_MEMBERS:
        item = value.get(member)
        if item is None:
            continue
        if member in ("S", "N"):
            if not isinstance(item, str):
                raise _NotPlain
            out[member] = item
        elif member == "B":
            if not isinstance(item, bytes | str):
                raise _NotPlain
            out[member] = base64(item)
        elif member in ("SS", "NS"):
            if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
                raise _NotPlain
            out[member] = list(item)
        elif member == "BS":
            if not isinstance(item, list) or not all(isinstance(x, bytes | str) for x in item):
                raise _NotPlain
            out[member] = [base64(x) for x in item]
        elif member == "M":
            if not isinstance(item, dict):
                raise _NotPlain
            out[member] = {k: _attribute_value_json(v, base64) for k, v in item.items() if v is not None}
        elif member == "L":
            if not isinstance(item, list):
                raise _NotPlain
            out[member] = [None if v is None else _attribute_value_json(v, base64) for v in item]
        else:  # NULL, BOOL
            if not isinstance(item, bool):
                raise _NotPlain
            out[member] = item
    return out


def fast_attribute_values() -> Callable[[], None]:
    """moto's response serialiser looks every member of every AttributeValue up under half a dozen aliases, so
    a Query of a few judge states cost 50 ms of CPU and GetItem 8 ms, taking the GIL from the state machine's
    thread. An AttributeValue moto holds as plain DynamoDB JSON (always, for what it stores) is written here
    directly, exactly as its serialiser writes it; anything else goes to moto's own code. Returns the undo."""
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        plain = key and shape.name == "AttributeValue" and self.service_model.service_name == "dynamodb"
        if plain and not getattr(self._value_picker, "response_transformers", None):
            try:
                serialized[shape.serialization.get("name", key)] = _attribute_value_json(value, self._base64)
                return
            except _NotPlain:
                pass
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]

    def undo() -> None:
        BaseJSONSerializer._serialize_type_structure = original  # type: ignore[method-assign]

    return undo


def faster_items() -> Callable[[], None]:
    """Three costs of moto's DynamoDB that grow with the table, answered exactly as moto answers them:

    - an item is built attribute by attribute into a dict that sums the size of every attribute already in
      it at each one (quadratic, recursive into maps and lists: most of the CPU of restoring a saved demo
      state of 1100 items). Here each attribute's size is computed once and the running sum checked at the
      same points against the same limit, so the same item is refused with the same error;
    - a Query starts from every item of the table sorted by its keys (``Table.all_items``), then keeps the
      partition's (or the index's) and sorts those again by a key that orders them totally. The first sort
      cannot change the result, so a Query takes the items unsorted;
    - an attribute's size (``DynamoType.size``, asked for every item a Query or Scan passes, against its 1 MB
      page) wraps each member of a map in a new ``DynamoType`` again, which wraps its own members again: the
      whole tree rebuilt at every level, most of the CPU of reading a long canary's history. Here the same sum
      is taken over the members as they are (a set's members still go through moto's own code).

    Returns the undo."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.models.utilities import bytesize

    original_init = Item.__init__
    original_query = Table.query
    original_size = DynamoType.size

    def size(self: Any) -> int:
        kind, value = self.type, self.value
        if kind == "N":
            return len(str(value))
        if kind == "L":
            return sum((v if type(v) is DynamoType else DynamoType(v)).size() for v in value)
        if kind == "M":
            return sum(bytesize(k) + (v if type(v) is DynamoType else DynamoType(v)).size() for k, v in value.items())
        if kind in ("SS", "NS", "BS"):
            return int(original_size(self))
        if isinstance(value, bool):  # BOOL, NULL
            return 1
        return int(bytesize(value))

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        self.attrs = LimitedSizeDict()
        size = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            added = bytesize(key) + typed.size()
            if size + added > 405000:  # LimitedSizeDict.__setitem__'s limit
                raise ItemSizeTooLarge
            dict.__setitem__(self.attrs, key, typed)
            size += added

    original_all_items = Table.all_items
    querying = threading.local()

    def all_items(self: Any) -> list[Any]:
        if not getattr(querying, "active", False):
            return original_all_items(self)
        if self.range_key_attr:
            return [item for partition in self.items.values() for item in partition.values()]
        return list(self.items.values())

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        querying.active = True  # this thread's query: a scan still sees the items sorted
        try:
            return original_query(self, *args, **kwargs)
        finally:
            querying.active = False

    Item.__init__ = item_init  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    DynamoType.size = size  # type: ignore[method-assign]

    def undo() -> None:
        DynamoType.size = original_size  # type: ignore[method-assign]
        Item.__init__ = original_init  # type: ignore[method-assign]
        Table.all_items = original_all_items  # type: ignore[method-assign]
        Table.query = original_query  # type: ignore[method-assign]

    return undo
