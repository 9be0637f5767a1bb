"""The cluster's STATUS item in the state table (``CLUSTER``/``STATUS``).

Written by the LaunchCluster/TeardownCluster state machines (``cdk/lifecycle.py``, DynamoDB UpdateItem
tasks) and by ``DynamoClusterStore.set_status``; read by ``DynamoClusterStore.get_status``. The time
of the last change is ISO 8601 text in UTC because a state machine can only write the timestamps of
its context (``$$.State.EnteredTime``) and cannot do arithmetic on them; the store writes the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

PARTITION = "CLUSTER"
SORT_KEY = "STATUS"

# Attribute names of the item.
STATUS = "status"  # a ClusterStatus value
REASON = "reason"  # free text: the execution's name, or the failure's cause
UPDATED_AT = "updated_at"  # ISO 8601 UTC text, e.g. 2026-11-24T12:00:00.123Z


class TimestampError(ValueError):
    """An ``updated_at`` that is not ISO 8601 text with a time zone."""


def format_timestamp(epoch: float) -> str:
    """``epoch`` seconds as Step Functions writes its timestamps (UTC, milliseconds, ``Z``)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 text with a zone (``Z`` or ``+00:00``), as either writer writes it."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimestampError(f"{UPDATED_AT} {text!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise TimestampError(f"{UPDATED_AT} {text!r} has no time zone")
    return moment.timestamp()
