"""The deployed round observes what the simulated one does (``shared.services.round_demand``): queued jobs at the
runtime learned for their name, when each shape's oldest job was queued, when busy nodes empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.events import EventBridgeDemandEvents
from shared.adapters.state_table import StateTableError
from shared.domain.cluster_state import NodeState
from shared.domain.decision import Decision, Snapshot
from shared.domain.jobs import Job, Shape
from shared.domain.runtimes import Runtimes
from shared.domain.scaling import decide
from shared.formats.decision_record import DecisionRecord
from shared.services import reconcile
from shared.services.submit import submit_jobs
from tests.functions.harness import REGION, Cluster, shape

ON_DEMAND_ONLY = {"min_nodes": (0, 0, 0, 0), "max_nodes": (0, 0, 20, 0)}  # m5.2xlarge, on demand


def submit_named(cluster: Cluster, name: str, job_shape: Shape, count: int, *, prefix: str) -> list[Job]:
    jobs = [Job(id=f"{prefix}-{k:03d}", shape=job_shape, command="true", name=name) for k in range(count)]
    submit_jobs(jobs, store=cluster.jobs, queue=cluster.queue, events=EventBridgeDemandEvents(region=REGION),
                cluster=cluster.settings.name, now=cluster.clock.now)  # fmt: skip
    cluster.submitted += jobs
    return jobs


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    """Every Snapshot the deployed round hands to ``decide``."""
    seen: list[Snapshot] = []

    def spy(snapshot: Snapshot, *args: Any, **kwargs: Any) -> Decision:
        seen.append(snapshot)
        return decide(snapshot, *args, **kwargs)

    monkeypatch.setattr(reconcile, "decide", spy)
    return seen


def test_a_queued_job_whose_name_has_a_learned_runtime_is_planned_with_it(
    make_cluster: Callable[..., Cluster], snapshots: list[Snapshot]
) -> None:
    # GIVEN finished "align" jobs took 10 minutes on average, and 8 more are queued asking for 6 hours each
    cluster = make_cluster(**ON_DEMAND_ONLY)
    DynamoClusterStore(cluster.table).record_runtime("align", 4 * 600.0, 4)
    submit_named(cluster, "align", shape(4, 8, 6 * 3600), 8, prefix="align")
    # WHEN a round runs
    result = cluster.scale()
    # THEN it plans them at 10 minutes: one node runs them within the target (at 6 hours they would want 4)
    assert {(s.wall_time, c.queued) for s, c in snapshots[0].demand.items()} == {(600.0, 8)}
    assert result["launched"] == 1


def test_queued_since_reaches_the_snapshot_and_follows_the_oldest_queued_job(
    make_cluster: Callable[..., Cluster], snapshots: list[Snapshot]
) -> None:
    # GIVEN 3 jobs submitted at t0 and a round, then 2 more two minutes later
    cluster = make_cluster(**ON_DEMAND_ONLY)
    t0 = cluster.clock.now
    submit_named(cluster, "sort", shape(4, 8, 3600), 3, prefix="first")
    cluster.scale()
    cluster.clock.advance(120)
    submit_named(cluster, "sort", shape(4, 8, 3600), 2, prefix="later")
    # WHEN the next round runs  THEN the shape's oldest queued job was queued at t0
    cluster.scale()
    assert list(snapshots[-1].queued_since.values()) == [t0]
    # WHEN the 3 first jobs have started  THEN the oldest queued is one of the later two
    node = cluster.nodes.list_nodes()[0].instance_id
    cluster.heartbeat(node)
    cluster.run_jobs_on(node, 2)
    cluster.jobs.start_job(cluster.submitted[2], "i-elsewhere", cluster.clock.now)
    cluster.scale()
    assert list(snapshots[-1].queued_since.values()) == [t0 + 120]


def _two_on_demand_nodes_for_short_jobs(make_cluster: Callable[..., Cluster]) -> tuple[Cluster, list[str]]:
    """Four queued "short" jobs (asking an hour each) and the two on-demand nodes a round launched for them."""
    cluster = make_cluster(**ON_DEMAND_ONLY)
    submit_named(cluster, "short", shape(4, 8, 3600), 4, prefix="short")
    assert cluster.scale()["launched"] == 2
    return cluster, [n.instance_id for n in cluster.nodes.list_nodes()]


def test_a_busy_surplus_on_demand_node_whose_jobs_end_soon_is_drained(
    make_cluster: Callable[..., Cluster], snapshots: list[Snapshot]
) -> None:
    # GIVEN two on-demand nodes, each running one "short" job (they ask for an hour; finished ones took 5 minutes)
    cluster, nodes = _two_on_demand_nodes_for_short_jobs(make_cluster)
    for node in nodes:
        cluster.heartbeat(node)
        cluster.run_jobs_on(node, 1)
    cluster.finish_queued()
    DynamoClusterStore(cluster.table).record_runtime("short", 2 * 300.0, 2)
    # WHEN a round runs a minute later: the two jobs need one node, and both are expected to end in 4 minutes
    cluster.clock.advance(60)
    result = cluster.scale()
    # THEN one busy node is drained (it finishes its job and takes no other); the other keeps running
    assert result["drained"] == 1
    assert sorted(cluster.node_states()[n] for n in nodes) == [NodeState.ACTIVE, NodeState.DRAINING]
    assert set(snapshots[-1].empties_at) == set(nodes)


def test_of_two_busy_surplus_nodes_the_one_whose_job_ends_soon_is_drained_not_the_one_running_an_outlier(
    make_cluster: Callable[..., Cluster], snapshots: list[Snapshot]
) -> None:
    # GIVEN two on-demand nodes: A's "short" job has run 15 minutes, B's has just started, and finished "short"
    # jobs took 5 minutes: the name is expected at 7.5 minutes (the mean its running jobs have run), A's is an outlier
    cluster, (a, b) = _two_on_demand_nodes_for_short_jobs(make_cluster)
    cluster.heartbeat(a)
    on_a = cluster.run_jobs_on(a, 1)
    started_a = cluster.clock.now
    cluster.clock.advance(900)
    cluster.heartbeat(a, on_a)
    cluster.heartbeat(b)
    cluster.run_jobs_on(b, 1)
    cluster.finish_queued()
    DynamoClusterStore(cluster.table).record_runtime("short", 2 * 300.0, 2)
    # WHEN a round runs: the two jobs need one node
    result = cluster.scale()
    # THEN A is expected to empty when its job has run as long again (30 minutes in), past the 10-minute window,
    # and B is drained: its job is expected to end in 7.5 minutes. (Taken to end at once, A's was drained first,
    # and B went on taking work while A's room stood unused.)
    assert snapshots[-1].empties_at[a] == pytest.approx(started_a + 1800.0, abs=2.0)
    assert result["drained"] == 1
    assert cluster.node_states()[a] is NodeState.ACTIVE
    assert cluster.node_states()[b] is NodeState.DRAINING


def test_a_round_whose_learned_runtimes_cannot_be_read_goes_on_without_them_and_logs_why(
    make_cluster: Callable[..., Cluster], snapshots: list[Snapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.adapters.demand_store import DynamoDemandStore  # here: the other tests also run on main as is

    # GIVEN the RUNTIME Query fails (throttled, denied)
    cluster = make_cluster(**ON_DEMAND_ONLY)
    DynamoClusterStore(cluster.table).record_runtime("align", 4 * 600.0, 4)

    def denied(self: DynamoDemandStore) -> Runtimes:
        raise StateTableError("Query on table shoal-test-state: AccessDeniedException")

    monkeypatch.setattr(DynamoDemandStore, "runtimes", denied)
    submit_named(cluster, "align", shape(4, 8, 6 * 3600), 8, prefix="align")
    # WHEN a round runs
    result = cluster.scale()
    # THEN it plans the jobs as they asked (6 hours, to two digits: 4 nodes), and its record says what it lacked
    assert {(s.wall_time, c.queued) for s, c in snapshots[0].demand.items()} == {(22000.0, 8)}
    assert result["launched"] == 4
    (entry,) = DynamoDecisionLog(cluster.table).recent(1)
    assert any("learned runtimes" in e and "AccessDeniedException" in e for e in DecisionRecord.from_json(entry).errors)
