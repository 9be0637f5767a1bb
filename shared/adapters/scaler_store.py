"""What one scaling round leaves for the next (``SCALER``/``STATE``) and the round lease (``SCALER``/``LEASE``).

Both are conditional writes. The state carries a version: a round saves only if nobody saved since it
loaded, so two overlapping rounds cannot both move the smoothed estimates. The lease is taken when it
is absent, expired, or already held by the caller (renewal); its ``expires_at`` doubles as the table's
TTL attribute, so DynamoDB may also delete a long-expired lease, which changes nothing.
"""

from __future__ import annotations

from types import MappingProxyType

from shared.adapters.state_table import (
    StateTable,
    attr_names,
    get_int,
    get_number_map,
    key,
    n,
    number_map,
    s,
)
from shared.domain.policy import ScalerState

STATE_KEY = key("SCALER", "STATE")
LEASE_KEY = key("SCALER", "LEASE")


class DynamoScalerStateStore:
    """``ScalerStateStore`` on the state table; version 0 means "never saved"."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def load(self) -> tuple[ScalerState, int]:
        item = self._table.get(STATE_KEY)
        if item is None:
            return ScalerState(), 0
        state = ScalerState(
            smoothed=MappingProxyType(get_number_map(item, "smoothed")),
            spot_deficit=MappingProxyType({k: int(v) for k, v in get_number_map(item, "spot_deficit").items()}),
        )
        return state, get_int(item, "version") or 0

    def save(self, state: ScalerState, version: int) -> bool:
        condition = "attribute_not_exists(#pk)" if version == 0 else "#version = :version"
        values = {} if version == 0 else {":version": n(version)}
        return self._table.put(
            {
                **STATE_KEY,
                "smoothed": number_map(state.smoothed),
                "spot_deficit": number_map(state.spot_deficit),
                "version": n(version + 1),
            },
            condition=condition,
            names=attr_names("pk") if version == 0 else attr_names("version"),
            values=values,
        )


class DynamoLease:
    """``Lease`` on the state table: at most one unexpired owner at a time."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def acquire(self, owner: str, now: float, ttl: float) -> bool:
        return self._table.put(
            {**LEASE_KEY, "owner": s(owner), "expires_at": n(now + ttl), "acquired_at": n(now)},
            condition="attribute_not_exists(#pk) OR #expires_at < :now OR #owner = :owner",
            names=attr_names("pk", "expires_at", "owner"),
            values={":now": n(now), ":owner": s(owner)},
        )

    def release(self, owner: str) -> None:
        """Give the lease up if ``owner`` still holds it (someone who took it over after expiry keeps it)."""
        self._table.delete(
            LEASE_KEY, condition="#owner = :owner", names=attr_names("owner"), values={":owner": s(owner)}
        )
