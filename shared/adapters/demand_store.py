"""What a round reads to plan demand (``shared.domain.demand``), all in the state table: the counters per
requested shape and job name, the runtimes learned per name, the running jobs' start times, and the rounds'
queue checkpoints.

Cost per round, by call: one Query of ``DEMAND`` (O(counters)); one Query of ``RUNTIME`` (O(job names)); one
Query of ``MARKS`` and, for the keys whose checkpoints changed, one BatchWriteItem per 25; one BatchGetItem
per 100 running jobs the node records list (the round bounds how many: ``round_demand.MAX_RUNNING_READ``); and
for each node about to be drained because its jobs end soon, a Query of its start markers and a BatchGetItem
(``round_demand.MAX_MARKER_READS`` nodes at most).
None of it is on the jobs' hot path: the workers' transitions write only the counters, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.state_table import (
    Item,
    StateTable,
    StateTableError,
    demand_of_sort_key,
    demand_sort_key,
    get_float,
    get_int,
    get_str,
    job_key,
    key,
    need_str,
    s,
    started_on_partition,
)
from shared.domain.cluster_state import JobStatus, shape_from_key, shape_key
from shared.domain.demand import Checkpoints, Counters, DemandKey, Enqueued, RunningJob
from shared.domain.jobs import Shape
from shared.domain.runtimes import Runtimes

MARKS_PARTITION = "MARKS"


class _Keys:
    """Counter keys from sort keys, each shape key parsed once."""

    def __init__(self) -> None:
        self._shapes: dict[str, Shape] = {}

    def of(self, sort_key: str) -> DemandKey:
        text, name = demand_of_sort_key(sort_key)
        return self.shape(text), name

    def shape(self, text: str) -> Shape:
        shape = self._shapes.get(text)
        if shape is None:
            shape = self._shapes[text] = shape_from_key(text)
        return shape


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def _running(items: Iterable[Item]) -> list[RunningJob]:
    """The job records among ``items`` that are RUNNING and have started."""
    keys, out = _Keys(), []
    for item in items:
        started_at, node = get_float(item, "started_at"), get_str(item, "node")
        if get_str(item, "status") != JobStatus.RUNNING or started_at is None or node is None:
            continue
        counter = (keys.shape(need_str(item, "shape")), get_str(item, "name"))
        out.append(RunningJob(job_id=need_str(item, "pk").removeprefix("JOB#"), key=counter,
                              started_at=started_at, node=node))  # fmt: skip
    return out


def read_counters(table: StateTable) -> Counters:
    """One Query of the ``DEMAND`` partition: the counters that hold jobs.

    Counters were once kept per shape alone (the sort key an unnamed job's counter still has): a named job
    counted there before an upgrade moves its name's counter below zero when it starts or ends after it. The
    counts of one shape always sum to its jobs, so a named counter's deficit is taken from the shape's unnamed
    one; what is still negative then reads as none."""
    raw: dict[DemandKey, list[int]] = {}
    enqueued: dict[DemandKey, Enqueued] = {}
    keys = _Keys()
    for item in table.query("DEMAND", sk_prefix="SHAPE#"):
        counter = keys.of(need_str(item, "sk"))
        raw[counter] = [get_int(item, "queued") or 0, get_int(item, "running") or 0]
        at = get_float(item, "enqueued_at")
        if at is not None:  # counters from before ``enqueued`` was kept: the round dates their jobs itself
            enqueued[counter] = (get_int(item, "enqueued") or 0, at)
    for (shape, name), count in raw.items():
        if name is not None and min(count) < 0 and (shape, None) in raw:
            unnamed = raw[shape, None]
            for i in (0, 1):
                if count[i] < 0:
                    unnamed[i], count[i] = unnamed[i] + count[i], 0
    counts = {k: (max(0, q), max(0, r)) for k, (q, r) in raw.items() if q > 0 or r > 0}
    return Counters(counts=counts, enqueued={k: v for k, v in enqueued.items() if k in counts})


class DynamoDemandStore:
    """``round_demand.DemandSource`` on the state table."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def counters(self) -> Counters:
        return read_counters(self._table)

    def runtimes(self) -> Runtimes:
        """The runtimes agents recorded per job name (``ClusterStore.record_runtime``), one Query."""
        return DynamoClusterStore(self._table).runtimes()

    def running_jobs(self, job_ids: Sequence[str]) -> list[RunningJob]:
        """The records among ``job_ids`` that are RUNNING and have started: a BatchGetItem per 100 ids."""
        return _running(self._job_items(job_ids))

    def running_on(self, node_id: str) -> list[RunningJob]:
        """The jobs RUNNING on ``node_id`` by the start markers its start transactions wrote, listed on its node
        record yet or not: one Query, a BatchGetItem per 100 markers. Markers of jobs that ended for good are
        deleted as they are found (a job requeued may start here again, so its marker stays), so the partition
        holds little more than what runs."""
        partition = started_on_partition(node_id)
        items = self._job_items([need_str(item, "sk") for item in self._table.query(partition)])
        ended = [need_str(item, "pk").removeprefix("JOB#") for item in items if get_str(item, "status") in FINAL]
        if ended:
            self._table.batch_write(deletes=[key(partition, job_id) for job_id in ended])
        return [job for job in _running(items) if job.node == node_id]

    def _job_items(self, job_ids: Sequence[str]) -> list[Item]:
        if not job_ids:
            return []
        ids = list(dict.fromkeys(job_ids))
        return self._table.batch_get([job_key(i) for i in ids], ("status", "node", "started_at", "shape", "name"))

    def marks(self) -> dict[DemandKey, Checkpoints]:
        """The checkpoints the last round kept, one Query."""
        keys, out = _Keys(), {}
        for item in self._table.query(MARKS_PARTITION):
            try:
                pairs = json.loads(need_str(item, "checkpoints"))
                out[keys.of(need_str(item, "sk"))] = tuple((float(t), int(e)) for t, e in pairs)
            except (ValueError, TypeError) as error:
                raise StateTableError(
                    f"queue checkpoints in table {self._table.name!r} are not valid: {error}"
                ) from None
        return out

    def save_marks(self, marks: Mapping[DemandKey, Checkpoints], before: Mapping[DemandKey, Checkpoints]) -> None:
        """Write the checkpoints that changed since ``before``, delete those of keys no longer queued."""
        puts = [
            {**key(MARKS_PARTITION, _sort_key(k)), "checkpoints": s(json.dumps([list(m) for m in marks[k]]))}
            for k in marks
            if marks[k] != before.get(k)
        ]
        deletes = [key(MARKS_PARTITION, _sort_key(k)) for k in _gone(before, marks)]
        if puts or deletes:
            self._table.batch_write(puts=puts, deletes=deletes)


def _sort_key(counter: DemandKey) -> str:
    return demand_sort_key(shape_key(counter[0]), counter[1])


def _gone(before: Iterable[DemandKey], marks: Mapping[DemandKey, Checkpoints]) -> list[DemandKey]:
    return [k for k in before if k not in marks]
