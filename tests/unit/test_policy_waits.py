"""The policy steps issue #14 added: what is left of the target time, runtimes learned from running jobs too,
late shapes planned as longer, and busy surplus nodes drained (spot ones only while nothing is queued)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState
from shared.domain.decision import Drain, Instance, InstanceState, Snapshot
from shared.domain.jobs import Shape
from shared.domain.policy import (
    MIN_TARGET_FRACTION,
    OWN_LANE_FRACTION,
    RUNNING_FLOOR_FRACTION,
    WAIT_GRACE_FRACTION,
    ScalerState,
    only_type_for_queued,
    remaining_target,
    running_remaining,
    running_shape,
)
from shared.domain.resources import Resources
from shared.domain.runtimes import RUNNING_FACTOR, Runtimes
from shared.domain.scaling import CONSOLIDATE_WITHIN, decide, offers_for
from shared.domain.settings import ClusterSettings

GiB = 2**30
NOW = 1_700_000_000.0
T = 1800.0


@pytest.mark.parametrize(
    ("waited", "left"),
    [
        (0.0, T),
        (T * WAIT_GRACE_FRACTION, T),  # within the grace: untouched
        (T * WAIT_GRACE_FRACTION + 300, T - 300),  # five minutes late: five minutes less
        (10 * T, T * MIN_TARGET_FRACTION),  # never tighter than the floor
    ],
)
def test_remaining_target(waited: float, left: float) -> None:
    assert remaining_target(T, waited) == pytest.approx(left)


def test_running_jobs_raise_an_expectation_learned_from_the_short_ones_that_finished_first() -> None:
    runtimes = Runtimes().add("peaks", 150.0)
    assert runtimes.expected("peaks", 1.0) == 150.0
    # 20 jobs of that name have run 10 minutes each and go on: they take at least that
    assert runtimes.expected("peaks", 1.0, running=(20, 20 * 600.0)) == 600.0
    # running jobs that just started do not lower what finished ones showed
    assert runtimes.expected("peaks", 1.0, running=(20, 20 * 5.0)) == 150.0
    # nothing known of a name: the average over every finished job, else the submitted estimate
    assert runtimes.expected("new", 42.0) == 150.0
    assert Runtimes().expected("new", 42.0) == 42.0


def test_jobs_of_a_name_none_of_which_ended_are_expected_to_run_as_long_again() -> None:
    # 3 jobs of a new name have run 10 minutes each: 20 minutes expected (the time so far is only a lower bound)
    assert Runtimes().expected("new", 1.0, running=(3, 3 * 600.0)) == 600.0 * RUNNING_FACTOR
    assert Runtimes().add("other", 5000.0).expected("new", 1.0, running=(3, 3 * 600.0)) == 5000.0


def test_running_jobs_are_never_planned_one_after_another() -> None:
    # GIVEN 27 one-hour jobs running with half an hour left on 27 nodes, and 12 more queued
    settings = ClusterSettings(name="t", node_types="m5.2xlarge", beta_inertia=0.0).validate()
    r = Resources(cores=8, memory=8 * GiB, disk=10 * GiB)
    demand = {
        Shape(resources=r, wall_time=T, preemptible=False): DemandCount(running=27),
        Shape(resources=r, wall_time=3600.0, preemptible=False): DemandCount(queued=12),
    }
    snapshot = Snapshot(demand=demand, nodes=[], instances=[])
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
    # THEN each running job keeps its node and each queued one gets its own: none ends before the target time
    assert decision.wanted["m5.2xlarge"] == 39
    # AND a running job with little left still makes room for the next (it is not planned as alone)
    short = Shape(resources=r, wall_time=T * OWN_LANE_FRACTION / 2, preemptible=False)
    assert running_shape(short, T) == short
    # AND running jobs past the target are one shape, however far past (how far does not change where they go)
    long_ones = {running_shape(Shape(resources=r, wall_time=w, preemptible=False), T) for w in (T, 2400.0, 7200.0)}
    assert len(long_ones) == 1 and next(iter(long_ones)).wall_time > T


def _cluster() -> ClusterSettings:
    return ClusterSettings(name="t", node_types="m5.2xlarge,r5.4xlarge", beta_inertia=0.0).validate()


def _node(instance_id: str, offer: str, *, busy: bool) -> tuple[NodeRecord, Instance]:
    record = NodeRecord(
        instance_id=instance_id, offer_key=offer, instance_type=offer, market=Market.ON_DEMAND, state=NodeState.ACTIVE,
        launched_at=NOW - 3600, heartbeat_at=NOW - 10,
        running_jobs=MappingProxyType({"j-" + instance_id: "h"} if busy else {}),
    )  # fmt: skip
    instance = Instance(
        instance_id=instance_id, instance_type=offer, state=InstanceState.RUNNING, market=Market.ON_DEMAND,
        offer_key=offer, launched_at=NOW - 3600,
    )  # fmt: skip
    return record, instance


SMALL = Shape(resources=Resources(cores=1, memory=2 * GiB, disk=GiB), wall_time=300.0)


def _decide_with(empties_at: dict[str, float], queued: int) -> list[Drain]:
    settings = _cluster()
    pairs = [_node(f"i-{n}", "r5.4xlarge", busy=True) for n in range(3)]
    snapshot = Snapshot(
        demand={SMALL: DemandCount(queued=queued, running=3)},
        nodes=[p[0] for p in pairs], instances=[p[1] for p in pairs], empties_at=empties_at,
    )  # fmt: skip
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
    return [a for a in decision.actions if isinstance(a, Drain)]


def test_busy_on_demand_surplus_nodes_whose_jobs_end_soon_are_drained() -> None:
    # GIVEN three busy r5.4xlarge for three small jobs that one m5.2xlarge could run
    soon = {"i-0": NOW + 60, "i-1": NOW + CONSOLIDATE_WITHIN + 1, "i-2": NOW + 120}
    # WHEN nothing is queued THEN the ones that empty soon are drained, the long one is kept
    drains = _decide_with(soon, queued=0)
    assert sorted(i for d in drains for i in d.instance_ids) == ["i-0", "i-2"]
    # WHEN jobs are queued THEN they are drained too: the plan puts the queued jobs on the cheaper m5.2xlarge, and
    # they would keep the surplus r5.4xlarge alive
    drains = _decide_with(soon, queued=2)
    assert sorted(i for d in drains for i in d.instance_ids) == ["i-0", "i-2"]
    # WHEN nothing says when nodes empty THEN no busy node is drained
    assert _decide_with({}, queued=0) == []


def test_a_late_shape_is_planned_as_longer_so_more_of_its_jobs_start_at_once() -> None:
    settings = _cluster()
    shape = Shape(resources=Resources(cores=1, memory=2 * GiB, disk=GiB), wall_time=1000.0)
    demand = {shape: DemandCount(queued=48)}

    def wanted(queued_since: dict[Shape, float]) -> float:
        snapshot = Snapshot(demand=demand, nodes=[], instances=[], queued_since=queued_since)
        return decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW).hourly_cost

    on_time = wanted({shape: NOW - 60})
    late = wanted({shape: NOW - 10 * T})
    assert wanted({}) == on_time < late


def test_running_jobs_are_planned_for_what_is_left_of_them_never_below_the_floor() -> None:
    # 10 jobs expected to take 20 min have run 5 min each: 15 min left
    assert running_remaining(1200.0, (10, 10 * 300.0)) == pytest.approx(900.0)
    # they have run longer than expected: still half of it (the expectation was low, not the job done)
    assert running_remaining(1200.0, (10, 10 * 3000.0)) == pytest.approx(1200.0 * RUNNING_FLOOR_FRACTION)
    assert running_remaining(1200.0, (0, 0.0)) == 1200.0


def _spot_cluster() -> ClusterSettings:
    return ClusterSettings(name="t", node_types="c5.4xlarge:0.30", beta_inertia=0.0).validate()


def _spot_nodes(busy: list[bool]) -> tuple[list[NodeRecord], list[Instance]]:
    records, instances = [], []
    for n, is_busy in enumerate(busy):
        record, instance = _node(f"i-{n}", "c5.4xlarge:spot", busy=is_busy)
        records.append(replace(record, instance_type="c5.4xlarge", market=Market.SPOT))
        instances.append(replace(instance, instance_type="c5.4xlarge", market=Market.SPOT))
    return records, instances


def test_busy_spot_surplus_nodes_are_consolidated_too() -> None:
    # GIVEN three busy spot nodes whose one small job each ends within a minute, nothing queued
    settings = _spot_cluster()
    records, instances = _spot_nodes([True, True, True])
    snapshot = Snapshot(
        demand={replace(SMALL, preemptible=True): DemandCount(queued=0, running=3)}, nodes=records,
        instances=instances,
        empties_at={r.instance_id: NOW + 60 for r in records},
    )  # fmt: skip
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
    # THEN the surplus ones are drained (they run their jobs to the end; none is killed)
    drained = [i for a in decision.actions if isinstance(a, Drain) for i in a.instance_ids]
    assert len(drained) == 2
    # WHEN jobs are queued THEN busy spot nodes are kept: a queued job would rather start on one than wait for a new one
    queued = replace(snapshot, demand={replace(SMALL, preemptible=True): DemandCount(queued=2, running=3)})
    decision = decide(queued, settings, offers_for(settings), ScalerState(), (), now=NOW)
    assert not [a for a in decision.actions if isinstance(a, Drain)]


def test_an_idle_node_a_queued_job_fits_is_not_drained_when_the_estimate_dips() -> None:
    # GIVEN two idle spot nodes and smoothed state saying 0 wanted, with one small job queued
    settings = _spot_cluster()
    records, instances = _spot_nodes([False, False])
    tiny = Shape(resources=Resources(cores=1, memory=GiB, disk=GiB), wall_time=1.0, preemptible=True)

    def drains(queued: int) -> list[str]:
        snapshot = Snapshot(demand={tiny: DemandCount(queued=queued)}, nodes=records, instances=instances)
        decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
        return [i for a in decision.actions if isinstance(a, Drain) for i in a.instance_ids]

    # THEN with a queued job that fits them, neither is drained; with none queued, the surplus is
    assert drains(1) == []
    assert len(drains(0)) == 2


def test_queued_jobs_past_the_target_are_planned_as_one_wall_time_and_said_so() -> None:
    # GIVEN queued jobs of one size expected to run 40 min, 2 h and 5 h (past the 30 min target)
    settings = ClusterSettings(name="t", node_types="m5.2xlarge", beta_inertia=0.0).validate()
    r = Resources(cores=2, memory=4 * GiB, disk=GiB)
    demand = {
        Shape(resources=r, wall_time=w, preemptible=False): DemandCount(queued=5) for w in (2400.0, 7200.0, 18000.0)
    }
    decision = decide(
        Snapshot(demand=demand, nodes=[], instances=[]), settings, offers_for(settings), ScalerState(), (), now=NOW
    )
    # THEN the plan sees one shape of 15 jobs, each the last of its own lane (4 per node: 4 nodes),
    # and a reason says why
    planned = {run.shape.wall_time for g in decision.plan.groups for lane in g.load.lanes for run in lane.runs}
    assert planned == {T + 1}
    assert decision.wanted["m5.2xlarge"] == 4
    assert any("15 queued jobs run past the target time" in reason for reason in decision.reasons)


BIG = Shape(resources=Resources(cores=4, memory=100 * GiB, disk=GiB), wall_time=1500.0)  # fits r5.4xlarge alone


def test_the_only_node_type_a_queued_job_fits() -> None:
    offers = {o.key: o for o in offers_for(_cluster())}
    big, small = [(BIG.resources, False)], [(SMALL.resources, False)]
    assert only_type_for_queued(offers["r5.4xlarge"], big, list(offers.values()))
    assert not only_type_for_queued(offers["r5.4xlarge"], small, list(offers.values()))  # m5.2xlarge runs it too
    assert not only_type_for_queued(offers["m5.2xlarge"], big, list(offers.values()))  # it does not fit
    assert only_type_for_queued(offers["r5.4xlarge"], [*small, *big], list(offers.values()))


def test_busy_nodes_of_the_only_type_a_queued_job_fits_are_not_consolidated() -> None:
    # GIVEN three busy r5.4xlarge whose jobs end within a minute, and the plan wanting fewer
    settings = _cluster()
    pairs = [_node(f"i-{n}", "r5.4xlarge", busy=True) for n in range(3)]

    def drains(queued: Shape) -> list[str]:
        demand = {SMALL: DemandCount(queued=0, running=3)}
        demand[queued] = DemandCount(queued=1, running=demand.get(queued, DemandCount()).running)
        snapshot = Snapshot(
            demand=demand, nodes=[p[0] for p in pairs], instances=[p[1] for p in pairs],
            empties_at={p[0].instance_id: NOW + 60 for p in pairs},
        )  # fmt: skip
        decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
        return [i for a in decision.actions if isinstance(a, Drain) for i in a.instance_ids]

    # WHEN the queued job fits r5.4xlarge alone THEN none is drained: it starts on one as its jobs end
    assert drains(BIG) == []
    # WHEN an m5.2xlarge runs it too THEN the plan moves everything to m5.2xlarge and the r5.4xlarge are drained
    assert sorted(drains(SMALL)) == ["i-0", "i-1", "i-2"]
