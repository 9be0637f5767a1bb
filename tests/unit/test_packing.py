"""The engine: decision tables for the choices it must make, and properties every plan must have."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.jobs import Shape
from shared.domain.node_types import UNLIMITED, Offer
from shared.domain.packing import Plan, placements, plan, why_unplaceable
from shared.domain.packing_tail import TAIL_SHARE, tail_factor
from shared.domain.resources import Resources
from tests.unit.plan_checker import check_feasible

GiB = 2**30


def offer(name: str, cores: float, memory_gib: float, price: float, *, spot: bool = False, acc: int = 0,
          disk_gib: float = 42, min_nodes: int = 0, max_nodes: int = UNLIMITED) -> Offer:  # fmt: skip
    return Offer(
        name=name,
        instance_types=(name,),
        spot=spot,
        usable=Resources(cores=cores, memory=int(memory_gib * GiB), disk=int(disk_gib * GiB), accelerators=acc),
        hourly_price=price,
        bid=price if spot else None,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
    )


def shape(cores: float, memory_gib: float, wall: float, *, preemptible: bool = False, acc: int = 0,
          disk_gib: float = 1) -> Shape:  # fmt: skip
    return Shape(
        resources=Resources(cores=cores, memory=int(memory_gib * GiB), disk=int(disk_gib * GiB), accelerators=acc),
        wall_time=wall,
        preemptible=preemptible,
    )


C5_4XL = offer("c5.4xlarge", 16, 30, 0.68)
M5_2XL = offer("m5.2xlarge", 8, 30, 0.384)
R5_2XL = offer("r5.2xlarge", 8, 61, 0.504)
M5_24XL = offer("m5.24xlarge", 96, 368, 4.608)


def feasible(result: Plan) -> int:
    placed = ((p.shape, p.offer, p.node, p.start) for p in placements(result))
    return check_feasible(placed, result.node_counts(), result.target_time)


# ---- decision tables -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "wall", "target", "expected_nodes"),
    [
        (32, 1800, 1800, 4),  # 4 lanes of 4 cores × 2 starts (t=0 and t=1800) = 8 jobs per node
        (32, 3600, 1800, 8),  # longer than the target: one job per lane, 4 per node
        (33, 1800, 1800, 5),  # one job more opens one node more
        (4, 60, 0, 1),  # target 0: every job starts now, side by side
        (5, 60, 0, 2),
        (400, 60, 1800, 1),  # 4 lanes × 31 starts = 124 ... no: 4 × 31 = 124 < 400
    ][:5],
)
def test_target_time_lets_a_node_run_jobs_one_after_another(
    jobs: int, wall: float, target: float, expected_nodes: int
) -> None:
    # GIVEN jobs of 4 cores on 16-core nodes
    demand = {shape(4, 2, wall): jobs}
    # WHEN planned
    result = plan(demand, [C5_4XL], target_time=target)
    # THEN the node count follows from lanes × starts within the target
    assert result.node_counts() == {"c5.4xlarge": expected_nodes}
    assert feasible(result) == jobs


def test_many_short_jobs_share_one_node_over_time() -> None:
    # 4 lanes × (1800 // 60 + 1 = 31 starts) = 124 jobs per node
    result = plan({shape(4, 2, 60): 400}, [C5_4XL], target_time=1800)
    assert result.node_counts() == {"c5.4xlarge": math.ceil(400 / 124)}
    assert feasible(result) == 400


def test_jobs_longer_than_the_target_fill_identical_nodes_as_one_group() -> None:
    # GIVEN 100 jobs of one shape, each longer than the target: each its own lane, 4 lanes per node
    result = plan({shape(4, 2, 7200): 100}, [C5_4XL], target_time=1800)
    # THEN their 25 identical nodes are one group (their lanes were one item with a count, not 100 items)
    assert result.node_counts() == {"c5.4xlarge": 25}
    assert [(group.count, len(group.load.lanes)) for group in result.groups] == [(25, 4)]
    assert feasible(result) == 100


def test_cost_not_size_order_chooses_the_type() -> None:
    # GIVEN memory-heavy jobs: m5.2xlarge holds 1 (30 GiB), r5.2xlarge holds 2 (61 GiB) at 1.3× the price
    demand = {shape(2, 28, 3600): 20}
    # WHEN planned with the smaller, cheaper type listed first
    result = plan(demand, [M5_2XL, R5_2XL], target_time=1800)
    # THEN the cheaper fleet wins: 10 × r5 ($5.04/h) rather than 20 × m5 ($7.68/h)
    assert result.node_counts() == {"m5.2xlarge": 0, "r5.2xlarge": 10}
    assert result.hourly_cost == pytest.approx(5.04)
    assert any("r5.2xlarge" in reason for reason in result.reasons)


def test_a_small_tail_goes_to_a_small_node() -> None:
    # GIVEN 3 tiny jobs, a big cheap-per-core node and a small one
    result = plan({shape(1, 1, 600): 3}, [M5_24XL, M5_2XL], target_time=0)
    # THEN no 96-core node is bought for three 1-core jobs
    assert result.node_counts() == {"m5.24xlarge": 0, "m5.2xlarge": 1}


@pytest.mark.parametrize(("big_price", "expected"), [(4.608, {"r5.4xlarge": 5, "m5.24xlarge": 0}),
                                                     (3.0, {"r5.4xlarge": 0, "m5.24xlarge": 1})])  # fmt: skip
def test_a_node_holding_many_jobs_pays_for_its_tail(big_price: float, expected: dict[str, int]) -> None:
    # GIVEN five 10-core, 64 GiB jobs of an hour; an r5.4xlarge holds one ($1.008 a job), an m5.24xlarge all five
    r5 = offer("r5.4xlarge", 16, 122, 1.008, disk_gib=92)
    m5 = offer("m5.24xlarge", 96, 368, big_price, disk_gib=92)
    result = plan({shape(10, 64, 3600): 5}, [r5, m5], target_time=1800)
    # THEN at $0.92 a job the big node does not pay for running until the last of five ends (tail factor 1.39);
    # at $0.60 a job it does
    assert result.node_counts() == expected


def test_the_tail_factor_grows_with_the_jobs_a_node_holds_and_slower_than_them() -> None:
    factors = [tail_factor(n) for n in (1, 2, 5, 96, 4096, 1 << 30)]
    assert factors[0] == 1.0
    assert factors == sorted(factors)
    assert factors[2] == pytest.approx(1 + TAIL_SHARE * (1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 - 1))
    assert all(f < n for f, n in zip(factors[1:], (2, 5, 96, 4096, 1 << 30), strict=True))


def test_right_sizing_moves_a_leftover_to_a_cheaper_type() -> None:
    big = offer("big", 64, 256, 1.2, disk_gib=900)  # half the small one's price per job: worth its tail
    small = offer("small", 4, 16, 0.15)
    # 70 jobs of 1 core with target 0: one big node (64) + 6 left, which fit on 2 small ones... or 1 big.
    result = plan({shape(1, 1, 600): 70}, [big, small], target_time=0)
    assert feasible(result) == 70
    assert result.hourly_cost <= 1.2 + 2 * 0.15 + 1e-9


def test_non_preemptible_jobs_never_land_on_spot() -> None:
    spot = offer("c5.4xlarge", 16, 30, 0.2, spot=True)
    demand = {shape(4, 2, 600): 8, shape(4, 2, 600, preemptible=True): 8}
    result = plan(demand, [spot, C5_4XL], target_time=0)
    counts = result.node_counts()
    assert counts["c5.4xlarge"] == 2 and counts["c5.4xlarge:spot"] == 2
    assert feasible(result) == 16


def test_preemptible_jobs_fill_room_left_on_on_demand_nodes() -> None:
    spot = offer("c5.4xlarge", 16, 30, 0.2, spot=True)
    # 3 on-demand-only jobs leave one lane free on the on-demand node; one preemptible job takes it.
    result = plan({shape(4, 2, 600): 3, shape(4, 2, 600, preemptible=True): 1}, [spot, C5_4XL], target_time=0)
    assert result.node_counts() == {"c5.4xlarge:spot": 0, "c5.4xlarge": 1}


def test_a_job_too_big_for_every_node_is_reported_and_the_rest_planned() -> None:
    # GIVEN one job needing 512 cores among ordinary jobs
    demand = {shape(512, 4, 600): 1, shape(2, 2, 600): 10}
    # WHEN planned
    result = plan(demand, [M5_2XL, M5_24XL], target_time=1800)
    # THEN it is reported with the resource and the largest offer, and the rest is still planned
    assert [u.reason for u in result.unplaceable] == [
        "needs 512 cores; the largest offered node, m5.24xlarge, has 96 cores"
    ]
    assert feasible(result) == 10


@pytest.mark.parametrize(
    ("need", "offers", "reason"),
    [
        (
            shape(2, 400, 60),
            [M5_2XL, M5_24XL],
            "needs 400 GiB memory; the largest offered node, m5.24xlarge, has 368 GiB",
        ),
        (
            shape(2, 2, 60, acc=1),
            [M5_2XL],
            "needs 1 accelerator; the largest offered node, m5.2xlarge, has 0 accelerators",
        ),
        (
            shape(2, 2, 60, disk_gib=500),
            [M5_2XL],
            "needs 500 GiB disk; the largest offered node, m5.2xlarge, has 42 GiB",
        ),
        (
            shape(32, 2, 60),
            [offer("c5.9xlarge", 36, 70, 0.5, spot=True), M5_2XL],
            "needs 32 cores; the largest offered node on demand (the job is not preemptible), m5.2xlarge, has 8 cores",
        ),
        (shape(2, 2, 60), [offer("x", 16, 30, 0.1, spot=True)], "only spot node types are offered"),
        (
            shape(60, 300, 60),
            [offer("cpu", 64, 100, 1.0), offer("mem", 8, 400, 1.0)],
            "no offered node has all of that together",
        ),
    ],
)
def test_unplaceable_reasons_name_the_resource(need: Shape, offers: list[Offer], reason: str) -> None:
    assert reason in why_unplaceable(need, offers)
    assert plan({need: 2}, offers, target_time=60).unplaceable[0].count == 2


def test_min_nodes_are_kept_and_filled_first() -> None:
    cheap = offer("cheap", 8, 30, 0.1)
    pinned = offer("pinned", 8, 30, 0.5, min_nodes=2)
    result = plan({shape(4, 2, 600): 4}, [cheap, pinned], target_time=0)
    # The two pinned nodes run anyway, so the four jobs use them and nothing new is bought.
    assert result.node_counts() == {"cheap": 0, "pinned": 2}


def test_max_nodes_spill_to_the_next_type_then_defer() -> None:
    capped = offer("capped", 16, 30, 0.1, max_nodes=2)
    dear = offer("dear", 16, 30, 1.0, max_nodes=1)
    result = plan({shape(16, 2, 600): 5}, [capped, dear], target_time=0)
    assert result.node_counts() == {"capped": 2, "dear": 1}
    assert [(d.count, "maxNodes" in d.reason) for d in result.deferred] == [(2, True)]


def test_equal_inputs_give_equal_plans() -> None:
    demand = {shape(1, 2, 120, preemptible=True): 1000, shape(8, 30, 1800): 40, shape(2, 28, 1200): 60}
    offers = [offer("c", 16, 30, 0.68), offer("c:spot", 16, 30, 0.3, spot=True), R5_2XL, M5_2XL]
    assert plan(demand, offers, target_time=1800) == plan(dict(reversed(demand.items())), offers, target_time=1800)


# ---- properties ------------------------------------------------------------------------------------

shapes = st.builds(
    shape,
    cores=st.sampled_from([0.5, 1, 2, 3, 4, 8, 16, 40]),
    memory_gib=st.sampled_from([0.5, 1, 2, 4, 8, 16, 28, 60, 120]),
    wall=st.sampled_from([1, 30, 60, 300, 600, 1800, 3600, 7200]),
    preemptible=st.booleans(),
    acc=st.sampled_from([0, 0, 0, 1, 2]),
    disk_gib=st.sampled_from([1, 10, 40, 100]),
)
offers_strategy = st.lists(
    st.builds(
        offer,
        name=st.sampled_from(["a", "b", "c", "d", "e"]),
        cores=st.sampled_from([2, 4, 8, 16, 36, 96]),
        memory_gib=st.sampled_from([4, 8, 16, 30, 61, 122, 368]),
        price=st.floats(min_value=0.01, max_value=10, allow_nan=False),
        spot=st.booleans(),
        acc=st.sampled_from([0, 0, 1, 4]),
        disk_gib=st.sampled_from([42, 125, 900]),
        min_nodes=st.sampled_from([0, 0, 0, 1, 2]),
        max_nodes=st.sampled_from([UNLIMITED, UNLIMITED, 1, 3, 10]),
    ).filter(lambda o: o.min_nodes <= o.max_nodes),
    min_size=1,
    max_size=4,
    unique_by=lambda o: o.key,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    demand=st.dictionaries(shapes, st.integers(min_value=1, max_value=300), min_size=1, max_size=6),
    offers=offers_strategy,
    target=st.sampled_from([0, 60, 600, 1800, 3600]),
)
def test_every_plan_is_feasible_bounded_and_complete(
    demand: dict[Shape, int], offers: list[Offer], target: int
) -> None:
    result = plan(demand, offers, target_time=target)
    counts = result.node_counts()
    # Feasible: replaying every placement never exceeds a node and every job starts in time.
    placed = feasible(result)
    # Complete: each job is placed, unplaceable or deferred, exactly once.
    assert placed + sum(u.count for u in result.unplaceable) + sum(d.count for d in result.deferred) == sum(
        demand.values()
    )
    # Bounded: min/max never violated.
    for o in offers:
        assert o.min_nodes <= counts[o.key] <= o.max_nodes
    # Honest: unplaceable only when no offer of an allowed market fits the shape at all.
    for u in result.unplaceable:
        assert not any(u.shape.resources.fits_in(o.usable) and (u.shape.preemptible or not o.spot) for o in offers)
    # Deferred only when every offer that fits is at its maximum.
    for d in result.deferred:
        fitting = [o for o in offers if d.shape.resources.fits_in(o.usable) and (d.shape.preemptible or not o.spot)]
        assert fitting and all(counts[o.key] == o.max_nodes for o in fitting)
    # No node is bought for nothing beyond minNodes.
    empty_bought = sum(g.count for g in result.groups if g.load.jobs == 0)
    assert empty_bought <= sum(o.min_nodes for o in offers)


@settings(max_examples=100, deadline=None)
@given(
    demand=st.dictionaries(shapes, st.integers(min_value=1, max_value=50), min_size=1, max_size=4),
    offers=offers_strategy,
)
def test_cost_never_exceeds_one_cheapest_node_per_job(demand: dict[Shape, int], offers: list[Offer]) -> None:
    # A trivial upper bound: every job on its own cheapest fitting node (plus the minNodes floor).
    result = plan(demand, offers, target_time=0)
    if result.deferred or any(o.max_nodes < UNLIMITED for o in offers):
        return
    bound = sum(o.min_nodes * o.hourly_price for o in offers)
    for s, n in demand.items():
        prices = [o.hourly_price for o in offers if s.resources.fits_in(o.usable) and (s.preemptible or not o.spot)]
        if prices:
            bound += n * min(prices)
    assert result.hourly_cost <= bound + 1e-6
