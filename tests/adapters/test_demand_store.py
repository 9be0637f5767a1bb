"""What a round reads to plan demand, on moto's DynamoDB: counters per requested shape and job name, the
learned runtimes, the running jobs' start times and the queue checkpoints; and every read's failure path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.demand_store import DynamoDemandStore
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import (
    StateTable,
    StateTableError,
    demand_key,
    get_float,
    get_int,
    n,
    need_str,
    started_on_partition,
)
from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState, shape_key
from shared.domain.demand import Checkpoints, Counters, DemandKey, RunningJob
from shared.domain.jobs import Job
from shared.domain.runtimes import Runtimes
from shared.services import round_demand
from shared.services.round_demand import observe_demand
from tests.adapters.conftest import make_job

NOW = 1_700_000_000.0


def key_of(job: Job) -> DemandKey:
    return job.shape, job.name


def test_counters_are_kept_per_shape_and_name_and_count_every_enqueue(table: StateTable) -> None:
    # GIVEN jobs of one shape, two named alike and one unnamed
    jobs = DynamoJobStore(table)
    a, b, c = make_job("a", 0, name="align"), make_job("b", 0, name="align"), make_job("c", 0)
    jobs.put_jobs([a, b, c], NOW)
    # WHEN one starts, and is requeued later (an interruption: not the job's fault)
    assert jobs.start_job(a, "i-1", NOW + 5) == 1
    assert jobs.requeue_job("a", "i-1", reason="interrupted", now=NOW + 9)
    # THEN its name's counter counted three enqueues, the last at the requeue; demand() sums the names
    counters = DynamoDemandStore(table).counters()
    assert counters.counts == {key_of(a): (2, 0), key_of(c): (1, 0)}
    assert counters.enqueued == {key_of(a): (3, NOW + 9), key_of(c): (1, NOW)}
    assert jobs.demand() == {a.shape: DemandCount(queued=3)}
    # and the start moved the counters without touching when the last job came
    item = table.get(demand_key(shape_key(a.shape), "align"))
    assert item is not None and get_int(item, "enqueued") == 3 and get_float(item, "enqueued_at") == NOW + 9


def test_jobs_counted_before_the_counters_had_names_are_not_counted_twice(table: StateTable) -> None:
    # GIVEN a named job recorded by the previous version: counted on its shape's counter alone, no enqueue time
    jobs = DynamoJobStore(table)
    a = make_job("a", 0, name="align")
    jobs.put_jobs([a], NOW)
    old = demand_key(shape_key(a.shape), "align")
    table.delete(old)
    table.update(demand_key(shape_key(a.shape)), "ADD #queued :one", names={"#queued": "queued"}, values={":one": n(1)})
    assert DynamoDemandStore(table).counters().counts == {(a.shape, None): (1, 0)}
    assert DynamoDemandStore(table).counters().enqueued == {}  # the round dates it when it first sees it
    # WHEN it starts under this version (its name's counter goes below zero)
    assert jobs.start_job(a, "i-1", NOW + 5) == 1
    # THEN it is one running job, not a running one and a ghost queued one
    assert DynamoDemandStore(table).counters().counts == {key_of(a): (0, 1)}
    assert jobs.demand() == {a.shape: DemandCount(running=1)}


def test_cancelling_moves_the_named_counter(table: StateTable) -> None:
    jobs = DynamoJobStore(table)
    a, b = make_job("a", 1, name="sort"), make_job("b", 1, name="sort")
    jobs.put_jobs([a, b], NOW)
    assert jobs.start_job(b, "i-1", NOW) == 1
    jobs.cancel_jobs(["a", "b"], reason="stop", now=NOW + 1)
    assert DynamoDemandStore(table).counters().counts == {}


def test_runtimes_are_the_agents_sums_per_name(table: StateTable) -> None:
    DynamoClusterStore(table).record_runtime("align", 300.0, 2)
    DynamoClusterStore(table).record_runtime("sort", 60.0, 1)
    learned = DynamoDemandStore(table).runtimes()
    assert dict(learned.by_name) == {"align": (2, 300.0), "sort": (1, 60.0)}
    assert (learned.jobs, learned.seconds) == (3, 360.0)
    assert learned.expected("align", 3600.0) == 150.0


def test_running_jobs_are_read_with_their_key_start_and_node(table: StateTable) -> None:
    jobs = DynamoJobStore(table)
    a, b = make_job("a", 0, name="align"), make_job("b", 0)
    jobs.put_jobs([a, b], NOW)
    assert jobs.start_job(a, "i-1", NOW + 3) == 1
    running = DynamoDemandStore(table).running_jobs(["a", "b", "gone"])
    assert running == [RunningJob(job_id="a", key=key_of(a), started_at=NOW + 3, node="i-1")]


def test_a_nodes_running_jobs_are_found_by_its_start_markers_and_ended_ones_forgotten(table: StateTable) -> None:
    # GIVEN four jobs started on node i-1: one runs, one succeeded, one went back to the queue, one moved to i-2
    jobs = DynamoJobStore(table)
    runs, done, back, moved = (make_job(i, 0, name="align") for i in ("runs", "done", "back", "moved"))
    jobs.put_jobs([runs, done, back, moved], NOW)
    for job in (runs, done, back, moved):
        assert jobs.start_job(job, "i-1", NOW + 1) == 1
    assert jobs.finish_job(done, "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 2)
    for job in (back, moved):
        assert jobs.requeue_job(job.id, "i-1", reason="test", now=NOW + 2)
    assert jobs.start_job(moved, "i-2", NOW + 3) == 2
    # WHEN the round asks what runs on i-1
    running = DynamoDemandStore(table).running_on("i-1")
    # THEN only the running job, with its key and start; the finished job's marker is gone, the requeued job's
    # stays (it may start on i-1 again)
    assert running == [RunningJob(job_id="runs", key=key_of(runs), started_at=NOW + 1, node="i-1")]
    assert sorted(need_str(item, "sk") for item in table.query(started_on_partition("i-1"))) == [
        "back",
        "moved",
        "runs",
    ]
    assert DynamoDemandStore(table).running_on("i-3") == []


def test_checkpoints_round_trip_and_those_of_empty_queues_are_deleted(table: StateTable) -> None:
    store = DynamoDemandStore(table)
    a, b = key_of(make_job("a", 0, name="align")), key_of(make_job("b", 1))
    store.save_marks({a: ((NOW, 2), (NOW + 60, 5)), b: ((NOW, 1),)}, {})
    assert store.marks() == {a: ((NOW, 2), (NOW + 60, 5)), b: ((NOW, 1),)}
    store.save_marks({a: ((NOW + 60, 5),)}, store.marks())
    assert store.marks() == {a: ((NOW + 60, 5),)}


class Failing:
    """The DynamoDB source with the named reads or writes failing as a throttled or denied call does."""

    def __init__(self, table: StateTable, *failing: str) -> None:
        self.real, self.failing = DynamoDemandStore(table), set(failing)

    def _check(self, name: str) -> None:
        if name in self.failing:
            raise StateTableError(f"{name}: AccessDeniedException")

    def counters(self) -> Counters:
        self._check("counters")
        return self.real.counters()

    def runtimes(self) -> Runtimes:
        self._check("runtimes")
        return self.real.runtimes()

    def running_jobs(self, job_ids: Sequence[str]) -> list[RunningJob]:
        self._check("running_jobs")
        return self.real.running_jobs(job_ids)

    def running_on(self, node_id: str) -> list[RunningJob]:
        self._check("running_on")
        return self.real.running_on(node_id)

    def marks(self) -> dict[DemandKey, Checkpoints]:
        self._check("marks")
        return self.real.marks()

    def save_marks(self, marks: dict[DemandKey, Checkpoints], before: dict[DemandKey, Checkpoints]) -> None:
        self._check("save_marks")
        self.real.save_marks(marks, before)


def busy_cluster(table: StateTable) -> tuple[Job, list[NodeRecord]]:
    """Two queued jobs of a name learned to take 300 s, one running on an active node."""
    jobs = DynamoJobStore(table)
    a, b, c = (make_job(i, 0, name="align", wall_time=3600) for i in "abc")
    jobs.put_jobs([a, b, c], NOW)
    assert jobs.start_job(c, "i-1", NOW) == 1
    DynamoClusterStore(table).record_runtime("align", 600.0, 2)
    node = NodeRecord(instance_id="i-1", offer_key="m5.2xlarge", instance_type="m5.2xlarge", market=Market.ON_DEMAND,
                      state=NodeState.ACTIVE, running_jobs={"c": "receipt"})  # fmt: skip
    return a, [node]


def test_all_reads_well_plan_learned_runtimes_queued_since_and_empties(table: StateTable) -> None:
    a, nodes = busy_cluster(table)
    seen = observe_demand(DynamoDemandStore(table), nodes, NOW + 60)
    planned_as = seen.shape_of[key_of(a)]
    assert planned_as.wall_time == 300.0 and seen.demand[planned_as].queued == 2
    assert seen.queued_since == {planned_as: NOW}
    assert seen.empties_at == {"i-1": NOW + 300.0}
    assert seen.errors == ()


@pytest.mark.parametrize(("hours", "empties"), [(2, {"i-1": NOW + 30 + 7200.0}), (9, {})])
def test_a_job_started_since_the_nodes_last_report_keeps_it_from_looking_empty(
    table: StateTable, hours: int, empties: dict[str, float]
) -> None:
    # GIVEN a node whose record lists one job due to end in 4 minutes, and which has since started a 2-hour one (or
    # a 9-hour one, too long to drain a node for: ``demand.CONSOLIDATE_JOBS_UP_TO``)
    _, nodes = busy_cluster(table)
    jobs = DynamoJobStore(table)
    index = make_job("d", 0, name="index")
    jobs.put_jobs([index], NOW)
    DynamoClusterStore(table).record_runtime("index", hours * 3600.0, 1)
    assert jobs.start_job(index, "i-1", NOW + 30) == 1
    # WHEN the round observes demand
    seen = observe_demand(DynamoDemandStore(table), nodes, NOW + 60)
    # THEN the node empties when the unlisted job ends, not in 4 minutes (or is not expected to): it is not drained
    # as emptying soon
    assert seen.empties_at == empties
    assert seen.errors == ()


def test_a_round_reads_the_start_markers_of_the_nodes_emptying_soonest_and_leaves_the_rest_out(
    table: StateTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two nodes emptying soon (one now, one in 4 minutes), and a round that reads one node's markers
    _, nodes = busy_cluster(table)
    jobs = DynamoJobStore(table)
    later = make_job("later", 0, name="align")
    jobs.put_jobs([later], NOW)
    assert jobs.start_job(later, "i-2", NOW + 300) == 1
    nodes.append(replace(nodes[0], instance_id="i-2", running_jobs={"later": "receipt"}))
    monkeypatch.setattr(round_demand, "MAX_MARKER_READS", 1)
    # WHEN the round observes demand
    seen = observe_demand(DynamoDemandStore(table), nodes, NOW + 360)
    # THEN the one emptying soonest is looked at again and kept; the other is not drained this round
    assert seen.empties_at == {"i-1": NOW + 360}
    assert seen.errors == ()


def test_a_node_whose_start_markers_cannot_be_read_is_not_drained_on_a_guess(table: StateTable) -> None:
    _, nodes = busy_cluster(table)
    seen = observe_demand(Failing(table, "running_on"), nodes, NOW + 60)
    assert seen.empties_at == {}
    (error,) = seen.errors
    assert "start markers of node i-1" in error and "AccessDeniedException" in error


@pytest.mark.parametrize(
    ("failing", "lost"),
    [
        ("runtimes", "learned runtimes"),
        ("running_jobs", "running jobs' records"),
        ("marks", "queue checkpoints"),
        ("save_marks", "saving the queue checkpoints"),
    ],
)
def test_a_failed_read_or_write_is_unknown_and_the_round_goes_on(table: StateTable, failing: str, lost: str) -> None:
    # GIVEN one of the round's demand reads (or the checkpoints' write) fails
    a, nodes = busy_cluster(table)
    # WHEN the round observes demand
    seen = observe_demand(Failing(table, failing), nodes, NOW + 60)
    # THEN it still has the queued jobs, goes without what failed, and says so
    assert sum(c.queued for c in seen.demand.values()) == 2
    (error,) = seen.errors
    assert lost in error and "AccessDeniedException" in error
    planned_as = seen.shape_of[key_of(a)]
    assert planned_as.wall_time == (3600.0 if failing == "runtimes" else 300.0)
    assert bool(seen.queued_since) is (failing != "marks")
    assert bool(seen.empties_at) is (failing != "running_jobs")


def test_the_counters_stay_indispensable(table: StateTable) -> None:
    _, nodes = busy_cluster(table)
    with pytest.raises(StateTableError):
        observe_demand(Failing(table, "counters"), nodes, NOW)
