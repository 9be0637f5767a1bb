"""The insufficient-capacity cache: expiry, exponential backoff, cap, and forgetting."""

from __future__ import annotations

import pytest

from shared.adapters.capacity_cache import MAX_BACKOFF, DynamoCapacityCache, backoff_seconds
from shared.adapters.memory_state import MemoryCapacityCache
from shared.adapters.state_table import StateTable, StateTableError, key
from shared.domain.cluster_state import Market
from shared.services.ports import Offering

Cache = DynamoCapacityCache | MemoryCapacityCache
NOW = 1_700_000_000.0
TTL = 600.0
SPOT_C5 = Offering(instance_type="c5.4xlarge", zone="us-east-1a", market=Market.SPOT)
ON_DEMAND_C5 = Offering(instance_type="c5.4xlarge", zone="us-east-1a", market=Market.ON_DEMAND)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 600.0), (2, 1200.0), (3, 2400.0), (6, 19200.0), (7, MAX_BACKOFF), (50, MAX_BACKOFF)],
)
def test_backoff_doubles_per_failure_up_to_the_cap(failures: int, expected: float) -> None:
    # GIVEN a 10 min base  WHEN the n-th failure in a row happens  THEN it is skipped base × 2^(n-1), capped at 6 h
    assert backoff_seconds(TTL, failures) == expected


def test_a_failed_offering_is_unavailable_until_its_ttl(capacity_cache: Cache) -> None:
    # GIVEN a spot offering EC2 refused
    until = capacity_cache.record_failure(SPOT_C5, "InsufficientInstanceCapacity", NOW, TTL)

    # WHEN the cache is asked before, at and after the expiry
    # THEN only that offering (not its on-demand sibling) is skipped, and only until then
    assert until == NOW + TTL
    assert capacity_cache.unavailable(NOW) == {SPOT_C5}
    assert capacity_cache.unavailable(NOW + TTL - 1) == {SPOT_C5}
    assert capacity_cache.unavailable(NOW + TTL) == set()


def test_failing_again_after_the_backoff_doubles_it(capacity_cache: Cache) -> None:
    # GIVEN an offering that failed, was retried when its skip ran out, and failed again (three times)
    first = capacity_cache.record_failure(SPOT_C5, "ICE", NOW, TTL)
    second = capacity_cache.record_failure(SPOT_C5, "ICE", first, TTL)
    third = capacity_cache.record_failure(SPOT_C5, "ICE", second, TTL)

    # THEN each skip is twice the last
    assert (first - NOW, second - first, third - second) == (TTL, 2 * TTL, 4 * TTL)
    assert capacity_cache.unavailable(third - 1) == {SPOT_C5}


def test_failures_while_still_skipped_do_not_escalate(capacity_cache: Cache) -> None:
    # GIVEN an offering skipped until NOW + TTL
    until = capacity_cache.record_failure(SPOT_C5, "ICE", NOW, TTL)

    # WHEN two more launches of the same round fail moments later
    again = [capacity_cache.record_failure(SPOT_C5, "ICE", NOW + t, TTL) for t in (1, 2)]

    # THEN it is the same outage: the skip is not extended
    assert again == [until, until]


def test_backoff_is_capped(capacity_cache: Cache) -> None:
    # GIVEN an offering that keeps failing each time its skip runs out
    until = NOW
    for _ in range(12):
        previous, until = until, capacity_cache.record_failure(SPOT_C5, "ICE", until, TTL)

    # THEN no skip is longer than 6 h
    assert until - previous == MAX_BACKOFF


def test_a_failure_after_a_long_quiet_spell_starts_over(capacity_cache: Cache) -> None:
    # GIVEN an offering that failed three times in a row
    until = NOW
    for _ in range(3):
        until = capacity_cache.record_failure(SPOT_C5, "ICE", until, TTL)

    # WHEN it fails again long after (more than the cap past its last skip)
    later = until + MAX_BACKOFF + 1
    fresh = capacity_cache.record_failure(SPOT_C5, "ICE", later, TTL)

    # THEN the count was forgotten: the base TTL again
    assert fresh - later == TTL


def test_offerings_are_kept_apart(capacity_cache: Cache) -> None:
    # GIVEN failures of two offerings of one type (spot and on-demand)
    capacity_cache.record_failure(SPOT_C5, "ICE", NOW, TTL)
    capacity_cache.record_failure(ON_DEMAND_C5, "InsufficientInstanceCapacity", NOW, 60)

    # WHEN asked after the short one ran out  THEN only the long one remains
    assert capacity_cache.unavailable(NOW + 30) == {SPOT_C5, ON_DEMAND_C5}
    assert capacity_cache.unavailable(NOW + 61) == {SPOT_C5}


def test_items_carry_a_ttl_past_the_quiet_period(table: StateTable) -> None:
    # GIVEN a failure recorded in the table
    until = DynamoCapacityCache(table).record_failure(SPOT_C5, "ICE", NOW, TTL)

    # WHEN its item is read  THEN DynamoDB's TTL deletes it once the count would be forgotten anyway
    item = table.get(key("CAPACITY", "c5.4xlarge#us-east-1a#spot"))
    assert item is not None
    assert float(item["expires_at"]["N"]) == until + MAX_BACKOFF
    assert item["failures"]["N"] == "1"


def test_a_missing_table_is_named_in_the_error(missing_table: StateTable) -> None:
    # GIVEN a cache on a missing table  WHEN used  THEN the error names the table
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoCapacityCache(missing_table).unavailable(NOW)
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoCapacityCache(missing_table).record_failure(SPOT_C5, "ICE", NOW, TTL)
