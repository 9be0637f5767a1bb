"""Dollar guardrails in the pure decision (shared/domain/budget.py): maxHourlyCost, budget, leases."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.budget import (
    Spend,
    accrue,
    after_round,
    budget_exhausted,
    fleet_rate,
    lease_clock,
    lease_expired,
    offer_ceiling,
)
from shared.domain.cluster_state import NodeState
from shared.domain.decision import Drain, Terminate
from shared.domain.guardrail_settings import guardrail_problem
from shared.domain.policy import ScalerState
from shared.domain.scaling import decide, node_hourly_price, offers_for
from shared.domain.settings import ClusterSettings
from tests.unit.test_scaling_decide import (
    BIG_MEM,
    C5,
    M5,
    NOW,
    R5,
    SMALL_OD,
    SMALL_SPOT,
    SPOT,
    apply,
    cluster,
    ids,
    launched,
    node,
    run,
    shape,
    snap,
)


def wanted_cost(decision: object, region: str = "us-west-2") -> float:
    offers = {o.key: o for o in decision.plan.offers}  # type: ignore[attr-defined]
    return sum(offer_ceiling(offers[k], region) * n for k, n in decision.wanted.items() if n)  # type: ignore[attr-defined]


# ---- maxHourlyCost ---------------------------------------------------------------------------------


def test_without_a_cap_the_plan_is_launched_whole() -> None:
    decision = run(snap({SMALL_OD: 100}))
    assert not any("capped" in r for r in decision.reasons)
    assert launched(decision) == {k: v for k, v in decision.plan.node_counts().items() if v}


@pytest.mark.parametrize("cap", [0.7, 1.5, 2.0, 3.0])
def test_the_cap_bounds_what_is_launched_and_the_reason_names_it(cap: float) -> None:
    # GIVEN 100 on-demand jobs whose plan costs more than the cap
    uncapped = run(snap({SMALL_OD: 100}))
    assert wanted_cost(uncapped) > cap
    # WHEN the cluster has maxHourlyCost = cap
    decision = run(snap({SMALL_OD: 100}), cluster(max_hourly_cost=cap))
    # THEN the launched fleet costs at most the cap, and the reason names the cap and the jobs left waiting
    assert 0 < wanted_cost(decision) <= cap + 1e-9
    (reason,) = [r for r in decision.reasons if r.startswith(f"capped at ${cap:g}/h: ")]
    waiting = int(reason.split(": ")[1].split(" jobs wait")[0])
    assert waiting > 0


def test_the_cap_keeps_the_cheapest_nodes_per_job_first() -> None:
    # GIVEN 100 small jobs (eight per m5.2xlarge) and 3 big-memory ones (one per r5.2xlarge, dearer per job)
    big = shape(4, 50, wall=3600)  # one per r5.2xlarge (its memory) for longer than the target time
    demand = {SMALL_OD: 100, big: 3}
    uncapped = run(snap(demand))
    assert uncapped.wanted[R5] == 3
    # WHEN the cap leaves room for a little more than the small jobs' nodes
    small_only = wanted_cost(run(snap({SMALL_OD: 100})))
    decision = run(snap(demand), cluster(max_hourly_cost=round(small_only + 0.3, 2)))
    # THEN the small jobs' nodes are kept and the dear-per-job r5 nodes are the ones left out
    assert decision.wanted[R5] < 3
    assert sum(decision.wanted[k] for k in (C5, M5)) == sum(uncapped.wanted[k] for k in (C5, M5))


def test_spot_counts_at_its_bid_not_at_the_live_price() -> None:
    # GIVEN spot at a live $0.20 (bid $0.42) and a cap of $0.86: two nodes at the bid and their root volumes
    settings_ = cluster(max_hourly_cost=0.86, node_types="c5.4xlarge/c5a.4xlarge:0.42")
    offers = offers_for(settings_, {"c5.4xlarge": 0.2, "c5a.4xlarge": 0.2})
    decision = decide(snap({SMALL_SPOT: 200}), settings_, offers, ScalerState(), set(), now=NOW)
    # THEN two are launched, not four
    assert launched(decision) == {SPOT: 2}


def test_busy_nodes_above_the_cap_stay_and_nothing_launches() -> None:
    # GIVEN three busy c5.4xlarge ($2.04/h, $2.06 with their root volumes) and a queue, with a cap of $1.50/h
    busy = [node(C5, jobs=4, heartbeat=NOW) for _ in range(3)]
    decision = run(snap({SMALL_OD: 60}, busy, running={SMALL_OD: 12}), cluster(max_hourly_cost=1.5))
    # THEN nothing launches, nothing busy drains, and the reason says the fixed nodes already cost more
    assert not launched(decision)
    assert not ids(decision, Drain)
    assert any("already cost $2.06/h" in r for r in decision.reasons)


def test_stopped_nodes_root_volumes_count_against_the_cap() -> None:
    # GIVEN three busy c5.4xlarge ($2.06/h with their root volumes), a queue, and a cap of $2.08/h
    busy = [node(C5, jobs=4, heartbeat=NOW) for _ in range(3)]
    settings_ = cluster(max_hourly_cost=2.08)
    alone = run(snap({SMALL_OD: 60}, busy, running={SMALL_OD: 12}), settings_)
    assert not any("already cost" in r for r in alone.reasons)
    # WHEN ten stopped warm-pool r5 nodes also keep their 50 GiB volumes ($0.0055/h each, which EBS bills)
    pool = [node(R5, NodeState.STOPPED) for _ in range(10)]
    decision = run(snap({SMALL_OD: 60}, busy + pool, running={SMALL_OD: 12}), settings_)
    # THEN the fleet that cannot be removed already costs more than the cap, and nothing launches
    assert not launched(decision)
    assert any("stopped ones' root volumes) already cost $2.11/h" in r for r in decision.reasons)


def test_a_capped_fleet_is_a_fixed_point() -> None:
    settings_ = cluster(max_hourly_cost=2.0)
    first = run(snap({SMALL_OD: 100}), settings_)
    again = run(apply(snap({SMALL_OD: 100}), first), settings_)
    assert not launched(again) and not ids(again, Drain)


@settings(max_examples=40, deadline=None)
@given(
    small=st.integers(0, 300),
    big=st.integers(0, 10),
    spot=st.integers(0, 200),
    cap=st.floats(0.1, 20.0, allow_nan=False),
)
def test_the_wanted_fleet_never_costs_more_than_the_cap(small: int, big: int, spot: int, cap: float) -> None:
    demand = {SMALL_OD: small, BIG_MEM: big, SMALL_SPOT: spot}
    decision = run(snap({s: n for s, n in demand.items() if n}), cluster(max_hourly_cost=cap))
    assert wanted_cost(decision) <= cap + 1e-9


# ---- budget ----------------------------------------------------------------------------------------


def test_below_the_budget_nothing_changes() -> None:
    decision = run(snap({SMALL_OD: 100}), cluster(budget=100.0))
    assert launched(decision) == launched(run(snap({SMALL_OD: 100})))


def test_an_exhausted_budget_launches_nothing_and_drains_every_node() -> None:
    # GIVEN $100 spent of a $100 budget, a queue, two busy nodes, an idle one and a static one
    busy = [node(C5, jobs=4, heartbeat=NOW), node(M5, jobs=2, heartbeat=NOW)]
    idle = node(C5, heartbeat=NOW)
    static = node(M5, static=True, heartbeat=NOW)
    nodes = [*busy, idle, static]
    snapshot = snap({SMALL_OD: 50}, nodes, running={SMALL_OD: 6})
    from dataclasses import replace

    decision = run(replace(snapshot, spent=100.0), cluster(budget=100.0))
    # THEN no launch; busy and idle nodes drain (jobs finish, no new work), the static one stays
    assert not launched(decision)
    assert ids(decision, Drain) == {n.instance_id for n in [*busy, idle]}
    assert any(r.startswith("budget $100 exhausted: $100.00 spent") for r in decision.reasons)
    # AND once the drained nodes report idle, they are terminated and nothing replaces them
    after = apply(replace(snapshot, spent=100.0), decision)
    idle_now = tuple(
        replace(n, running_jobs={}, drain_acknowledged=True) if n.state is NodeState.DRAINING else n
        for n in after.nodes
    )
    final = run(replace(after, nodes=idle_now), cluster(budget=100.0))
    assert ids(final, Terminate) == {n.instance_id for n in [*busy, idle]}
    assert not launched(final)


# ---- the ledger and leases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spend", "now", "expected"),
    [
        (Spend(), 1000.0, 0.0),  # never accrued
        (Spend(spent=5.0, at=0.0, rate=3.6), 3600.0, 8.6),  # an hour at $3.60/h
        (Spend(spent=5.0, at=3600.0, rate=3.6), 3600.0, 5.0),  # the same instant again adds nothing
        (Spend(spent=5.0, at=3600.0, rate=3.6), 0.0, 5.0),  # a clock behind the ledger adds nothing
    ],
)
def test_accrual(spend: Spend, now: float, expected: float) -> None:
    assert accrue(spend, now) == pytest.approx(expected)


def test_after_round_starts_the_clocks_once_and_tracks_busy_time() -> None:
    first = after_round(Spend(), now=100.0, rate=2.0, busy=False)
    assert (first.started_at, first.busy_at, first.at, first.rate) == (100.0, 100.0, 100.0, 2.0)
    later = after_round(first, now=1900.0, rate=0.0, busy=True)
    assert later.started_at == 100.0 and later.busy_at == 1900.0 and later.spent == pytest.approx(1.0)
    behind = after_round(later, now=1000.0, rate=5.0, busy=True)  # a round whose clock is behind the ledger
    assert behind.at == 1900.0 and behind.spent == pytest.approx(1.0)
    idle = after_round(later, now=5000.0, rate=0.0, busy=False)
    assert idle.busy_at == 1900.0 and idle.spent == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("overrides", "spend", "now", "reason"),
    [
        ({}, Spend(started_at=0.0, busy_at=0.0), 10**9, None),  # no lease set
        ({"lease": 3600.0}, Spend(started_at=0.0, busy_at=0.0), 3599.0, None),
        ({"lease": 3600.0}, Spend(started_at=0.0, busy_at=3599.0), 3600.0, "lease expired"),
        ({"lease": 3600.0}, Spend(started_at=0.0, lease_expires_at=7200.0), 3600.0, None),  # renewed
        ({"idle_lease": 7200.0}, Spend(started_at=0.0, busy_at=1000.0), 8199.0, None),
        ({"idle_lease": 7200.0}, Spend(started_at=0.0, busy_at=1000.0), 8200.0, "idle lease expired"),
        ({"lease": 600.0}, Spend(), 10**9, None),  # the first round has not run: the lease has not started
    ],
)
def test_leases(overrides: dict[str, float], spend: Spend, now: float, reason: str | None) -> None:
    got = lease_expired(cluster(**overrides), spend, now)
    assert (got if got is None else got.split(":")[0]) == reason


def test_the_lease_clock_shows_the_first_to_run_out() -> None:
    clock = lease_clock(cluster(lease=43200.0, idle_lease=7200.0), Spend(started_at=0.0, busy_at=1000.0))
    assert (clock.expires_at, clock.idle_expires_at, clock.first()) == (43200.0, 8200.0, 8200.0)


def test_fleet_rate_prices_on_demand_nodes_at_their_type_and_spot_at_the_bid() -> None:
    offers = {o.key: o for o in offers_for(cluster(), {"c5.4xlarge": 0.2, "c5a.4xlarge": 0.2})}
    nodes = [node(C5), node(SPOT), node(C5, instance_type="c5a.4xlarge")]
    # each with its 50 GiB root volume
    assert fleet_rate(nodes, offers, "us-west-2") == pytest.approx(0.68 + 0.42 + 0.616 + 3 * 50 * 0.08 / 730)


def test_fleet_rate_prices_each_nodes_own_root_volume_and_a_stopped_nodes_alone() -> None:
    offers = {o.key: o for o in offers_for(cluster(), {"c5.4xlarge": 0.2, "c5a.4xlarge": 0.2})}
    grown = 500 * 2**30  # a round grew these nodes' volumes from the cluster's 50 GiB
    nodes = [
        replace(node(SPOT), node_storage=grown),
        replace(node(C5), node_storage=grown),
        replace(node(C5), state=NodeState.STOPPED),
        replace(node(C5), state=NodeState.STOPPED, node_storage=grown),
    ]
    # THEN a grown node pays for its own volume (at its bid or type's price beside it); a stopped one for its volume
    gib_hour = 0.08 / 730
    expected = 0.42 + 500 * gib_hour + 0.68 + 500 * gib_hour + 50 * gib_hour + 500 * gib_hour
    assert fleet_rate(nodes, offers, "us-west-2") == pytest.approx(expected)


def test_a_nodes_hourly_price_has_its_root_volume_beside_its_instance() -> None:
    # GIVEN root volumes of 100 GiB ($0.011/h at gp3's $0.08 per GiB-month)
    settings_ = cluster(node_storage=100 * 2**30)
    offers = {o.key: o for o in offers_for(settings_, {"c5.4xlarge": 0.2, "c5a.4xlarge": 0.2})}
    volume = 100 * 0.08 / 730
    # THEN an on-demand node costs its own type's price and the volume, a spot one its offer's (the live price)
    assert node_hourly_price(node(C5), offers[C5], "us-west-2") == pytest.approx(0.68 + volume)
    assert node_hourly_price(node(SPOT), offers[SPOT], "us-west-2") == pytest.approx(0.2 + volume)


def test_a_node_launched_with_a_larger_root_volume_is_priced_with_that_volume() -> None:
    # GIVEN offers with 100 GiB root volumes, and nodes launched with 300 GiB ($0.033/h at $0.08 per GiB-month)
    settings_ = cluster(node_storage=100 * 2**30)
    offers = {o.key: o for o in offers_for(settings_, {"c5.4xlarge": 0.2, "c5a.4xlarge": 0.2})}
    volume = 300 * 0.08 / 730
    # THEN its own volume replaces the offer's, on demand and on spot alike
    assert node_hourly_price(replace(node(C5), node_storage=300 * 2**30), offers[C5], "us-west-2") == pytest.approx(
        0.68 + volume
    )
    spot = replace(node(SPOT), node_storage=300 * 2**30)
    assert node_hourly_price(spot, offers[SPOT], "us-west-2") == pytest.approx(0.2 + volume)


def test_a_cap_under_what_the_min_nodes_volumes_add_is_refused() -> None:
    # GIVEN two c5.4xlarge kept by minNodes: $1.36/h of instances, $1.37 with their 50 GiB root volumes
    def problem(cap: float) -> str | None:
        values = {"name": "test", "node_types": "c5.4xlarge", "region": "us-west-2", "min_nodes": (2,)}
        return guardrail_problem(ClusterSettings(**values, max_hourly_cost=cap))  # type: ignore[arg-type]

    # THEN a cap between the two is refused with the whole floor named, and one above it is not
    assert problem(1.365) == (
        "max_hourly_cost (-c maxHourlyCost) $1.365/h is below what min_nodes and static_nodes alone cost "
        "($1.37/h); raise it or lower them"
    )
    assert problem(1.38) is None


def test_budget_exhausted_at_exactly_the_budget() -> None:
    assert budget_exhausted(cluster(budget=10.0), 10.0)
    assert not budget_exhausted(cluster(budget=10.0), 9.99)
    assert not budget_exhausted(cluster(), 10**9)
