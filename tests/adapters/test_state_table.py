"""The shared table client: schema, contention retries, throttled batches, and errors that name the table.

Moto cannot produce transaction conflicts, unprocessed keys or a missing credential chain on demand;
those cases use a botocore Stubber (or no credentials at all), everything else runs on moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from shared.adapters import aws
from shared.adapters.state_table import (
    CONFLICT_RETRIES,
    PK,
    SK,
    TTL_ATTRIBUTE,
    StateTable,
    StateTableError,
    TransactionCancelledError,
    job_key,
    key,
    s,
)
from tests.adapters.conftest import REGION, TABLE_NAME


def test_make_table_creates_the_schema_the_stack_defines(table: StateTable, dynamodb: Any) -> None:
    # GIVEN the table made for tests and the local cloud
    # WHEN it is described  THEN pk/sk are string keys and expires_at is the TTL attribute
    description = dynamodb.describe_table(TableName=TABLE_NAME)["Table"]
    assert description["KeySchema"] == [
        {"AttributeName": PK, "KeyType": "HASH"},
        {"AttributeName": SK, "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]} == {PK: "S", SK: "S"}
    ttl = dynamodb.describe_time_to_live(TableName=TABLE_NAME)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)


def test_query_reads_every_page(table: StateTable) -> None:
    # GIVEN a partition bigger than one 1 MB page
    for i in range(30):
        table.put({**key("NODE", f"i-{i:03d}"), "blob": s("x" * 50_000)})

    # WHEN it is queried, whole and limited  THEN every item comes back, in order
    items = table.query("NODE")
    assert [item[SK]["S"] for item in items] == [f"i-{i:03d}" for i in range(30)]
    assert len(table.query("NODE", limit=5)) == 5
    assert [item[SK]["S"] for item in table.query("NODE", newest_first=True, limit=2)] == ["i-029", "i-028"]


def test_a_failed_condition_is_reported_per_item(table: StateTable) -> None:
    # GIVEN an item that exists
    table.put({**job_key("a"), "status": s("QUEUED")})

    # WHEN a transaction requires it not to  THEN it is cancelled with the failed condition named
    with pytest.raises(TransactionCancelledError) as raised:
        table.transact(
            [
                table.put_item_op({**job_key("b")}),
                table.put_item_op({**job_key("a")}, condition="attribute_not_exists(#pk)", names={"#pk": PK}),
            ]
        )
    assert raised.value.condition_failed
    assert raised.value.reasons[1] == "ConditionalCheckFailed"
    assert table.get(job_key("b")) is None  # all or nothing


def test_transactions_hold_at_most_100_items(table: StateTable) -> None:
    # GIVEN 101 writes  WHEN put in one transaction  THEN refused before any call
    with pytest.raises(ValueError, match="at most 100 items"):
        table.transact([table.put_item_op({**key("X", str(i))}) for i in range(101)])


# --- what moto cannot produce ------------------------------------------------------------------------


@pytest.fixture
def stubbed(aws_credentials: None) -> Iterator[tuple[StateTable, Stubber, list[float]]]:
    client = aws.client("dynamodb", REGION)
    sleeps: list[float] = []
    with Stubber(client) as stubber:
        yield StateTable(TABLE_NAME, client=client, sleep=sleeps.append), stubber, sleeps


def _conflict(stubber: Stubber) -> None:
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled, please refer cancellation reasons for specific reasons",
        modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
    )


def test_a_transaction_conflict_is_retried(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN DynamoDB reports a conflict with another transaction twice, then takes the write
    table, stubber, sleeps = stubbed
    _conflict(stubber)
    _conflict(stubber)
    stubber.add_response("transact_write_items", {})

    # WHEN a transaction is written  THEN it succeeds after two backoffs
    table.transact([table.put_item_op({**job_key("a")}), table.put_item_op({**job_key("b")})])
    stubber.assert_no_pending_responses()
    assert len(sleeps) == 2


def test_a_lasting_conflict_is_reported(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN every attempt conflicts
    table, stubber, sleeps = stubbed
    for _ in range(CONFLICT_RETRIES + 1):
        _conflict(stubber)

    # WHEN a transaction is written  THEN after the retries the error says why, naming the table
    with pytest.raises(TransactionCancelledError, match=r"'shoal-test-state' was cancelled \(TransactionConflict\)"):
        table.transact([table.put_item_op({**job_key("a")}), table.put_item_op({**job_key("b")})])
    assert len(sleeps) == CONFLICT_RETRIES


def test_unprocessed_keys_are_asked_again(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN a throttled BatchGetItem that leaves one key unprocessed, then answers it
    table, stubber, _ = stubbed
    a, b = job_key("a"), job_key("b")
    stubber.add_response(
        "batch_get_item",
        {"Responses": {TABLE_NAME: [dict(a)]}, "UnprocessedKeys": {TABLE_NAME: {"Keys": [b]}}},
    )
    stubber.add_response("batch_get_item", {"Responses": {TABLE_NAME: [dict(b)]}, "UnprocessedKeys": {}})

    # WHEN both are read  THEN both come back
    assert sorted(item[PK]["S"] for item in table.batch_get([a, b])) == ["JOB#a", "JOB#b"]


def test_keys_left_unprocessed_are_reported(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN a table so throttled that a key stays unprocessed
    table, stubber, _ = stubbed
    for _ in range(CONFLICT_RETRIES + 1):
        stubber.add_response(
            "batch_get_item", {"Responses": {}, "UnprocessedKeys": {TABLE_NAME: {"Keys": [job_key("a")]}}}
        )

    # WHEN it is read  THEN the error says the table is throttled
    with pytest.raises(StateTableError, match=r"kept 1 keys of table 'shoal-test-state' unprocessed.*throttled"):
        table.batch_get([job_key("a")])


def test_unprocessed_writes_are_sent_again(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN a throttled BatchWriteItem that leaves one put unprocessed, then takes it
    table, stubber, sleeps = stubbed
    a, b = job_key("a"), job_key("b")
    stubber.add_response(
        "batch_write_item",
        {"UnprocessedItems": {TABLE_NAME: [{"PutRequest": {"Item": dict(b)}}]}},
        {"RequestItems": {TABLE_NAME: [{"PutRequest": {"Item": a}}, {"PutRequest": {"Item": b}}]}},
    )
    stubber.add_response(
        "batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE_NAME: [{"PutRequest": {"Item": b}}]}}
    )
    # WHEN both are written  THEN the second call carries only the unprocessed one, after a pause
    table.batch_write(puts=[a, b])
    stubber.assert_no_pending_responses()
    assert len(sleeps) == 1


def test_writes_left_unprocessed_are_reported(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN a table so throttled that a delete stays unprocessed
    table, stubber, _ = stubbed
    for _ in range(CONFLICT_RETRIES + 1):
        stubber.add_response(
            "batch_write_item", {"UnprocessedItems": {TABLE_NAME: [{"DeleteRequest": {"Key": job_key("a")}}]}}
        )
    # WHEN it is written  THEN the error says the table is throttled
    with pytest.raises(StateTableError, match=r"kept 1 writes to table 'shoal-test-state' unprocessed.*throttled"):
        table.batch_write(deletes=[job_key("a")])


def test_other_service_errors_name_the_table_and_the_code(stubbed: tuple[StateTable, Stubber, list[float]]) -> None:
    # GIVEN DynamoDB refuses a call for lack of permission
    table, stubber, _ = stubbed
    stubber.add_client_error("get_item", service_error_code="AccessDeniedException", service_message="not allowed")

    # WHEN an item is read  THEN the error names the call, the table and the code
    with pytest.raises(StateTableError, match="GetItem on table 'shoal-test-state' failed: AccessDeniedException"):
        table.get(job_key("a"))


def test_a_network_failure_names_the_table(table: StateTable) -> None:
    # GIVEN DynamoDB cannot be reached (the connection fails before any answer)
    def no_network(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")

    table.client.meta.events.register_first("before-send.dynamodb", no_network)

    # WHEN an item is read  THEN the error names the call, the table and the cause
    with pytest.raises(StateTableError, match="GetItem on table 'shoal-test-state' failed: Could not connect"):
        table.get(job_key("a"))


def test_a_table_needs_a_name() -> None:
    # GIVEN no table name  WHEN the client is built  THEN the error says how to give one
    with pytest.raises(StateTableError, match="pass --table or set SHOAL_TABLE_NAME"):
        StateTable("")
