"""The state table's items: its key design, and the attribute values every store writes and reads back.

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
``DEMAND``                 ``SHAPE#{shape_key}``       ``queued``, ``running``, ``enqueued`` (jobs ever
                           [``#{job name}``]           enqueued) per requested shape and job name: changed
                                                       in the same TransactWriteItems as every job status
                                                       change, so a round reads demand with one Query,
                                                       O(shapes × names)
``MARKS``                  ``SHAPE#{shape_key}``       ``checkpoints``: the rounds' (time, enqueued) of a
                           [``#{job name}``]           queued counter (``shared.domain.demand.queue_marks``);
                                                       written by the round only, never on the hot path
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

The client that reads and writes these items is ``state_table.StateTable`` (which re-exports these names,
so a store imports one module).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.services.ports import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]
else:
    Item = dict

__all__ = [
    "PK",
    "SK",
    "TTL_ATTRIBUTE",
    "Item",
    "StateTableError",
    "attr_names",
    "b",
    "demand_key",
    "demand_of_sort_key",
    "demand_sort_key",
    "get_bool",
    "get_float",
    "get_int",
    "get_number_map",
    "get_str",
    "get_string_map",
    "job_key",
    "key",
    "make_table",
    "n",
    "need_str",
    "number_map",
    "s",
    "started_on_partition",
    "string_map",
    "ttl",
]

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expires_at"


class StateTableError(StoreError):
    """A DynamoDB call on the state table failed; the message names the table and what to check."""


# --- keys -------------------------------------------------------------------------------------------


def job_key(job_id: str) -> Item:
    return key(f"JOB#{job_id}", "JOB")


def started_on_partition(node_id: str) -> str:
    """The partition of a node's start markers: one item per job started there (``DynamoJobStore.start_job``)."""
    return f"STARTED#{node_id}"


def demand_sort_key(shape_key: str, name: str | None) -> str:
    """A counter's sort key: the requested shape, and the job name if it has one (a shape key has no ``#``)."""
    return f"SHAPE#{shape_key}" if name is None else f"SHAPE#{shape_key}#{name}"


def demand_of_sort_key(sort_key: str) -> tuple[str, str | None]:
    """The shape key and job name a counter's sort key names."""
    shape_key, _, name = sort_key.removeprefix("SHAPE#").partition("#")
    return shape_key, (name if name else None)


def demand_key(shape_key: str, name: str | None = None) -> Item:
    return key("DEMAND", demand_sort_key(shape_key, name))


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


# --- the table -------------------------------------------------------------------------------------


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
