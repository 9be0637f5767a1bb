"""Whole scaling rounds (observe → decide → act → record) on the in-memory twins: no moto, no AWS.

Each test runs ``run_round`` as the scaler function does, against ``MemoryFleet`` and the state-table
twins, over simulated time (each round passes ``now``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.adapters.memory_fleet import MemoryFleet
from shared.adapters.memory_state import (
    MemoryCapacityCache,
    MemoryClusterStore,
    MemoryDecisionLog,
    MemoryDemandStore,
    MemoryJobStore,
    MemoryLease,
    MemoryNodeStore,
    MemoryScalerStateStore,
)
from shared.domain.cluster_state import Market, NodeState
from shared.domain.decision import InstanceState
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.formats.decision_record import DecisionRecord
from shared.services.reconcile import ControlPlane, run_round

GiB = 2**30
NOW = 1_700_000_000.0
NODE_TYPES = "c5.4xlarge,m5.2xlarge,r5.2xlarge"
SETTINGS = ClusterSettings(name="t", node_types=NODE_TYPES, region="us-west-2", beta_inertia=0.0).validate()
SMALL = Shape(resources=Resources(cores=4, memory=8 * GiB, disk=GiB), wall_time=600)


class RecordingReturns:
    """``JobReturns``: the receipts a round put back in the queue."""

    def __init__(self) -> None:
        self.returned: list[str] = []

    def put_back(self, receipt_handles: Sequence[str]) -> list[str]:
        self.returned += receipt_handles
        return []


class Cluster:
    def __init__(self) -> None:
        self.fleet = MemoryFleet(zones=("us-west-2a", "us-west-2b"), clock=lambda: NOW)
        self.jobs = MemoryJobStore()
        self.nodes = MemoryNodeStore()
        self.capacity = MemoryCapacityCache()
        self.decisions = MemoryDecisionLog()
        self.cluster_store = MemoryClusterStore()
        self.plane = ControlPlane(
            jobs=self.jobs,
            nodes=self.nodes,
            scaler_state=MemoryScalerStateStore(),
            lease=MemoryLease(),
            capacity=self.capacity,
            decisions=self.decisions,
            queue=RecordingReturns(),
            fleet=self.fleet,
            demand=MemoryDemandStore(self.jobs, self.cluster_store),
        )
        self.rounds = 0

    def queue(self, count: int) -> None:
        self.jobs.put_jobs([Job(id=f"j{i}", shape=SMALL) for i in range(count)], NOW)

    def round(self, now: float) -> None:
        self.rounds += 1
        run_round(self.plane, SETTINGS, offers_for(SETTINGS), now=now, round_id=f"r{self.rounds}")

    def running(self) -> dict[str, int]:
        """Live instances per type."""
        out: dict[str, int] = {}
        for instance in self.fleet.describe():
            if instance.running:
                out[instance.instance_type] = out.get(instance.instance_type, 0) + 1
        return out


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def test_queued_jobs_launch_nodes_once_and_the_round_is_recorded(cluster: Cluster) -> None:
    # GIVEN 40 queued jobs of 4 cores and an empty fleet
    cluster.queue(40)
    # WHEN a round runs
    result = run_round(cluster.plane, SETTINGS, offers_for(SETTINGS), now=NOW, round_id="r1")
    # THEN it launched nodes, recorded each as PENDING, and wrote its decision with reasons
    assert result.ran and result.counts.launched == len(cluster.fleet.describe()) > 0
    records = cluster.nodes.list_nodes()
    assert {r.instance_id for r in records} == {i.instance_id for i in cluster.fleet.describe()}
    assert {r.state for r in records} == {NodeState.PENDING}
    (entry,) = cluster.decisions.recent(1)
    assert DecisionRecord.from_json(entry).decision.reasons
    # WHEN the next round sees the same demand (the nodes are booting)  THEN it launches nothing more
    cluster.fleet.settle()
    launched = len(cluster.fleet.launches)
    again = run_round(cluster.plane, SETTINGS, offers_for(SETTINGS), now=NOW + 60, round_id="r2")
    assert again.counts.launched == 0 and len(cluster.fleet.launches) == launched


def test_the_memory_plane_plans_named_jobs_at_the_runtime_learned_for_their_name() -> None:
    # GIVEN two clusters with 8 queued "align" jobs asking 6 hours each; in one, finished "align" jobs took 10 min
    def vcpus_launched(learned: bool) -> int:
        cluster = Cluster()
        if learned:
            cluster.cluster_store.record_runtime("align", 4 * 600.0, 4)
        long = Shape(resources=SMALL.resources, wall_time=6 * 3600.0)
        cluster.jobs.put_jobs([Job(id=f"a{i}", shape=long, name="align") for i in range(8)], NOW)
        # WHEN a round runs on each
        cluster.round(NOW)
        cores = {"c5.4xlarge": 16, "m5.2xlarge": 8, "r5.2xlarge": 8}
        return sum(cores[t] * n for t, n in cluster.running().items())

    # THEN the one that learned plans them at 10 minutes, as a deployed round does: fewer cores for the same jobs
    # (at 6 hours each job is alone in its lane: 32 cores)
    assert vcpus_launched(learned=True) < vcpus_launched(learned=False) == 32


def test_an_idle_node_is_drained_then_terminated_once_its_agent_says_so(cluster: Cluster) -> None:
    # GIVEN one running m5.2xlarge whose agent reports it idle, and nothing queued
    cluster.queue(1)
    cluster.round(NOW)
    (instance,) = cluster.fleet.describe()
    cluster.fleet.settle()
    cluster.jobs.start_job(Job(id="j0", shape=SMALL), instance.instance_id, NOW + 10)
    cluster.jobs.finish_job(
        Job(id="j0", shape=SMALL), instance.instance_id, attempt=1, exit_code=0, output_tail="", now=NOW + 20
    )
    cluster.nodes.heartbeat(instance.instance_id, free=Resources(cores=8), running_jobs={}, now=NOW + 30)
    # WHEN a round runs  THEN it drains the node (a DynamoDB write, no EC2 call)
    cluster.round(NOW + 600)
    (record,) = cluster.nodes.list_nodes()
    assert record.state is NodeState.DRAINING and not cluster.fleet.terminated
    # WHEN the agent acknowledges the drain with no job  THEN the next round terminates the instance
    cluster.nodes.heartbeat(
        instance.instance_id, free=Resources(cores=8), running_jobs={}, now=NOW + 610, draining=True
    )
    cluster.round(NOW + 660)
    assert cluster.fleet.terminated == [instance.instance_id]
    assert cluster.running() == {}


def test_a_refused_offering_falls_back_in_the_same_round(cluster: Cluster) -> None:
    # GIVEN the cheapest type for these jobs refused in every zone
    cluster.queue(40)
    cheapest = next(iter(run_round(_plain_plane(), SETTINGS, offers_for(SETTINGS), now=NOW, round_id="p").nodes))
    cluster.fleet.refuse(cheapest.instance_type)
    # WHEN a round runs
    result = run_round(cluster.plane, SETTINGS, offers_for(SETTINGS), now=NOW, round_id="r1")
    # THEN the refusal is cached and other types launched in the same round, after a second pass
    assert result.counts.launched > 0 and result.launch_failures
    assert {f.instance_type for f in result.launch_failures} == {cheapest.instance_type}
    assert cluster.capacity.unavailable(NOW)
    assert cluster.running() and cheapest.instance_type not in cluster.running()
    assert all(i.market is Market.ON_DEMAND and i.state is InstanceState.PENDING for i in cluster.fleet.describe())


def test_a_round_that_finds_the_lease_held_does_nothing(cluster: Cluster) -> None:
    cluster.queue(40)
    assert cluster.plane.lease.acquire("another", NOW, 300)
    result = run_round(cluster.plane, SETTINGS, offers_for(SETTINGS), now=NOW, round_id="r1")
    assert not result.ran and result.skipped and cluster.fleet.launches == []


def _plain_plane() -> ControlPlane:
    """A fresh cluster with the same demand and nothing refused: which type does a round choose?"""
    plain = Cluster()
    plain.queue(40)
    return plain.plane
