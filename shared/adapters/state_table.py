"""The cluster's one DynamoDB table: its key design, and the small typed client every store shares.

One table per cluster (so no cluster name in any key); partition key ``pk`` and sort key ``sk``, both
strings; ``expires_at`` (epoch seconds) is the table's TTL attribute. Each access pattern is one
GetItem or one Query of a single partition:

========================== ==========================  ======================================================
pk                         sk                          holds (access pattern)
========================== ==========================  ======================================================
``JOB#{job id}``           ``JOB``                     status, attempts, node, timestamps, exit code, output
                                                       tail, reason, ``job`` (Job.to_dict() as JSON), ``shape``
                                                       (its demand key), ``batch`` (its recording batch)
``SUBMISSION``             ``{batch id}``              ``pending``: ids of one recording transaction whose
                                                       messages are not yet confirmed in the queue
``DEMAND``                 ``SHAPE#{shape_key}``       ``queued``, ``running``: changed in the same
                                                       TransactWriteItems as every job status change, so a
                                                       round reads demand with one Query, O(shapes)
``NODE``                   ``{instance id}``           one node record; the fleet is one Query
``SCALER``                 ``STATE``                   smoothed estimates, spot deficit, ``version``
                                                       (saved only if the version is unchanged)
``SCALER``                 ``LEASE``                   ``owner``, ``expires_at``: the round lease (taken if
                                                       absent, expired, or already ours)
``CAPACITY``               ``{type}#{zone}#{market}``  ``until``, ``failures``, reason; ``expires_at`` (TTL)
                                                       forgets the failure count after a quiet period
``DECISION``               ``{epoch ms, 15 digits}#    one round's decision (JSON); newest first with a
                           {round id}``                backwards Query; TTL 7 days
``CLUSTER``                ``SETTINGS`` / ``STATUS``   cluster settings (JSON) / lifecycle status and reason
``CLUSTER``                ``DEMAND_EVENT``            ``sent_at``: the "demand changed" debounce
``RUNTIME``                ``{job name}``              ``count``, ``total_seconds``: learned runtimes
``STARTED#{instance id}``  ``{job id}``                a start on that node, written in the start's own
                                                       transaction (TTL 30 days): a lost node's jobs are
                                                       found with one Query, also those it never reported
``FEED#{feed}``            ``{job id}#START|END``      a submitter's completion feed: each start and end of
                                                       its jobs, written in the job's own transaction, read
                                                       with one Query and deleted once read (``job_feed``)
``IDEMPOTENCY#{function}`` ``{hashed event id}``       Powertools idempotency records of the handlers
                                                       (``control_plane.idempotency_store``), TTL
========================== ==========================  ======================================================

Hot keys: the ``DEMAND`` counters are written by every job transition. At Shoal's scale (hundreds of
transitions a second at most) that is far below a partition's 1,000 writes/s; transactions that touch
the same counter at once are cancelled with ``TransactionConflict`` and retried here with backoff.

Numbers are written as DynamoDB ``N`` strings and read back as ``float``/``int``; attribute values
are built by hand (``s``, ``n``, ...) so no ``Decimal`` leaks out of this package.

One module on purpose (over 400 lines): the key design above and the one client that every store shares
are read together.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.services.ports import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        PutTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
        WriteRequestTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]
else:
    Item = dict

T = TypeVar("T")

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expires_at"

TRANSACTION_LIMIT = 100  # items in one TransactWriteItems
BATCH_GET_LIMIT = 100  # keys in one BatchGetItem
BATCH_WRITE_LIMIT = 25  # requests in one BatchWriteItem
CONFLICT_RETRIES = 6  # TransactionConflict: another transaction held one of our items


class StateTableError(StoreError):
    """A DynamoDB call on the state table failed; the message names the table and what to check."""


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


# --- keys -------------------------------------------------------------------------------------------


def job_key(job_id: str) -> Item:
    return key(f"JOB#{job_id}", "JOB")


def demand_key(shape_key: str) -> Item:
    return key("DEMAND", f"SHAPE#{shape_key}")


def key(pk: str, sk: str) -> Item:
    return {PK: {"S": pk}, SK: {"S": sk}}


def attr_names(*attributes: str) -> dict[str, str]:
    """``ExpressionAttributeNames`` for ``#name`` placeholders (many of our names are reserved words)."""
    return {f"#{a}": a for a in attributes}


def ttl(epoch_seconds: float) -> int:
    """A TTL value: whole epoch seconds, rounded up so an item never expires early."""
    return math.ceil(epoch_seconds)


# --- attribute values -------------------------------------------------------------------------------


def s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n(value: float) -> AttributeValueTypeDef:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot store {value!r} in DynamoDB")
    return {"N": repr(value) if isinstance(value, float) else str(int(value))}


def b(value: bool) -> AttributeValueTypeDef:
    return {"BOOL": value}


def number_map(values: Mapping[str, float]) -> AttributeValueTypeDef:
    return {"M": {k: n(v) for k, v in values.items()}}


def string_map(values: Mapping[str, str]) -> AttributeValueTypeDef:
    return {"M": {k: s(v) for k, v in values.items()}}


def get_str(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None or "S" not in value else str(value["S"])


def need_str(item: Mapping[str, Any], name: str) -> str:
    value = get_str(item, name)
    if value is None:
        raise StateTableError(
            f"state item {_describe(item)} has no string attribute {name!r}; was it written by Shoal?"
        )
    return value


def get_float(item: Mapping[str, Any], name: str) -> float | None:
    value = item.get(name)
    return None if value is None or "N" not in value else float(value["N"])


def get_int(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None or "N" not in value else int(float(value["N"]))


def get_bool(item: Mapping[str, Any], name: str) -> bool:
    value = item.get(name)
    return bool(value.get("BOOL", False)) if value is not None else False


def get_number_map(item: Mapping[str, Any], name: str) -> dict[str, float]:
    value = item.get(name)
    if value is None or "M" not in value:
        return {}
    return {k: float(v["N"]) for k, v in value["M"].items()}


def get_string_map(item: Mapping[str, Any], name: str) -> dict[str, str]:
    value = item.get(name)
    if value is None or "M" not in value:
        return {}
    return {k: str(v["S"]) for k, v in value["M"].items()}


def _describe(item: Mapping[str, Any]) -> str:
    return f"{get_str(item, PK)}/{get_str(item, SK)}"


# --- the table --------------------------------------------------------------------------------------


def make_table(client: DynamoDBClient, name: str) -> None:
    """Create the state table as the stack defines it (pk/sk strings, on-demand, TTL on ``expires_at``).

    For tests and the local cloud; the CDK stack creates the real one.
    """
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


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
        update: UpdateTypeDef = {"TableName": self.name, "Key": item_key, "UpdateExpression": expression}
        if condition is not None:
            update["ConditionExpression"] = condition
        if return_old:
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names:
            update["ExpressionAttributeNames"] = dict(names)
        if values:
            update["ExpressionAttributeValues"] = dict(values)
        return {"Update": update}

    def condition_check_op(
        self,
        item_key: Item,
        condition: str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> TransactWriteItemTypeDef:
        """One ConditionCheck for ``transact``: the transaction fails unless ``condition`` holds for that item."""
        check: dict[str, object] = {"TableName": self.name, "Key": item_key, "ConditionExpression": condition}
        if names:
            check["ExpressionAttributeNames"] = dict(names)
        if values:
            check["ExpressionAttributeValues"] = dict(values)
        return {"ConditionCheck": check}  # type: ignore[typeddict-item]

    def put_item_op(
        self,
        item: Item,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, AttributeValueTypeDef] | None = None,
    ) -> TransactWriteItemTypeDef:
        """One Put for ``transact``."""
        put: PutTypeDef = {"TableName": self.name, "Item": item}
        if condition is not None:
            put["ConditionExpression"] = condition
        if names:
            put["ExpressionAttributeNames"] = dict(names)
        if values:
            put["ExpressionAttributeValues"] = dict(values)
        return {"Put": put}

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
