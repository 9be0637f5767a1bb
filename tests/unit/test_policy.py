"""betaInertia, preemptibleCompensation and min/max: pure steps, previous state in, new state out."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState, clamp, compensate, round_half_up, smooth
from shared.domain.resources import Resources

GiB = 2**30


def offer(
    name: str, *, spot: bool = False, cores: float = 16, price: float = 0.68, lo: int = 0, hi: int = 100
) -> Offer:
    return Offer(
        name=name,
        instance_types=(name,),
        spot=spot,
        usable=Resources(cores=cores, memory=30 * GiB, disk=40 * GiB),
        hourly_price=price,
        bid=price if spot else None,
        min_nodes=lo,
        max_nodes=hi,
    )


def test_round_half_up_like_toil() -> None:
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.49)] == [1, 2, 3, 2]


def test_scale_up_is_immediate() -> None:
    # GIVEN the last round wanted 2 nodes  WHEN 20 are needed now  THEN 20, not Toil's smoothed 4
    counts, state = smooth({"c": 20}, ScalerState(smoothed=MappingProxyType({"c": 2.0})), beta_inertia=0.1)
    assert counts == {"c": 20}
    assert state.smoothed["c"] == 20.0


def test_scale_down_is_smoothed_and_the_state_carries_it() -> None:
    state = ScalerState(smoothed=MappingProxyType({"c": 20.0}))
    seen = []
    for _ in range(4):
        counts, state = smooth({"c": 0}, state, beta_inertia=0.5)
        seen.append(counts["c"])
    assert seen == [10, 5, 3, 1]  # 10, 5, 2.5 → 3, 1.25 → 1


def test_beta_zero_follows_the_estimate() -> None:
    counts, _ = smooth({"c": 3}, ScalerState(smoothed=MappingProxyType({"c": 9.0})), beta_inertia=0.0)
    assert counts == {"c": 3}


@given(
    previous=st.floats(min_value=0, max_value=1000),
    estimate=st.integers(min_value=0, max_value=1000),
    beta=st.floats(min_value=0, max_value=0.99),
)
def test_smoothing_never_asks_for_less_than_the_estimate(previous: float, estimate: int, beta: float) -> None:
    counts, state = smooth({"c": estimate}, ScalerState(smoothed=MappingProxyType({"c": previous})), beta)
    assert counts["c"] >= estimate
    assert min(previous, estimate) - 1e-6 <= state.smoothed["c"] <= max(previous, estimate) + 1e-6  # stored rounded


def test_compensation_adds_on_demand_for_missing_spot() -> None:
    # GIVEN last round wanted 10 spot c5 nodes and only 4 arrived
    offers = [offer("c5.4xlarge", spot=True, price=0.3), offer("c5.4xlarge")]
    _, state, _ = compensate({"c5.4xlarge:spot": 10}, offers, {"c5.4xlarge:spot": 4}, ScalerState(), 0.5)
    assert dict(state.spot_deficit) == {"c5.4xlarge:spot": 6}
    # WHEN the next round compensates at 0.5
    counts, state, reasons = compensate(
        {"c5.4xlarge:spot": 10, "c5.4xlarge": 1}, offers, {"c5.4xlarge:spot": 10}, state, 0.5
    )
    # THEN 3 on-demand nodes stand in, and the deficit is cleared because they all arrived this time
    assert counts == {"c5.4xlarge:spot": 10, "c5.4xlarge": 4}
    assert dict(state.spot_deficit) == {"c5.4xlarge:spot": 0}
    assert "6 spot c5.4xlarge:spot missing → 3 extra on-demand c5.4xlarge" in reasons[0]


def test_compensation_uses_a_bigger_on_demand_type_when_the_same_one_is_not_offered() -> None:
    offers = [offer("c5.4xlarge", spot=True, price=0.3), offer("m5.8xlarge", cores=32, price=1.5), offer("t3", cores=2)]
    counts, _, _ = compensate({}, offers, {}, ScalerState(spot_deficit=MappingProxyType({"c5.4xlarge:spot": 2})), 1.0)
    assert counts == {"m5.8xlarge": 2}


def test_no_compensation_by_default() -> None:
    offers = [offer("c5.4xlarge", spot=True), offer("c5.4xlarge")]
    counts, _, _ = compensate({}, offers, {}, ScalerState(spot_deficit=MappingProxyType({"c5.4xlarge:spot": 5})), 0.0)
    assert counts == {}


@pytest.mark.parametrize(("want", "held"), [(0, 2), (5, 5), (50, 10)])
def test_clamp_holds_min_and_max(want: int, held: int) -> None:
    counts, reasons = clamp({"c": want}, [offer("c", lo=2, hi=10)])
    assert counts == {"c": held}
    assert bool(reasons) == (want != held)


def test_a_long_decay_reaches_zero_instead_of_underflowing() -> None:
    # GIVEN an estimate that stays at zero for a thousand rounds
    state = ScalerState(smoothed=MappingProxyType({"c": 50.0}))
    for _ in range(1000):
        _, state = smooth({"c": 0}, state, beta_inertia=0.9)
    # THEN the stored value is exactly zero, not 1e-45 (a number DynamoDB refuses)
    assert state.smoothed["c"] == 0.0
