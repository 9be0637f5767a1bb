"""The insufficient-capacity cache (``CAPACITY``/``{type}#{zone}#{market}``), Karpenter style.

An offering EC2 refused is skipped until ``until``. A failure on the first try after a backoff ran out
doubles the next one: ``base_ttl × 2^(failures-1)``, capped at ``max_backoff`` (6 h). Failures while the
offering is still skipped (several launches of one round failing together) do not escalate. After
``max_backoff`` without failures past ``until`` the count is forgotten: the item's ``expires_at`` (the
table's TTL attribute) says when, and reads honour it before DynamoDB gets round to deleting the item.
"""

from __future__ import annotations

from shared.adapters.state_table import (
    StateTable,
    StateTableError,
    attr_names,
    get_float,
    get_int,
    key,
    n,
    need_str,
    s,
    ttl,
)
from shared.domain.cluster_state import Market
from shared.services.ports import Offering

CAPACITY_PARTITION = "CAPACITY"
MAX_BACKOFF = 6 * 3600.0
RACE_ROUNDS = 8


def backoff_seconds(base_ttl: float, failures: int, max_backoff: float = MAX_BACKOFF) -> float:
    """How long an offering is skipped after its ``failures``-th failure in a row."""
    return float(min(base_ttl * 2 ** max(0, failures - 1), max_backoff))


def next_failure(
    *,
    previous_failures: int,
    previous_until: float | None,
    previous_expires_at: float | None,
    now: float,
    base_ttl: float,
    max_backoff: float = MAX_BACKOFF,
) -> tuple[int, float]:
    """(failures, until) after one more failure, from what was stored (all None/0: nothing stored)."""
    remembered = previous_until is not None and previous_expires_at is not None and previous_expires_at > now
    if remembered and previous_until is not None and now < previous_until:
        return previous_failures, previous_until  # still skipped: the same outage, not a new try
    failures = previous_failures + 1 if remembered else 1
    return failures, now + backoff_seconds(base_ttl, failures, max_backoff)


def offering_sort_key(offering: Offering) -> str:
    return f"{offering.instance_type}#{offering.zone}#{offering.market}"


class DynamoCapacityCache:
    """``CapacityCache`` on the state table."""

    def __init__(self, table: StateTable, *, max_backoff: float = MAX_BACKOFF) -> None:
        self._table = table
        self._max_backoff = max_backoff

    def unavailable(self, now: float) -> set[Offering]:
        skipped: set[Offering] = set()
        for item in self._table.query(CAPACITY_PARTITION):
            until = get_float(item, "until")
            if until is not None and until > now:
                skipped.add(
                    Offering(
                        instance_type=need_str(item, "instance_type"),
                        zone=need_str(item, "zone"),
                        market=Market(need_str(item, "market")),
                    )
                )
        return skipped

    def record_failure(self, offering: Offering, reason: str, now: float, base_ttl: float) -> float:
        item_key = key(CAPACITY_PARTITION, offering_sort_key(offering))
        for _ in range(RACE_ROUNDS):
            item = self._table.get(item_key)
            stored_failures = 0 if item is None else get_int(item, "failures") or 0
            stored_until = None if item is None else get_float(item, "until")
            failures, until = next_failure(
                previous_failures=stored_failures,
                previous_until=stored_until,
                previous_expires_at=None if item is None else get_float(item, "expires_at"),
                now=now,
                base_ttl=base_ttl,
                max_backoff=self._max_backoff,
            )
            new_item = {
                **item_key,
                "instance_type": s(offering.instance_type),
                "zone": s(offering.zone),
                "market": s(offering.market),
                "failures": n(failures),
                "until": n(until),
                "reason": s(reason),
                "failed_at": n(now),
                "expires_at": n(ttl(until + self._max_backoff)),
            }
            if item is None:
                written = self._table.put(new_item, condition="attribute_not_exists(#pk)", names=attr_names("pk"))
            else:  # unchanged since we read it, or another writer's failure would be lost
                written = self._table.put(
                    new_item,
                    condition="#failures = :failures AND #until = :until",
                    names=attr_names("failures", "until"),
                    values={":failures": n(stored_failures), ":until": n(stored_until or 0.0)},
                )
            if written:
                return until
        raise StateTableError(
            f"could not record a capacity failure for {offering_sort_key(offering)} in table "
            f"{self._table.name!r}: other writers kept changing it"
        )
