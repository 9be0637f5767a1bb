"""The scaler's saved state (versioned, conditional) and the round lease (one unexpired owner)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from shared.adapters.memory_state import MemoryLease, MemoryScalerStateStore
from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore
from shared.adapters.state_table import StateTable, StateTableError
from shared.domain.policy import ScalerState

StateStore = DynamoScalerStateStore | MemoryScalerStateStore
LeaseStore = DynamoLease | MemoryLease
NOW = 1_700_000_000.0


def state(smoothed: float, deficit: int) -> ScalerState:
    return ScalerState(
        smoothed=MappingProxyType({"c5.4xlarge": smoothed, "r5.2xlarge/r5a.2xlarge:spot": 0.25}),
        spot_deficit=MappingProxyType({"r5.2xlarge/r5a.2xlarge:spot": deficit}),
    )


def test_load_before_any_save_is_empty_version_zero(scaler_store: StateStore) -> None:
    # GIVEN a new cluster  WHEN the first round loads  THEN it starts from nothing
    assert scaler_store.load() == (ScalerState(), 0)


def test_save_then_load_round_trips_and_bumps_the_version(scaler_store: StateStore) -> None:
    # GIVEN a first round's state
    first = state(3.5, 2)

    # WHEN it is saved and the next round loads
    assert scaler_store.save(first, 0)
    loaded, version = scaler_store.load()

    # THEN the next round sees it, at version 1
    assert version == 1
    assert dict(loaded.smoothed) == dict(first.smoothed)
    assert dict(loaded.spot_deficit) == dict(first.spot_deficit)


def test_two_rounds_from_one_version_save_once(scaler_store: StateStore) -> None:
    # GIVEN two overlapping rounds that both loaded version 0
    _, version_a = scaler_store.load()
    _, version_b = scaler_store.load()

    # WHEN both save
    saved_a = scaler_store.save(state(1.0, 0), version_a)
    saved_b = scaler_store.save(state(9.0, 9), version_b)

    # THEN only the first wins, and a stale version stays refused later too
    assert (saved_a, saved_b) == (True, False)
    assert scaler_store.load()[0].smoothed["c5.4xlarge"] == 1.0
    assert not scaler_store.save(state(2.0, 0), 0)
    assert scaler_store.save(state(2.0, 0), 1)
    assert scaler_store.load()[1] == 2


def test_lease_is_held_by_one_owner_until_it_expires(lease: LeaseStore) -> None:
    # GIVEN round A holds a 60 s lease
    assert lease.acquire("round-a", NOW, 60)

    # WHEN round B tries during it, at its last instant, and after it
    during = lease.acquire("round-b", NOW + 30, 60)
    at_expiry = lease.acquire("round-b", NOW + 60, 60)
    after = lease.acquire("round-b", NOW + 61, 60)

    # THEN B only gets it once A's lease has run out; A then cannot take it back
    assert (during, at_expiry, after) == (False, False, True)
    assert not lease.acquire("round-a", NOW + 62, 60)


def test_lease_owner_can_renew(lease: LeaseStore) -> None:
    # GIVEN A holds the lease  WHEN A renews it before expiry  THEN it is extended
    assert lease.acquire("round-a", NOW, 60)
    assert lease.acquire("round-a", NOW + 50, 60)
    assert not lease.acquire("round-b", NOW + 100, 60)
    assert lease.acquire("round-b", NOW + 111, 60)


def test_release_only_by_the_owner(lease: LeaseStore) -> None:
    # GIVEN A holds the lease
    assert lease.acquire("round-a", NOW, 60)

    # WHEN B releases it (nothing happens), then A does
    lease.release("round-b")
    blocked = lease.acquire("round-c", NOW + 1, 60)
    lease.release("round-a")
    lease.release("round-a")  # twice is harmless

    # THEN the lease is free only after its owner released it
    assert not blocked
    assert lease.acquire("round-c", NOW + 2, 60)


def test_two_owners_racing_for_a_free_lease_one_wins(lease: LeaseStore) -> None:
    # GIVEN a free lease  WHEN two rounds ask at the same instant  THEN exactly one gets it
    results = [lease.acquire(owner, NOW, 60) for owner in ("round-a", "round-b")]
    assert results == [True, False]


def test_a_missing_table_is_named_in_the_error(missing_table: StateTable) -> None:
    # GIVEN the stores on a missing table  WHEN used  THEN the error names the table
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoScalerStateStore(missing_table).load()
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoLease(missing_table).acquire("round-a", NOW, 60)
