"""The policy steps issue #14 added: what is left of the target time, runtimes learned from running jobs too,
late shapes planned as longer, and busy surplus nodes drained while nothing is queued."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState
from shared.domain.decision import Drain, Instance, InstanceState, Snapshot
from shared.domain.jobs import Shape
from shared.domain.policy import MIN_TARGET_FRACTION, WAIT_GRACE_FRACTION, ScalerState, remaining_target
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes
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


def test_busy_surplus_nodes_whose_jobs_end_soon_are_drained_while_nothing_is_queued() -> None:
    # GIVEN three busy r5.4xlarge for three small jobs that one m5.2xlarge could run
    soon = {"i-0": NOW + 60, "i-1": NOW + CONSOLIDATE_WITHIN + 1, "i-2": NOW + 120}
    # WHEN nothing is queued THEN the ones that empty soon are drained, the long one is kept
    drains = _decide_with(soon, queued=0)
    assert sorted(i for d in drains for i in d.instance_ids) == ["i-0", "i-2"]
    # WHEN jobs are queued, or nothing says when nodes empty THEN no busy node is drained
    assert _decide_with(soon, queued=2) == []
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
