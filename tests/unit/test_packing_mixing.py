"""The engine on continuous shapes: decision tables for mixing jobs on a node and in a lane, and properties
over shapes drawn continuously (nearly every job its own shape)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.jobs import Shape
from shared.domain.node_types import UNLIMITED, Offer
from shared.domain.packing import Plan, lane_depth, placements, plan, summarize_unplaced, why_unplaceable
from shared.domain.packing_lanes import LaneType
from shared.domain.packing_nodes import NodePacker
from shared.domain.resources import Resources
from tests.unit.plan_checker import check_feasible

GiB = 2**30


def offer(name: str, cores: float, memory_gib: float, price: float, *, spot: bool = False, disk_gib: float = 42,
          acc: int = 0, max_nodes: int = UNLIMITED) -> Offer:  # fmt: skip
    return Offer(
        name=name,
        instance_types=(name,),
        spot=spot,
        usable=Resources(cores=cores, memory=int(memory_gib * GiB), disk=int(disk_gib * GiB), accelerators=acc),
        hourly_price=price,
        bid=price if spot else None,
        max_nodes=max_nodes,
    )


def shape(cores: float, memory_gib: float, wall: float, *, disk_gib: float = 1, preemptible: bool = False,
          acc: int = 0) -> Shape:  # fmt: skip
    return Shape(
        resources=Resources(cores=cores, memory=int(memory_gib * GiB), disk=int(disk_gib * GiB), accelerators=acc),
        wall_time=wall,
        preemptible=preemptible,
    )


def feasible(result: Plan) -> int:
    placed = ((p.shape, p.offer, p.node, p.start) for p in placements(result))
    return check_feasible(placed, result.node_counts(), result.target_time)


NODE = offer("node", 16, 64, 1.0)
BIG = offer("big", 96, 368, 4.6)
SMALL = offer("small", 2, 3.3, 0.085)


# ---- decision tables: mixing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "demand", "offers", "target", "nodes"),
    [
        (
            "a memory-heavy and a core-heavy job share a node",
            {shape(2, 56, 7200): 1, shape(14, 4, 7200): 1},
            [NODE],
            1800,
            {"node": 1},
        ),
        (
            "short jobs run before a long one in the same lane",
            {shape(16, 8, 60): 20, shape(16, 8, 7200): 1},
            [NODE],
            1800,
            {"node": 1},
        ),
        (
            "unlike short jobs (one core apart, a few MiB apart) share lanes",
            {shape(c, 1 + i / 1024, 300): 1 for i, c in enumerate([1, 1, 2, 2, 3, 3, 4])},
            [offer("four", 4, 8, 1.0)],
            1800,
            {"four": 1},
        ),
        (
            "small jobs fill the room left beside a big job",
            {shape(64, 300, 7200): 1, **{shape(1, 0.5 + i / 100, 7200): 1 for i in range(32)}},
            [SMALL, BIG],
            1800,
            {"small": 0, "big": 1},
        ),
        (
            "each job on the type that is cheapest for it: disk-bound small jobs on small nodes",
            {shape(1, 1 + i / 100, 7200, disk_gib=20): 1 for i in range(8)},
            [SMALL, BIG],
            1800,
            {"small": 4, "big": 0},
        ),
        (
            "preemptible jobs fill room on an on-demand node before a spot node is bought",
            {shape(8, 8, 7200): 1, shape(8, 8.5, 7200, preemptible=True): 1},
            [offer("node", 16, 64, 0.3, spot=True), NODE],
            1800,
            {"node:spot": 0, "node": 1},
        ),
    ],
)
def test_mixing(case: str, demand: dict[Shape, int], offers: list[Offer], target: float, nodes: dict[str, int]) -> None:
    # GIVEN jobs of different shapes WHEN planned
    result = plan(demand, offers, target_time=target)
    # THEN they share nodes (or lanes) as the case says, and the plan replays as feasible
    assert result.node_counts() == nodes, case
    assert feasible(result) == sum(demand.values()), case


def test_a_lane_never_grows_beyond_every_node() -> None:
    # GIVEN a 3-core job and a 100 GiB-disk job, short, preemptible: no offered node holds both at once
    demand = {shape(3, 0.5, 1, preemptible=True): 1, shape(0.5, 0.5, 1, disk_gib=100, preemptible=True): 1}
    offers = [offer("narrow", 2, 4, 1.0, disk_gib=125), offer("wide", 4, 4, 1.0)]
    # WHEN planned THEN both are placed, each where it fits
    result = plan(demand, offers, target_time=60)
    assert feasible(result) == 2 and not result.deferred


def test_a_small_job_does_not_wait_because_it_shared_a_lane_with_a_capped_big_one() -> None:
    # GIVEN the only type that holds the big jobs is capped; the small job fits a free type too
    capped = offer("capped", 96, 8, 1.0, max_nodes=1)
    demand = {shape(40, 0.5, 30): 7, shape(0.5, 0.5, 1): 1}
    result = plan(demand, [offer("tiny", 2, 8, 1.0), capped], target_time=60)
    # THEN only big jobs wait (the capped node holds at most 6 of them), and the small one is placed
    assert [d.shape.resources.cores for d in result.deferred] == [40]
    assert feasible(result) + result.deferred[0].count == 8
    assert any(g.offer.name == "tiny" or any(r.shape.resources.cores == 0.5 for lane in g.load.lanes for r in lane.runs)
               for g in result.groups)  # fmt: skip


@pytest.mark.parametrize(
    ("wall", "target", "depth"),
    [
        (1800, 1800, 2),  # starts at 0 and at the target itself
        (600, 1800, 4),
        (601, 1800, 3),
        (3600, 1800, 1),  # longer than the target: one per lane
        (60, 0, 1),  # target 0: every job starts now
        (112.5, 1800, 17),  # 16 further starts: still exact
        (1, 1800, 1793),  # 1800 further starts, rounded down to four significant bits (1792)
        (0, 1800, 13 * 2**17 + 1),  # no wall time: 1 ms each, 1.8 million further starts rounded likewise
    ],
)
def test_lane_depth(wall: float, target: float, depth: int) -> None:
    assert lane_depth(wall, target) == depth


def test_reasons_stay_readable_with_thousands_of_shapes() -> None:
    # GIVEN 3,000 one-core jobs, each its own shape, and 500 jobs too big for any node
    demand = {shape(1, 0.25 + i / 1000, 600 + i % 7 * 60, disk_gib=1 + i % 29): 1 for i in range(3000)}
    demand.update({shape(8, 400 + i / 10, 600): 1 for i in range(500)})
    result = plan(demand, [SMALL, BIG], target_time=1800)
    # THEN the reasons are a few lines naming how many shapes, not one line per shape
    assert len(result.reasons) <= 6
    assert any("3000 shapes (1 cores" in r for r in result.reasons)
    lines = summarize_unplaced(result.unplaceable)
    assert lines == [
        "500 jobs in 500 shapes (8 cores, 400 GiB–449.9 GiB memory, 1 GiB disk, 10m, on-demand only): "
        "needs more memory than the largest offered node, big, has 368 GiB memory"
    ]


# ---- properties over continuous shapes ---------------------------------------------------------------

continuous = st.builds(
    Shape,
    resources=st.builds(
        Resources,
        cores=st.sampled_from([0.25, 0.5, 1, 1.5, 2, 3, 4, 8, 16, 48, 64, 100]),
        memory=st.integers(min_value=0, max_value=400 * GiB),
        disk=st.integers(min_value=0, max_value=200 * GiB),
        accelerators=st.sampled_from([0, 0, 0, 0, 1, 2]),
    ),
    wall_time=st.floats(min_value=0.5, max_value=10_000, allow_nan=False),
    preemptible=st.booleans(),
)
FLEET = [
    offer("c5.large", 2, 3.3, 0.085),
    offer("c5.4xlarge", 16, 30.2, 0.30, spot=True),
    offer("r5.2xlarge", 8, 60.9, 0.504),
    offer("m5.24xlarge", 96, 368.1, 4.608),
    offer("g4dn.xlarge", 4, 14.9, 0.526, disk_gib=116, acc=1),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    demand=st.dictionaries(continuous, st.integers(min_value=1, max_value=40), min_size=1, max_size=60),
    target=st.sampled_from([0, 60, 600, 1800, 3600]),
)
def test_continuous_shapes_are_planned_feasibly_and_completely(demand: dict[Shape, int], target: int) -> None:
    result = plan(demand, FLEET, target_time=target)
    # Feasible for the exact, unrounded jobs.
    placed = feasible(result)
    # Nothing that fits some node is left out (no maxNodes here), and nothing is counted twice.
    assert not result.deferred
    assert placed + sum(u.count for u in result.unplaceable) == sum(demand.values())
    # The unplaceable verdict is the exact one: no offer of the job's market holds its exact needs...
    unplaceable = {u.shape for u in result.unplaceable}
    for s in demand:
        fits = any(s.resources.fits_in(o.usable) and (s.preemptible or not o.spot) for o in FLEET)
        assert fits == (s not in unplaceable)
    # ...and each keeps its one-line reason.
    for u in result.unplaceable:
        assert u.reason == why_unplaceable(u.shape, FLEET) and "\n" not in u.reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    demand=st.dictionaries(continuous, st.integers(min_value=1, max_value=5), min_size=1, max_size=40),
    cap=st.integers(min_value=1, max_value=4),
)
def test_continuous_shapes_under_max_nodes_defer_only_when_every_fitting_type_is_full(
    demand: dict[Shape, int], cap: int
) -> None:
    offers = [Offer(**{**{f: getattr(o, f) for f in o.__slots__}, "max_nodes": cap}) for o in FLEET]
    result = plan(demand, offers, target_time=1800)
    counts = result.node_counts()
    placed = feasible(result)
    assert placed + sum(u.count for u in (*result.unplaceable, *result.deferred)) == sum(demand.values())
    assert all(counts[o.key] <= cap for o in offers)
    for d in result.deferred:
        fitting = [o for o in offers if d.shape.resources.fits_in(o.usable) and (d.shape.preemptible or not o.spot)]
        assert fitting and all(counts[o.key] == o.max_nodes for o in fitting)


def test_a_job_exactly_the_size_of_a_node_is_placed() -> None:
    # Rounding never changes an unplaceable verdict: a job of exactly a node's capacity fits it.
    exact = Shape(resources=FLEET[3].usable, wall_time=7200.0, preemptible=False)
    result = plan({exact: 3}, FLEET, target_time=1800)
    assert result.node_counts()["m5.24xlarge"] == 3 and not result.unplaceable
    assert feasible(result) == 3


def test_room_on_a_node_is_found_behind_many_nodes_left_alike() -> None:
    # GIVEN twenty open nodes left alike with memory but one core, and behind them (by the memory key) one
    # with room for a 2-core 12 GiB lane
    packer = NodePacker([offer("r", 8, 64, 1.0)], 1800)
    packer.key_dim = [1]  # searched by free memory
    packer.minimum = (1.0, GiB, 0, 0)
    for _ in range(20):
        packer._new_group(1, [1.0, 32 * GiB, 30 * GiB, 0], 0, [])
    roomy = packer._new_group(1, [6.0, 52 * GiB, 30 * GiB, 0], 0, [])
    lane: LaneType = (2.0, 12 * GiB, GiB, 0, False, ((shape(2, 12, 60), 1),))
    # WHEN the lane looks for room on open nodes
    placed = packer._fill(lane, 1, (4,))
    # THEN it finds the roomy node: nodes that fail alike count once against the bounded look past
    assert placed == 1 and roomy.lanes == [(lane, 1)]


def test_a_reason_counts_the_jobs_in_lanes_led_by_a_shape_not_only_that_shape() -> None:
    # GIVEN a 4-core job and a 2-core job of ten minutes each, which one lane runs back to back
    demand = {shape(4, 4, 600): 1, shape(2, 2, 600): 1}
    result = plan(demand, [SMALL, BIG], target_time=1800)
    # THEN the reason counts both jobs under the lane's leader, and says so (not "2 jobs of 4 cores")
    assert len(result.groups) == 1 and result.placed_jobs == 2
    (line,) = result.reasons
    assert line.startswith("2 jobs in lanes led by 4 cores, 4 GiB memory"), line
