"""Bundled lanes (``shared.domain.packing_bundles``) keep every promise of a plan: feasible for the exact jobs,
complete, the same unplaceable verdicts, deferral only when every fitting type is full, alike in any order.

Real queues reach the bundled path only above ``ROUND_FROM`` mixed jobs in a market; here the threshold is
lowered so that small generated demands take it too."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain import packing_lanes
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.packing import plan, why_unplaceable
from shared.domain.packing_bundles import ROUND_FROM
from shared.domain.packing_plan import MIN_WALL_TIME, Lane, Plan
from shared.domain.resources import Resources
from tests.unit.test_packing_mixing import FLEET, continuous, feasible
from tests.unit.test_packing_speed import mixed_queue


@contextmanager
def bundled_from(jobs: int) -> Iterator[None]:
    with mock.patch.object(packing_lanes, "ROUND_FROM", jobs):
        yield


def assert_complete(result: Plan, demand: dict[Shape, int], offers: list[Offer]) -> None:
    placed = feasible(result)  # the replaying checker: exact jobs, never a reservation
    left_out = sum(u.count for u in (*result.unplaceable, *result.deferred))
    assert placed + left_out == sum(demand.values())
    unplaceable = {u.shape for u in result.unplaceable}
    for s in demand:
        fits = any(s.resources.fits_in(o.usable) and (s.preemptible or not o.spot) for o in offers)
        assert fits == (s not in unplaceable)
    for u in result.unplaceable:
        assert u.reason == why_unplaceable(u.shape, offers)


def assert_bundled(lanes: list[Lane]) -> None:
    """Some reservations were rounded up past every job of their lane, and many lanes share one."""
    assert any(lane.reserved.memory > max(run.shape.resources.memory for run in lane.runs) for lane in lanes)
    assert Counter(lane.reserved for lane in lanes).most_common(1)[0][1] >= 10


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    demand=st.dictionaries(continuous, st.integers(min_value=1, max_value=3), min_size=1, max_size=60),
    target=st.sampled_from([0, 60, 600, 1800, 3600]),
)
def test_bundled_plans_are_feasible_and_complete(demand: dict[Shape, int], target: int) -> None:
    # GIVEN continuous shapes, bundled from the first mixed job
    with bundled_from(0):
        # WHEN planned
        result = plan(demand, FLEET, target_time=target)
    # THEN every job that fits is placed feasibly, and the unplaceable keep their exact verdicts and reasons
    assert not result.deferred
    assert_complete(result, demand, FLEET)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    demand=st.dictionaries(continuous, st.integers(min_value=1, max_value=3), min_size=1, max_size=40),
    cap=st.integers(min_value=1, max_value=4),
)
def test_bundled_lanes_under_max_nodes_defer_only_when_every_fitting_type_is_full(
    demand: dict[Shape, int], cap: int
) -> None:
    # GIVEN a fleet of at most `cap` nodes of each type: bundles wait, are taken apart and tried again
    offers = [Offer(**{**{f: getattr(o, f) for f in o.__slots__}, "max_nodes": cap}) for o in FLEET]
    with bundled_from(0):
        result = plan(demand, offers, target_time=1800)
    # THEN nothing is lost or counted twice, and a job is deferred only when every type that fits it is full
    assert_complete(result, demand, offers)
    counts = result.node_counts()
    assert all(counts[o.key] <= cap for o in offers)
    for d in result.deferred:
        fitting = [o for o in offers if d.shape.resources.fits_in(o.usable) and (d.shape.preemptible or not o.spot)]
        assert fitting and all(counts[o.key] == o.max_nodes for o in fitting)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_a_large_queue_is_bundled_feasibly_alike_in_any_order_and_the_reasons_count_every_job(seed: int) -> None:
    # GIVEN a queue large enough to be bundled without lowering the threshold
    demand = mixed_queue(2 * ROUND_FROM + 500, seed)
    result = plan(demand, FLEET, target_time=1800)
    # THEN it is complete and feasible, and the reasons count each placed job once
    assert_complete(result, demand, FLEET)
    assert not result.deferred
    counted = sum(int(line.split(" jobs in lanes led by ", 1)[0]) for line in result.reasons if " led by " in line)
    assert counted == result.placed_jobs
    # AND lanes were bundled; each lane ends when its jobs have run
    lanes = [lane for g in result.groups for lane in g.load.lanes]
    assert_bundled(lanes)
    for lane in lanes:
        assert lane.end == pytest.approx(sum(max(r.shape.wall_time, MIN_WALL_TIME) * r.count for r in lane.runs))
    # AND the same demand in another order gives the same plan
    shuffled = list(demand.items())
    random.Random(seed).shuffle(shuffled)
    assert plan(dict(shuffled), FLEET, target_time=1800) == result


def test_below_the_threshold_nothing_is_rounded() -> None:
    # GIVEN a queue too small to be bundled: every lane reserves exactly what its largest job needs
    demand = mixed_queue(1000, seed=7)
    result = plan(demand, FLEET, target_time=1800)
    for group in result.groups:
        for lane in group.load.lanes:
            needs = [run.shape.resources for run in lane.runs]
            assert lane.reserved.memory == max(r.memory for r in needs)
            assert lane.reserved.disk == max(r.disk for r in needs)


def test_jobs_alike_but_for_wall_time_are_bundled_too() -> None:
    # GIVEN thousands of resource vectors, each wanted by two jobs of different wall times (lanes by best fit on
    # time, not windows), in markets past the threshold
    demand: dict[Shape, int] = {}
    for shape in mixed_queue(2 * ROUND_FROM + 500, seed=11):
        for wall in (300.0, 3600.0):
            twin = Shape(resources=shape.resources, wall_time=wall, preemptible=shape.preemptible)
            demand[twin] = demand.get(twin, 0) + 1
    # WHEN planned
    result = plan(demand, FLEET, target_time=1800)
    # THEN it is complete and feasible, and those lanes share reservations too
    assert_complete(result, demand, FLEET)
    assert not result.deferred
    assert_bundled([lane for g in result.groups for lane in g.load.lanes])


def test_a_job_taken_out_of_a_rounded_lane_is_placed_by_its_own_needs() -> None:
    # GIVEN hypothesis's counterexample (a fresh clone, session 23): one node of each type at most, a GPU job and three
    # small ones that fill the g4dn.xlarge, and a 3-core job of 29 GiB disk whose bundled lane rounds its disk up past
    # what an r5.2xlarge gives (42 GiB), so that only the g4dn.xlarge (124 GiB) holds the lane
    def job(cores: float, *, accelerators: int = 0, disk: int = 0, wall: float = 1.0) -> Shape:
        wants = Resources(cores=cores, memory=0, disk=disk, accelerators=accelerators)
        return Shape(resources=wants, wall_time=wall, preemptible=False)

    big = job(3, disk=31_138_512_897)
    demand = {
        job(0.25, wall=1.0): 1,
        job(0.25, wall=2.0): 1,
        job(0.25, wall=3.0): 1,
        job(1.5, accelerators=1): 1,
        big: 1,
    }
    offers = [Offer(**{**{f: getattr(o, f) for f in o.__slots__}, "max_nodes": 1}) for o in FLEET]
    with bundled_from(0):
        result = plan(demand, offers, target_time=1800)
    # THEN taken apart, the job goes by its own 29 GiB onto an r5.2xlarge, and nothing is deferred
    assert not result.deferred
    assert result.node_counts()["r5.2xlarge"] == 1
    assert_complete(result, demand, offers)
