"""The embedded AWS writes DynamoDB's attribute values itself (moto's serialiser is slow on them): byte for byte
what moto writes, for every kind of attribute value, through a real table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployguard_local.emulator.dynamodb import fast_attribute_values

ITEM: dict[str, Any] = {
    "pk": {"S": "dep-1"},
    "sk": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\xffbinary"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"\x01"]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "m": {"M": {"inner": {"L": [{"S": "x"}, {"M": {}}, {"L": []}, {"N": "0"}, {"B": b"z"}]}, "e": {"S": ""}}},
    "l": {"L": [{"M": {"deep": {"M": {"deeper": {"NULL": True}}}}}, {"BOOL": False}]},
}


@pytest.fixture
def bodies() -> Iterator[list[str]]:
    """Every DynamoDB response body moto's serialiser gives back, in order."""
    from moto.core.serialize import ResponseSerializer

    seen: list[str] = []
    original = ResponseSerializer.serialize

    def recording(self: Any, result: Any) -> Any:
        response = original(self, result)
        if self.service_model.service_name == "dynamodb":
            seen.append(response["body"])
        return response

    ResponseSerializer.serialize = recording  # type: ignore[method-assign]
    yield seen
    ResponseSerializer.serialize = original  # type: ignore[method-assign]


def _reads(fast: bool, bodies: list[str]) -> tuple[list[str], list[Any]]:
    with mock_aws():
        undo = fast_attribute_values() if fast else (lambda: None)
        try:
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            ddb.create_table(
                TableName="t",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            ddb.put_item(TableName="t", Item={**ITEM, "sk": {"S": "a"}})
            ddb.put_item(TableName="t", Item={"pk": {"S": "dep-1"}, "sk": {"S": "b"}, "n": {"N": "1"}})
            del bodies[:]
            parsed = [
                ddb.get_item(TableName="t", Key={"pk": {"S": "dep-1"}, "sk": {"S": "a"}})["Item"],
                ddb.query(
                    TableName="t",
                    KeyConditionExpression="pk = :p",
                    ExpressionAttributeValues={":p": {"S": "dep-1"}},
                    Limit=1,
                ),
                ddb.scan(TableName="t", ProjectionExpression="pk, sk, m.inner, l[0]"),
                ddb.update_item(
                    TableName="t",
                    Key={"pk": {"S": "dep-1"}, "sk": {"S": "b"}},
                    UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                    ReturnValues="ALL_NEW",
                )["Attributes"],
            ]
            for entry in parsed:
                if isinstance(entry, dict):
                    entry.pop("ResponseMetadata", None)
            return list(bodies), parsed
        finally:
            undo()


def test_fast_attribute_values_write_what_moto_writes(bodies: list[str]) -> None:
    fast_bodies, fast_parsed = _reads(True, bodies)
    moto_bodies, moto_parsed = _reads(False, bodies)
    assert len(fast_bodies) == len(moto_bodies) == 4
    assert fast_bodies == moto_bodies
    assert fast_parsed == moto_parsed
    assert fast_parsed[0]["b"] == {"B": b"\x00\xffbinary"} and fast_parsed[0]["bs"] == {"BS": [b"x", b"\x01"]}
    assert "LastEvaluatedKey" in fast_parsed[1]  # the query's page is cut, its key written too


def test_what_is_not_plain_goes_to_moto() -> None:
    from deployguard_local.emulator.dynamodb import _attribute_value_json, _NotPlain

    for odd in ({"S": 1}, {"X": "y"}, {"M": {"k": {"S": object()}}}, ["S"], {"BOOL": "true"}):
        with pytest.raises(_NotPlain):
            _attribute_value_json(odd, lambda b: "")


def _table_reads(fast: bool) -> list[Any]:
    """Queries (table, index, backwards, paged, on a range), a scan, and the puts of items around the size limit."""
    from deployguard_local.emulator.dynamodb import faster_items

    with mock_aws():
        undo = faster_items() if fast else (lambda: None)
        try:
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            ddb.create_table(
                TableName="t",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gpk", "gsk")],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "gsi",
                        "KeySchema": [
                            {"AttributeName": "gpk", "KeyType": "HASH"},
                            {"AttributeName": "gsk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            for n in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6):  # not in key order
                item = {"pk": {"S": f"p{n % 3}"}, "sk": {"S": f"s{n:02d}"}, "m": {"M": {"n": {"N": str(n)}}}}
                if n % 2:
                    item |= {"gpk": {"S": "g"}, "gsk": {"S": f"{n % 4}"}}  # ties on the index's keys
                ddb.put_item(TableName="t", Item=item)
            out: list[Any] = []
            for extra in (
                {},
                {"ScanIndexForward": False},
                {"Limit": 2},
                {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "ExpressionAttributeValues": {
                    ":p": {"S": "p1"}, ":a": {"S": "s02"}, ":b": {"S": "s08"}}},
            ):  # fmt: skip
                query = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}}
                out.append(ddb.query(TableName="t", **(query | extra))["Items"])
                index = {"IndexName": "gsi", "KeyConditionExpression": "gpk = :g",
                         "ExpressionAttributeValues": {":g": {"S": "g"}}}  # fmt: skip
                if "Limit" in extra or "ScanIndexForward" in extra:
                    index |= extra
                page = ddb.query(TableName="t", **index)
                out.append((page["Items"], page.get("LastEvaluatedKey")))
            out.append(ddb.scan(TableName="t")["Items"])
            for size in (404_000, 406_000):  # the limit (405,000 bytes) counts names and values
                try:
                    ddb.put_item(TableName="t", Item={"pk": {"S": "big"}, "sk": {"S": "x"}, "v": {"S": "x" * size}})
                    out.append("stored")
                except ddb.exceptions.ClientError as exc:
                    out.append(str(exc))
            return out
        finally:
            undo()


def test_faster_items_answer_as_moto_answers() -> None:
    fast, moto = _table_reads(True), _table_reads(False)
    assert fast == moto
    assert fast[-2:] == ["stored", "An error occurred (ValidationException) when calling the PutItem operation: "
                         "Item size has exceeded the maximum allowed size"]  # fmt: skip
    assert [i["sk"]["S"] for i in fast[0]] == ["s01", "s04", "s07", "s10"]
