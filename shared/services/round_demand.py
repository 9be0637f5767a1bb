"""What a deployed round observes of demand, as the simulator's round does (``shared.sim.engine``): the
counters turned into planned demand by the same rule (``shared.domain.demand.planned``), with the runtimes
learned per job name, the running jobs' time so far, when each shape's oldest queued job was queued
(``queue_marks``), and when each busy node is expected to be empty (``empties_at``).

Cost per round (``DemandSource`` on the state table, ``shared.adapters.demand_store``): three Queries
(counters, learned runtimes, queue checkpoints), a BatchWriteItem per 25 changed checkpoints, and a
BatchGetItem per 100 running jobs the node records list (2,000 at most: 20 calls), and a Query of the start markers
of each node about to be drained as emptying soon (50 nodes at most). Only the counters are
indispensable, as they were: any other read that fails is "unknown" (the round goes on without it and logs
why), as ``reconcile._observed_extras`` does for quotas and placement scores. In memory (tests):
``memory_state.MemoryDemandStore``, over the in-memory job and cluster stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from shared.domain.cluster_state import DemandCount, NodeRecord, NodeState
from shared.domain.demand import (
    Checkpoints,
    Counters,
    DemandKey,
    RunningJob,
    empties_at,
    planned,
    queue_marks,
    running_by_name,
)
from shared.domain.jobs import Shape
from shared.domain.runtimes import Runtimes
from shared.domain.scaling_changes import CONSOLIDATE_WITHIN
from shared.services.ports import StoreError

T = TypeVar("T")

MAX_RUNNING_READ = 2000  # running jobs whose records a round reads: 20 BatchGetItem calls at most
MAX_MARKER_READS = 50  # nodes about to be consolidated whose start markers a round reads: a Query each


class DemandSource(Protocol):
    def counters(self) -> Counters: ...

    def runtimes(self) -> Runtimes: ...

    def running_jobs(self, job_ids: Sequence[str]) -> list[RunningJob]:
        """The RUNNING records among ``job_ids``."""
        ...

    def running_on(self, node_id: str) -> list[RunningJob]:
        """The jobs RUNNING on ``node_id``, whether its node record lists them yet or not."""
        ...

    def marks(self) -> dict[DemandKey, Checkpoints]: ...

    def save_marks(self, marks: Mapping[DemandKey, Checkpoints], before: Mapping[DemandKey, Checkpoints]) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ObservedDemand:
    demand: dict[Shape, DemandCount]
    shape_of: Mapping[DemandKey, Shape] = field(default_factory=dict)  # what each counter's queued jobs plan as
    queued_since: dict[Shape, float] = field(default_factory=dict)
    empties_at: dict[str, float] = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # the reads and writes that failed: the round went on without them


def observe_demand(source: DemandSource, nodes: Sequence[NodeRecord], now: float) -> ObservedDemand:
    counters = source.counters()  # indispensable: its failure fails the round, as the demand read always did
    errors: list[str] = []
    runtimes = _or_unknown(source.runtimes, Runtimes(), "reading the learned runtimes", errors)
    listed = [job_id for node in nodes for job_id in node.running_jobs][:MAX_RUNNING_READ]
    running = _or_unknown(lambda: source.running_jobs(listed), None, "reading the running jobs' records", errors)
    before = _or_unknown(source.marks, None, "reading the queue checkpoints", errors)
    since = None
    if before is not None:
        marks = queue_marks(before, counters.counts, counters.enqueued, now)
        since = {key: checkpoints[0][0] for key, checkpoints in marks.items()}
        _or_unknown(lambda: source.save_marks(marks, before), None, "saving the queue checkpoints", errors)
    plan = planned(counters.counts, running_by_name(running or []), runtimes, now, since=since)
    on_nodes = {} if running is None else _jobs_on_live_nodes(nodes, set(listed), running)
    ends = _with_unlisted_starts(source, empties_at(on_nodes, plan.shape_of, now), plan.shape_of, now, errors)
    return ObservedDemand(
        demand=plan.counts,
        shape_of=plan.shape_of,
        queued_since=plan.queued_since,
        empties_at=ends,
        errors=tuple(errors),
    )


def _with_unlisted_starts(
    source: DemandSource, ends: dict[str, float], shape_of: Mapping[DemandKey, Shape], now: float, errors: list[str]
) -> dict[str, float]:
    """``ends``, with each node expected to empty within the consolidation window looked at again by its start
    markers: its record lists the jobs its agent reported at its last heartbeat, and a job started since may run
    for hours, which a drained node would keep running while it takes no other work (simulated with node records
    as deployed, nf-mag cost $86.05 against $83.77; reading the markers, $85.38: docs/simulate.md, session 13).
    The soonest first, ``MAX_MARKER_READS`` of them; a node past the bound, or once a read failed, is left out: it
    is not drained on a guess."""
    soon = sorted((at, node_id) for node_id, at in ends.items() if at - now <= CONSOLIDATE_WITHIN)
    out = dict(ends)
    failed = False
    for n, (_, node_id) in enumerate(soon):
        jobs: list[RunningJob] = []
        if n < MAX_MARKER_READS and not failed:
            try:
                jobs = source.running_on(node_id)
            except StoreError as error:
                failed = True
                errors.append(f"reading the start markers of node {node_id} failed; its consolidation waits: {error}")
        # None: unknown, every job it ran has ended since the round read them, or one it runs is long
        # (``demand.CONSOLIDATE_JOBS_UP_TO``): no busy node is drained on a guess
        at = empties_at({node_id: [(j.key, j.started_at) for j in jobs]}, shape_of, now).get(node_id)
        if at is None:
            del out[node_id]
        else:
            out[node_id] = at
    return out


def _jobs_on_live_nodes(
    nodes: Sequence[NodeRecord], asked: set[str], running: Sequence[RunningJob]
) -> dict[str, list[tuple[DemandKey, float]]]:
    """Per node taking work, its running jobs' keys and start times (a listed job whose record is no longer
    RUNNING there has ended). A node with a listed job beyond the read's bound is left out: it is not drained
    on a guess."""
    read = {job.job_id: job for job in running}
    out: dict[str, list[tuple[DemandKey, float]]] = {}
    for node in nodes:
        if node.state not in (NodeState.PENDING, NodeState.ACTIVE) or not node.running_jobs:
            continue
        if not asked.issuperset(node.running_jobs):
            continue
        jobs = [read[i] for i in node.running_jobs if i in read and read[i].node == node.instance_id]
        if jobs:
            out[node.instance_id] = [(job.key, job.started_at) for job in jobs]
    return out


def _or_unknown(read: Callable[[], T], unknown: T, what: str, errors: list[str]) -> T:
    try:
        return read()
    except StoreError as error:
        errors.append(f"{what} failed; the round goes on without it: {error}")
        return unknown
