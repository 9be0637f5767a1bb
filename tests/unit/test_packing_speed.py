"""The packing's speed tricks change nothing a plan promises: the bucket sort orders jobs exactly as the tuple
it replaces, ties of pass 2's price keys are broken as the full sort key did, and queues large enough to be
mixed in many windows (the path the small properties of test_packing_mixing.py never reach) are still planned
feasibly, completely and alike in any order."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.jobs import Shape
from shared.domain.packing import plan, why_unplaceable
from shared.domain.packing_groups import Keyed, break_ties
from shared.domain.packing_lanes import _neighbours
from shared.domain.packing_plan import Run
from shared.domain.resources import Resources
from tests.unit.test_packing_mixing import FLEET, feasible

GiB = 2**30
Row = tuple[float, int, int, float, Shape]
SHAPE = Shape(resources=Resources(cores=1, memory=1, disk=1), wall_time=60.0)


def reference_order(rows: list[Row], cells: int, scale: float, *, by_memory: bool) -> list[Row]:
    """The order before the buckets: (cores, cell of the less scarce, the scarcer, the less scarce, wall)."""

    def key(row: Row) -> tuple[float, int, int, int, float]:
        c, m, d, wall, _ = row
        first, second = (m, d) if by_memory else (d, m)
        return (c, min(cells - 1, int(second * scale)), first, second, wall)

    return sorted(rows, key=key, reverse=True)


@settings(max_examples=300, deadline=None)
@given(
    needs=st.lists(
        st.tuples(
            st.sampled_from([0.001, 0.25, 1.0, 1.5, 2.0, 8.0, 64.0, 100_000.0]),
            st.integers(min_value=0, max_value=2**62),
            st.integers(min_value=0, max_value=2**62),
        ),
        min_size=1,
        max_size=80,
        unique=True,  # rows of the mixing windows never share (cores, memory, disk)
    ),
    cells=st.integers(min_value=1, max_value=64),
    capacity=st.integers(min_value=1, max_value=2**63),
    by_memory=st.booleans(),
)
def test_the_bucket_sort_orders_rows_as_the_tuple_did(
    needs: list[tuple[float, int, int]], cells: int, capacity: int, *, by_memory: bool
) -> None:
    rows: list[Row] = [(c, m, d, 60.0 * (i % 7 + 1), SHAPE) for i, (c, m, d) in enumerate(needs)]
    scale = cells / capacity
    assert _neighbours(rows, cells, scale, by_memory=by_memory) == reference_order(
        rows, cells, scale, by_memory=by_memory
    )


def mixed_queue(jobs: int, seed: int) -> dict[Shape, int]:
    """Issue #10's "mixed" recipe, with a few jobs that fit no node and some that want an accelerator."""
    rng = random.Random(seed)
    demand: dict[Shape, int] = {}
    for _ in range(jobs):
        kind = rng.random()
        if kind < 0.55:
            cores, memory = rng.choice([0.5, 1]), rng.uniform(0.25, 3)
        elif kind < 0.8:
            cores, memory = rng.choice([2, 4, 8]), rng.uniform(2, 24)
        elif kind < 0.9:
            cores, memory = rng.choice([2, 4, 8]), rng.uniform(24, 56)
        elif kind < 0.97:
            cores, memory = rng.choice([16, 32, 48, 64]), rng.uniform(60, 300)
        else:
            cores, memory = rng.choice([(128, 8.0), (8, 500.0)])
        resources = Resources(
            cores=cores,
            memory=int(memory * GiB),
            disk=int(rng.uniform(0, 30) * GiB),
            accelerators=1 if rng.random() < 0.05 else 0,
        )
        wall = rng.choice([1.0, 60, 300, 600, 1200, 1800, 3600, 7200])
        s = Shape(resources=resources, wall_time=wall, preemptible=rng.random() < 0.5)
        demand[s] = demand.get(s, 0) + 1
    return demand


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), target=st.sampled_from([600, 1800]))
def test_a_queue_mixed_in_many_windows_is_planned_feasibly_and_completely(seed: int, target: int) -> None:
    # GIVEN 2,500 jobs, nearly each its own shape: dozens of mixing windows of 128 in several cells
    demand = mixed_queue(2500, seed)
    # WHEN planned
    result = plan(demand, FLEET, target_time=target)
    # THEN every placed job starts within the target on a node that holds it at every instant (the replaying
    # checker), every job that fits some node is placed, and each one that fits none keeps its reason
    placed = feasible(result)
    assert not result.deferred
    assert placed + sum(u.count for u in result.unplaceable) == sum(demand.values())
    for u in result.unplaceable:
        fits = any(u.shape.resources.fits_in(o.usable) and (u.shape.preemptible or not o.spot) for o in FLEET)
        assert not fits and u.reason == why_unplaceable(u.shape, FLEET)
    # AND the same demand in another order gives the same plan
    shuffled = list(demand.items())
    random.Random(seed).shuffle(shuffled)
    assert plan(dict(shuffled), FLEET, target_time=target) == result


@settings(max_examples=200, deadline=None)
@given(
    lanes=st.lists(
        st.tuples(
            st.sampled_from([-3.0, -1.5, -0.5, 0.0]),  # price keys, few, so that many tie
            st.sampled_from([1.0, 2.0]),
            st.integers(min_value=1, max_value=3),
            st.sampled_from([60.0, 600.0]),
            st.integers(min_value=1, max_value=3),
        ),
        max_size=40,
    )
)
def test_ties_are_broken_as_the_full_sort_key_did(lanes: list[tuple[float, float, int, float, int]]) -> None:
    # GIVEN lanes with their price keys, in the order pass 1 made them
    keyed: list[Keyed] = []
    for position, (key, cores, memory, wall, runs) in enumerate(lanes):
        shape = Shape(resources=Resources(cores=cores, memory=memory * GiB, disk=GiB), wall_time=wall)
        lane = (cores, memory * GiB, GiB, 0, False, tuple(Run(shape, 1) for _ in range(runs)))
        keyed.append((key, position, lane, 1, (False, 0, cores), (1,)))

    def full_key(item: Keyed) -> tuple[object, ...]:  # the sort key pass 2 used before
        key, position, lane = item[0], item[1], item[2]
        c, m, d, a, on_demand, runs = lane
        first = runs[0][0]
        tie = (c, m, d, a, on_demand, first.wall_time, first.resources.memory, first.resources.disk, len(runs))
        return (key, tie, position)

    # WHEN they are sorted by key and position and the ties broken
    placed = break_ties(sorted(keyed))
    # THEN the order is the full sort key's
    assert placed == [(lane, n, family, copies) for _, _, lane, n, family, copies in sorted(keyed, key=full_key)]
