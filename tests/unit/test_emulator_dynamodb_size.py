"""The embedded AWS's faster attribute size (``faster_items``) is moto's own, to the byte: a Query's or Scan's 1 MB
page, and an item's 400 KB limit, end where moto would end them."""

from __future__ import annotations

import random
from typing import Any

from moto.dynamodb.models.dynamo_type import DynamoType

from deployguard_local.emulator.dynamodb import faster_items


def _attribute(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"] if depth < 4 else ["S", "N", "BOOL"]
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": "".join(rng.choice("aé€x ") for _ in range(rng.randint(0, 12)))}
    if kind == "N":
        return {"N": str(round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)))}
    if kind == "B":
        return {"B": bytes(rng.randint(0, 9))}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": ["a", "bé", "€€"][: rng.randint(1, 3)]}
    if kind == "NS":
        return {"NS": ["1", "2.5", "-300"][: rng.randint(1, 3)]}
    if kind == "BS":
        return {"BS": [b"x", b"yz"][: rng.randint(1, 2)]}
    if kind == "M":
        return {"M": {f"key-{i}-é": _attribute(rng, depth + 1) for i in range(rng.randint(0, 5))}}
    return {"L": [_attribute(rng, depth + 1) for _ in range(rng.randint(0, 5))]}


def test_every_kind_of_attribute_has_moto_s_own_size() -> None:
    rng = random.Random(7)
    attributes = [_attribute(rng) for _ in range(4000)]
    moto_sizes = [DynamoType(a).size() for a in attributes]
    undo = faster_items()
    try:
        faster = [DynamoType(a).size() for a in attributes]
    finally:
        undo()
    assert faster == moto_sizes
    assert sum(moto_sizes) > 30_000  # trees of every kind, not a handful of empty ones
