"""Job records and the per-shape demand counters in the state table, changed together in one transaction.

Every status change is one ``TransactWriteItems``: an Update of ``JOB#{id}`` whose condition says the job
is where the caller thinks it is (QUEUED to start; RUNNING on that node to finish, fail or requeue), and
an ``ADD`` on the ``DEMAND`` counter of its shape and name (``job_records.count_op``; the round reads the
counters with ``demand_store``). Two workers racing for one job, or a duplicate message,
therefore change the counters once: the loser's condition fails and it is told so (None / False).

Submission (``record_jobs``, ``mark_enqueued``) is ``job_submissions``; cancellation is
``job_cancellation``; the record's format and the writes all three share are ``job_records``.

``attempts`` counts attempts used against ``max_attempts``: ``start_job`` adds one, ``requeue_job``
(interruption, drain, lost node: not the job's fault) gives it back. ``starts`` counts every start and is
never given back: it is the number a run is known by (``SHOAL_JOB_ATTEMPT``, and the ``attempt`` that
finish and fail name), so two runs of one job never share a number, even on one node after a requeue.

The worker's three transitions (start, finish, fail) are one write each, with no read first: the worker
holds the job (from its message) and the start number, and the conditions check both (a failure that uses
up the last attempt takes a second write). ``start_job`` guesses a first start; when the guess is wrong the
cancelled condition returns the record as it was (``ReturnValuesOnConditionCheckFailure``) and the retry
uses it. The start's condition also compares the stored job with the message's, so a message that is not
its record's job starts nothing, and the counter always moves under the record's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.adapters import job_cancellation
from shared.adapters.demand_store import read_counters
from shared.adapters.job_feed import FeedEventKind
from shared.adapters.job_records import (
    OUTPUT_TAIL_LIMIT,
    RACE_ROUNDS,
    announce_ops,
    count_op,
    job_json,
    record_from_item,
    transact_if_conditions_hold,
)
from shared.adapters.job_submissions import DynamoSubmissions
from shared.adapters.node_store import node_key
from shared.adapters.state_table import (
    TTL_ATTRIBUTE,
    StateTable,
    TransactionCancelledError,
    attr_names,
    get_int,
    get_str,
    job_key,
    key,
    n,
    need_str,
    s,
    started_on_partition,
    ttl,
)
from shared.domain import preemption
from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus, Market, NodeState, shape_key
from shared.domain.jobs import Job, Shape
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.services.ports import RecordedJobs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from shared.adapters.state_table import Item

PREEMPTED_PARTITION = "PREEMPTED"  # one item per job preempted at least once and not yet settled
STARTED_ON_TTL = 30 * 86400.0  # a start marker outlives any job run; the table forgets it after this


class DynamoJobStore:
    """``JobStore`` and ``SubmissionStore`` on the state table."""

    def __init__(self, table: StateTable) -> None:
        self._table = table
        self._submissions = DynamoSubmissions(table)

    # --- submission (job_submissions) -----------------------------------------------------------------

    def put_jobs(self, jobs: Sequence[Job], now: float) -> list[str]:
        return list(self.record_jobs(jobs, now).new)

    def record_jobs(self, jobs: Sequence[Job], now: float) -> RecordedJobs:
        return self._submissions.record_jobs(jobs, now)

    def mark_enqueued(self, job_ids: Sequence[str]) -> None:
        self._submissions.mark_enqueued(job_ids)

    def claim_demand_event(self, now: float, debounce_seconds: float) -> bool:
        return self._submissions.claim_demand_event(now, debounce_seconds)

    # --- reads ----------------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self._table.get(job_key(job_id))
        return None if item is None else self._record(item)

    def demand(self) -> dict[Shape, DemandCount]:
        """Queued and running jobs per requested shape (the counters of its job names summed)."""
        counts: dict[Shape, DemandCount] = {}
        for (shape, _), (queued, running) in read_counters(self._table).counts.items():
            have = counts.get(shape, DemandCount())
            counts[shape] = DemandCount(queued=have.queued + queued, running=have.running + running)
        return counts

    # --- transitions ----------------------------------------------------------------------------------

    def start_job(self, job: Job, node_id: str, now: float) -> int | None:
        # The hot path writes once, without a read: it guesses the first start of the job the message
        # describes. A wrong guess fails the condition, which hands back the record, and the retry uses it.
        stored, starts, on_demand_only = job_json(job), 0, False
        for _ in range(RACE_ROUNDS):
            # A record written before ``starts`` existed has none: it is at its first start as far as we know.
            known_starts = (
                "(#starts = :starts OR attribute_not_exists(#starts))" if starts == 0 else "#starts = :starts"
            )
            job_update = self._table.update_item_op(
                job_key(job.id),
                "SET #status = :running, #node = :node, #started_at = :now ADD #attempts :one, #starts :one",
                # A job past its preemption budget (``on_demand_only``) starts only on an on-demand node: the
                # hot path assumes it is not; when it is, the retry below checks the node's market.
                condition=f"#status = :queued AND {known_starts} AND #job = :job"
                + ("" if on_demand_only else " AND attribute_not_exists(#on_demand_only)"),
                names=attr_names("status", "node", "started_at", "attempts", "starts", "job")
                | ({} if on_demand_only else attr_names("on_demand_only")),
                values={
                    ":running": s(JobStatus.RUNNING),
                    ":queued": s(JobStatus.QUEUED),
                    ":node": s(node_id),
                    ":now": n(now),
                    ":one": n(1),
                    ":starts": n(starts),
                    ":job": s(stored),
                },
                return_old=True,
            )
            # No job starts on a node that is draining (or gone): the scaler may be about to terminate it.
            node_ready = self._node_ready(node_id, on_demand_only=on_demand_only)
            # Conditions first, the counter last: a cancelled transaction then has changed nothing even in
            # a backend that applies items in order without a rollback copy (the local cloud's patched moto).
            ops = [node_ready, job_update, self._count(job, queued=-1, running=+1)]
            ops.append(self._started_on(job.id, node_id, now))
            ops += announce_ops(self._table, job, FeedEventKind.START, now, node=node_id, attempt=starts + 1)
            try:
                self._table.transact(ops)
            except TransactionCancelledError as cancelled:
                if not cancelled.condition_failed:
                    raise
                if cancelled.reasons[0] == "ConditionalCheckFailed":
                    return None  # the node is draining
                old = cancelled.items[1]
                record = self._record(old) if old is not None else self.get_job(job.id)
                if record is None or record.status is not JobStatus.QUEUED or record.job != job:
                    return None  # taken, settled, unknown, or the message is not this record's job
                stored, starts = need_str(old, "job") if old is not None else job_json(record.job), record.starts
                on_demand_only = record.on_demand_only
                continue
            return starts + 1
        return None

    def _node_ready(self, node_id: str, *, on_demand_only: bool) -> TransactWriteItemTypeDef:
        """No job starts on a node that is draining (or gone): the scaler may be about to terminate it. A job
        past its preemption budget starts only on a node recorded as on-demand."""
        if on_demand_only:
            return self._table.condition_check_op(
                node_key(node_id),
                "#state IN (:pending, :active) AND #market = :on_demand",
                names=attr_names("state", "market"),
                values={
                    ":pending": s(NodeState.PENDING),
                    ":active": s(NodeState.ACTIVE),
                    ":on_demand": s(Market.ON_DEMAND),
                },
            )
        return self._table.condition_check_op(
            node_key(node_id),
            "attribute_not_exists(#pk) OR #state IN (:pending, :active)",
            names=attr_names("pk", "state"),
            values={":pending": s(NodeState.PENDING), ":active": s(NodeState.ACTIVE)},
        )

    def running_on(self, node_id: str) -> list[str]:
        """One Query of the node's start markers, then the records: those still RUNNING there. Markers of jobs
        that have moved on are deleted as they are found, so the partition holds little more than what runs."""
        marked = [need_str(item, "sk") for item in self._table.query(started_on_partition(node_id))]
        if not marked:
            return []
        running = {
            job_id for job_id, (status, node) in self.statuses(marked).items()
            if status is JobStatus.RUNNING and node == node_id
        }  # fmt: skip
        stale = [key(started_on_partition(node_id), job_id) for job_id in marked if job_id not in running]
        if stale:
            self._table.batch_write(deletes=stale)
        return sorted(running)

    def _started_on(self, job_id: str, node_id: str, now: float) -> TransactWriteItemTypeDef:
        """The start's marker: the job is findable by its node even if the node never reports it."""
        return self._table.put_item_op(
            key(started_on_partition(node_id), job_id) | {TTL_ATTRIBUTE: n(ttl(now + STARTED_ON_TTL))}
        )

    def finish_job(self, job: Job, node_id: str, *, attempt: int, exit_code: int, output_tail: str, now: float) -> bool:
        job_update = self._table.update_item_op(
            job_key(job.id),
            "SET #status = :succeeded, #finished_at = :now, #exit_code = :exit_code, #output_tail = :tail",
            condition="#status = :running AND #node = :node AND #starts = :start",
            names=attr_names("status", "finished_at", "exit_code", "output_tail", "node", "starts"),
            values={
                ":succeeded": s(JobStatus.SUCCEEDED),
                ":running": s(JobStatus.RUNNING),
                ":node": s(node_id),
                ":start": n(attempt),
                ":now": n(now),
                ":exit_code": n(exit_code),
                ":tail": s(output_tail[-OUTPUT_TAIL_LIMIT:]),
            },
        )
        announce = announce_ops(
            self._table, job, FeedEventKind.END, now, status=JobStatus.SUCCEEDED, exit_code=exit_code
        )
        return self._transition(job_update, self._count(job, running=-1), *announce)

    def fail_job(
        self,
        job: Job,
        node_id: str,
        *,
        attempt: int,
        reason: str,
        exit_code: int | None,
        output_tail: str,
        now: float,
    ) -> JobStatus | None:
        # First as a retry, on condition that attempts remain; when none do, the record comes back and a
        # second write fails the job for good.
        retry = self._fail_op(job, node_id, start=attempt, retry=True, reason=reason, exit_code=exit_code,
                              output_tail=output_tail, now=now)  # fmt: skip
        try:
            self._table.transact([retry, self._count(job, queued=+1, running=-1, now=now)])
        except TransactionCancelledError as cancelled:
            if not cancelled.condition_failed:
                raise
            old = cancelled.items[0]
            if old is None or get_str(old, "status") != JobStatus.RUNNING or get_str(old, "node") != node_id:
                return None
            if get_int(old, "starts") != attempt:
                return None
        else:
            return JobStatus.QUEUED
        final = self._fail_op(job, node_id, start=attempt, retry=False, reason=reason, exit_code=exit_code,
                              output_tail=output_tail, now=now)  # fmt: skip
        announce = announce_ops(
            self._table, job, FeedEventKind.END, now, status=JobStatus.FAILED, exit_code=exit_code, reason=reason
        )
        return JobStatus.FAILED if self._transition(final, self._count(job, running=-1), *announce) else None

    def _fail_op(
        self,
        job: Job,
        node_id: str,
        *,
        start: int,
        retry: bool,
        reason: str,
        exit_code: int | None,
        output_tail: str,
        now: float,
    ) -> TransactWriteItemTypeDef:
        values = {
            ":new": s(JobStatus.QUEUED if retry else JobStatus.FAILED),
            ":running": s(JobStatus.RUNNING),
            ":node": s(node_id),
            ":start": n(start),
            ":now": n(now),
            ":reason": s(reason),
            ":tail": s(output_tail[-OUTPUT_TAIL_LIMIT:]),
        }
        expression = "SET #status = :new, #finished_at = :now, #reason = :reason, #output_tail = :tail"
        if exit_code is not None:
            expression += ", #exit_code = :exit_code"
            values[":exit_code"] = n(exit_code)
        condition = "#status = :running AND #node = :node AND #starts = :start"
        if retry:
            expression += " REMOVE #node" + ("" if exit_code is not None else ", #exit_code")
            condition += " AND #attempts < :max_attempts"
            values[":max_attempts"] = n(job.max_attempts)
        elif exit_code is None:
            expression += " REMOVE #exit_code"
        return self._table.update_item_op(
            job_key(job.id),
            expression,
            condition=condition,
            names=attr_names("status", "finished_at", "reason", "output_tail", "exit_code", "node", "starts")
            | (attr_names("attempts") if retry else {}),
            values=values,
            return_old=retry,
        )

    def requeue_job(
        self,
        job_id: str,
        node_id: str,
        *,
        reason: str,
        now: float,
        preempted: bool = False,
        max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    ) -> bool:
        record = self.get_job(job_id)
        if record is None or record.status is not JobStatus.RUNNING or record.node != node_id:
            return False
        expression = "SET #status = :queued, #reason = :reason REMOVE #node ADD #attempts :minus_one"
        names = attr_names("status", "reason", "node", "attempts")
        values = {
            ":queued": s(JobStatus.QUEUED),
            ":running": s(JobStatus.RUNNING),
            ":node": s(node_id),
            ":reason": s(reason),
            ":minus_one": n(-1),
        }
        extra: list[TransactWriteItemTypeDef] = []
        if preempted:  # a spot reclaim: counted against the preemption budget, not the attempts
            expression += ", #preemptions :one"
            names |= attr_names("preemptions")
            values[":one"] = n(1)
            if preemption.on_demand_only(record.job, record.preemptions + 1, max_preemptions):
                expression = expression.replace(" REMOVE", ", #on_demand_only = :true REMOVE")
                names |= attr_names("on_demand_only")
                values[":true"] = {"BOOL": True}
            # Where the scaler finds the preempted jobs (O(preempted), not O(jobs)); removed once settled.
            extra.append(self._table.put_item_op({**key(PREEMPTED_PARTITION, job_id), "job_id": s(job_id)}))
        job_update = self._table.update_item_op(
            job_key(job_id), expression, condition="#status = :running AND #node = :node", names=names, values=values
        )
        return self._transition(job_update, self._count(record.job, queued=+1, running=-1, now=now), *extra)

    def preempted_jobs(self) -> list[JobRecord]:
        """The queued and running jobs that were preempted at least once (markers of settled ones are removed)."""
        ids = [need_str(item, "job_id") for item in self._table.query(PREEMPTED_PARTITION)]
        fields = ("job", "status", "attempts", "starts", "node", "submitted_at", "started_at", "reason")
        items = self._table.batch_get([job_key(i) for i in ids], (*fields, "preemptions", "on_demand_only"))
        records = [self._record(item) for item in items]
        live = [r for r in records if r.status in (JobStatus.QUEUED, JobStatus.RUNNING)]
        for job_id in set(ids) - {r.job.id for r in live}:
            self._table.delete(key(PREEMPTED_PARTITION, job_id))
        return live

    # --- cancellation ---------------------------------------------------------------------------------

    def cancel_jobs(self, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]:
        """QUEUED or RUNNING → CANCELLED; returns each cancelled id with the status it had.

        Ids already settled (or unknown) are left alone. A RUNNING job keeps its ``node`` until the agent
        running it has ended it (``release_cancelled``).
        """
        return job_cancellation.cancel_jobs(self._table, job_ids, reason=reason, now=now)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """Status and node of each id that has a record: batched reads (100 ids a call), not one per job."""
        items = self._table.batch_get([job_key(i) for i in dict.fromkeys(job_ids)], projection=("status", "node"))
        return {
            need_str(item, "pk").removeprefix("JOB#"): (JobStatus(need_str(item, "status")), get_str(item, "node"))
            for item in items
        }

    def release_cancelled(self, job_id: str, node_id: str, *, now: float) -> bool:
        """The agent on ``node_id`` has ended a CANCELLED job: clear its node. False if not cancelled there."""
        released = self._table.update(
            job_key(job_id),
            "SET #stopped_at = :now REMOVE #node",
            condition="#status = :cancelled AND #node = :node",
            names=attr_names("stopped_at", "node", "status"),
            values={":now": n(now), ":cancelled": s(JobStatus.CANCELLED), ":node": s(node_id)},
        )
        return released is not None

    # --- helpers --------------------------------------------------------------------------------------

    def _transition(self, *items: TransactWriteItemTypeDef) -> bool:
        return transact_if_conditions_hold(self._table, items)

    def _count(self, job: Job, *, queued: int = 0, running: int = 0, now: float = 0.0) -> TransactWriteItemTypeDef:
        return count_op(self._table, shape_key(job.shape), job.name, queued=queued, running=running, now=now)

    def _record(self, item: Item) -> JobRecord:
        return record_from_item(item, self._table.name)
