"""The cluster's one DynamoDB table: the small typed client every store shares, and its errors.

The key design (which item holds what, and each access pattern) and the attribute-value helpers are in
``state_items``; they are re-exported here, so a store imports one module.

Hot keys: the ``DEMAND`` counters are written by every job transition. At Shoal's scale (hundreds of
transitions a second at most) that is far below a partition's 1,000 writes/s; transactions that touch
the same counter at once are cancelled with ``TransactionConflict`` and retried here with backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws, state_items
from shared.adapters.state_items import *  # noqa: F403 (re-exported, so that a store imports one module)
from shared.adapters.state_items import PK, SK, Item, StateTableError, s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

T = TypeVar("T")

__all__ = ["BATCH_GET_LIMIT", "BATCH_WRITE_LIMIT", "CONFLICT_RETRIES", "TRANSACTION_LIMIT"]
__all__ += ["StateTable", "TransactionCancelledError"]
__all__ += state_items.__all__

TRANSACTION_LIMIT = 100  # items in one TransactWriteItems
BATCH_GET_LIMIT = 100  # keys in one BatchGetItem
BATCH_WRITE_LIMIT = 25  # requests in one BatchWriteItem
CONFLICT_RETRIES = 6  # TransactionConflict: another transaction held one of our items


class TransactionCancelledError(StateTableError):
    """A transaction was cancelled; ``reasons`` holds one code per item ("None" for the items that were fine).

    ``items`` holds, per item, the item as it was when its condition failed, for the ops that asked for it
    (``return_old=True``), else None.
    """

    def __init__(self, message: str, reasons: Sequence[str], items: Sequence[Item | None] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)
        self.items = tuple(items) or (None,) * len(self.reasons)

    @property
    def condition_failed(self) -> bool:
        return "ConditionalCheckFailed" in self.reasons


# --- the table --------------------------------------------------------------------------------------


class StateTable:
    """The table name and a typed client, with the calls the stores make and errors that name the table."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        region: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not table_name:
            raise StateTableError("no state table name given; pass --table or set SHOAL_TABLE_NAME")
        self.name = table_name
        self.client: DynamoDBClient = client if client is not None else aws.client("dynamodb", region)
        self._sleep = sleep  # between retries of contended calls; tests pass a no-op

    # Reads -------------------------------------------------------------------------------------------

    def get(self, item_key: Item) -> Item | None:
        with self.errors("GetItem"):
            response = self.client.get_item(TableName=self.name, Key=item_key, ConsistentRead=True)
        return response.get("Item")

    def batch_get(self, keys: Sequence[Item], projection: Sequence[str] = ()) -> list[Item]:
        """Every item that exists among ``keys`` (any order), 100 keys a call, unprocessed keys asked again."""
        found: list[Item] = []
        names = {f"#a{i}": attr for i, attr in enumerate(dict.fromkeys([PK, SK, *projection]))}

        def ask(pending: list[Item]) -> list[Item]:
            response = self.client.batch_get_item(
                RequestItems={
                    self.name: {
                        "Keys": pending,
                        "ConsistentRead": True,
                        "ProjectionExpression": ", ".join(names),
                        "ExpressionAttributeNames": names,
                    }
                }
            )
            found.extend(response.get("Responses", {}).get(self.name, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self.name)
            return list(unprocessed["Keys"]) if unprocessed else []

        for start in range(0, len(keys), BATCH_GET_LIMIT):
            self._until_processed("BatchGetItem", "keys of", list(keys[start : start + BATCH_GET_LIMIT]), ask)
        return found

    def query(
        self, pk: str, *, sk_prefix: str | None = None, newest_first: bool = False, limit: int | None = None
    ) -> list[Item]:
        """Items of one partition in sort-key order (every page, or the first ``limit``)."""
        condition = "#pk = :pk"
        values: dict[str, AttributeValueTypeDef] = {":pk": s(pk)}
        names = {"#pk": PK}
        if sk_prefix is not None:
            condition += " AND begins_with(#sk, :prefix)"
            values[":prefix"] = s(sk_prefix)
            names["#sk"] = SK
        items: list[Item] = []
        start_key: Item | None = None
        while True:
            kwargs: dict[str, Any] = {}
            if start_key is not None:
                kwargs["ExclusiveStartKey"] = start_key
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            with self.errors("Query"):
                response = self.client.query(
                    TableName=self.name,
                    KeyConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ConsistentRead=True,
                    ScanIndexForward=not newest_first,
                    **kwargs,
                )
            items.extend(response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if start_key is None or (limit is not None and len(items) >= limit):
                return items

    # Writes ------------------------------------------------------------------------------------------

    def put(
        self,
        item: Item,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> bool:
        """Write ``item``; False (nothing written) if ``condition`` does not hold."""
        kwargs = _expression_kwargs(condition, names, values)
        return self._if_condition_holds(
            "PutItem", lambda: self.client.put_item(TableName=self.name, Item=item, **kwargs)
        )

    def batch_write(self, puts: Sequence[Item] = (), deletes: Sequence[Item] = ()) -> None:
        """Unconditional puts of ``puts`` and deletes of the keys ``deletes``, 25 a call, unprocessed items
        sent again with backoff (the launch of hundreds of nodes is a few calls, not hundreds)."""
        requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in puts]
        requests += [{"DeleteRequest": {"Key": item_key}} for item_key in deletes]

        def send(pending: list[WriteRequestTypeDef]) -> list[WriteRequestTypeDef]:
            response = self.client.batch_write_item(RequestItems={self.name: pending})
            # The output and input shapes of a write request are the same JSON; the stubs type them apart.
            return cast("list[WriteRequestTypeDef]", response.get("UnprocessedItems", {}).get(self.name, []))

        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._until_processed("BatchWriteItem", "writes to", requests[start : start + BATCH_WRITE_LIMIT], send)

    def _until_processed(self, action: str, what: str, pending: list[T], send: Callable[[list[T]], list[T]]) -> None:
        """Send ``pending`` until DynamoDB leaves nothing unprocessed (with backoff); name what it kept."""
        for attempt in range(CONFLICT_RETRIES + 1):
            if not pending:
                return
            if attempt:
                self._backoff(attempt)
            with self.errors(action):
                pending = send(pending)
        if pending:
            raise StateTableError(
                f"DynamoDB kept {len(pending)} {what} table {self.name!r} unprocessed; "
                "the table is throttled, try again shortly"
            )

    def update(
        self,
        item_key: Item,
        expression: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> Item | None:
        """Apply ``expression``; the item as it is now, or None if ``condition`` does not hold."""
        kwargs = _expression_kwargs(condition, names, values)
        now: Item = {}

        def call() -> None:
            response = self.client.update_item(
                TableName=self.name, Key=item_key, UpdateExpression=expression, ReturnValues="ALL_NEW", **kwargs
            )
            now.update(response.get("Attributes", {}))

        return now if self._if_condition_holds("UpdateItem", call) else None

    def delete(
        self,
        item_key: Item,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> bool:
        kwargs = _expression_kwargs(condition, names, values)
        return self._if_condition_holds(
            "DeleteItem", lambda: self.client.delete_item(TableName=self.name, Key=item_key, **kwargs)
        )

    def _if_condition_holds(self, action: str, call: Callable[[], object]) -> bool:
        """Make a conditional write; False if its condition did not hold (nothing was written)."""
        with self.errors(action):
            try:
                call()
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def transact(self, items: Sequence[TransactWriteItemTypeDef]) -> None:
        """All of ``items`` or none; a ``TransactionConflict`` alone is retried with backoff.

        Raises ``TransactionCancelledError`` (check ``condition_failed``) if a condition does not hold.
        """
        if len(items) > TRANSACTION_LIMIT:
            raise ValueError(f"a transaction holds at most {TRANSACTION_LIMIT} items, got {len(items)}")
        for attempt in range(CONFLICT_RETRIES + 1):
            if attempt:
                self._backoff(attempt)
            cancelled = self._transact_once(items)
            if cancelled is None:
                return
            reasons = cancelled.reasons
            conflict_only = "TransactionConflict" in reasons and set(reasons) <= {"None", "TransactionConflict"}
            if not conflict_only or attempt == CONFLICT_RETRIES:
                raise cancelled

    def _transact_once(self, items: Sequence[TransactWriteItemTypeDef]) -> TransactionCancelledError | None:
        """None if written, else why not."""
        with self.errors("TransactWriteItems"):
            try:
                self.client.transact_write_items(TransactItems=list(items))
            except ClientError as error:
                if _code(error) != "TransactionCanceledException":
                    raise
                response: Mapping[str, Any] = error.response
                found = response.get("CancellationReasons", [])
                return self._cancelled([str(r.get("Code", "None")) for r in found], [r.get("Item") for r in found])
        return None

    def _backoff(self, attempt: int) -> None:
        """Full-jitter exponential backoff (only reached on real contention or throttling)."""
        self._sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))

    def _cancelled(self, reasons: Sequence[str], items: Sequence[Item | None]) -> TransactionCancelledError:
        if "ResourceNotFoundException" in reasons:  # moto reports a missing table per item
            return TransactionCancelledError(self._missing(), reasons)
        failed = sorted({r for r in reasons if r != "None"})
        return TransactionCancelledError(
            f"DynamoDB transaction on table {self.name!r} was cancelled ({', '.join(failed) or 'no reason given'})",
            reasons,
            items,
        )

    def update_item_op(
        self,
        item_key: Item,
        expression: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
        return_old: bool = False,
    ) -> TransactWriteItemTypeDef:
        """One Update for ``transact``; ``return_old``: a failed condition reports the item as it was."""
        update = {"TableName": self.name, "Key": item_key, "UpdateExpression": expression}
        update |= _expression_kwargs(condition, names, values)
        if return_old:
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return cast("TransactWriteItemTypeDef", {"Update": update})

    def condition_check_op(
        self,
        item_key: Item,
        condition: str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> TransactWriteItemTypeDef:
        """One ConditionCheck for ``transact``: the transaction fails unless ``condition`` holds for that item."""
        check = {"TableName": self.name, "Key": item_key, **_expression_kwargs(condition, names, values)}
        return cast("TransactWriteItemTypeDef", {"ConditionCheck": check})

    def put_item_op(
        self,
        item: Item,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> TransactWriteItemTypeDef:
        """One Put for ``transact``."""
        put = {"TableName": self.name, "Item": item, **_expression_kwargs(condition, names, values)}
        return cast("TransactWriteItemTypeDef", {"Put": put})

    # Errors ------------------------------------------------------------------------------------------

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn botocore's errors into ``StateTableError`` naming the table (conditions are handled by callers)."""
        try:
            yield
        except ClientError as error:
            code = _code(error)
            if code == "ResourceNotFoundException":
                raise StateTableError(self._missing()) from error
            message = error.response.get("Error", {}).get("Message", "")
            raise StateTableError(f"DynamoDB {action} on table {self.name!r} failed: {code}: {message}") from error
        except BotoCoreError as error:  # no credentials, no network, ...
            raise StateTableError(f"DynamoDB {action} on table {self.name!r} failed: {error}") from error

    def _missing(self) -> str:
        region = self.client.meta.region_name
        return (
            f"DynamoDB table {self.name!r} does not exist in {region}; "
            "deploy the cluster's stack or check --table / SHOAL_TABLE_NAME and the region"
        )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _expression_kwargs(
    condition: str | None, names: Mapping[str, str] | None, values: Mapping[str, AttributeValueTypeDef] | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if condition is not None:
        kwargs["ConditionExpression"] = condition
    if names:
        kwargs["ExpressionAttributeNames"] = dict(names)
    if values:
        kwargs["ExpressionAttributeValues"] = dict(values)
    return kwargs
