"""Cancelling jobs in the state table: QUEUED or RUNNING → CANCELLED, many jobs a transaction.

Reads the ids' statuses in batches, then cancels in transactions of many jobs (their counters summed per
shape); a transaction that fails a condition is retried job by job, and a job that moved in between is
read again and retried alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from shared.adapters.job_records import RACE_ROUNDS, count_op
from shared.adapters.state_table import (
    TRANSACTION_LIMIT,
    StateTable,
    StateTableError,
    TransactionCancelledError,
    attr_names,
    get_str,
    job_key,
    n,
    need_str,
    s,
)
from shared.domain.cluster_state import JobStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

Counter = tuple[str, str | None]  # a demand counter: the job's shape key and name
Live = tuple[str, tuple[JobStatus, Counter]]  # job id → (its status, its counter)


def cancel_jobs(table: StateTable, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]:
    """QUEUED or RUNNING → CANCELLED; returns each cancelled id with the status it had (see the module)."""
    cancelled: dict[str, JobStatus] = {}
    pending = list(dict.fromkeys(job_ids))
    for _ in range(RACE_ROUNDS):
        raced: list[str] = []
        for chunk in _cancel_chunks(list(_live(table, pending).items())):
            if _cancel(table, chunk, reason, now):
                cancelled.update({job_id: status for job_id, (status, _) in chunk})
            elif len(chunk) == 1:
                raced += [job_id for job_id, _ in chunk]
            else:  # someone moved one of them: try each alone
                for one in chunk:
                    if _cancel(table, [one], reason, now):
                        cancelled[one[0]] = one[1][0]
                    else:
                        raced.append(one[0])
        if not raced:
            return cancelled
        pending = raced
    raise StateTableError(f"could not cancel {len(pending)} job(s) in table {table.name!r}: they kept changing status")


def _cancel(table: StateTable, chunk: Sequence[Live], reason: str, now: float) -> bool:
    """One transaction cancelling ``chunk``; False when one of them is no longer where it was read."""
    try:
        table.transact(_cancel_ops(table, chunk, reason, now))
    except TransactionCancelledError as failed:
        if not failed.condition_failed:
            raise
        return False
    return True


def _live(table: StateTable, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, Counter]]:
    """The QUEUED or RUNNING ones among ``job_ids``: status and shape key."""
    items = table.batch_get([job_key(i) for i in job_ids], projection=("status", "shape", "name"))
    live: dict[str, tuple[JobStatus, Counter]] = {}
    for item in items:
        status = JobStatus(need_str(item, "status"))
        if status in (JobStatus.QUEUED, JobStatus.RUNNING):
            live[need_str(item, "pk").removeprefix("JOB#")] = (status, (need_str(item, "shape"), get_str(item, "name")))
    return live


def _cancel_ops(table: StateTable, chunk: Sequence[Live], reason: str, now: float) -> list[TransactWriteItemTypeDef]:
    ops: list[TransactWriteItemTypeDef] = []
    deltas: dict[Counter, tuple[int, int]] = {}
    for job_id, (status, shape) in chunk:
        ops.append(
            table.update_item_op(
                job_key(job_id),
                "SET #status = :cancelled, #cancelled_at = :now, #reason = :reason",
                condition="#status = :was",
                names=attr_names("status", "cancelled_at", "reason"),
                values={":cancelled": s(JobStatus.CANCELLED), ":was": s(status), ":now": n(now), ":reason": s(reason)},
            )
        )
        queued, running = deltas.get(shape, (0, 0))
        deltas[shape] = (queued - (status is JobStatus.QUEUED), running - (status is JobStatus.RUNNING))
    ops += [count_op(table, *counter, queued=queued, running=running) for counter, (queued, running) in deltas.items()]
    return ops


def _cancel_chunks(live: Sequence[Live]) -> Iterator[list[Live]]:
    """Groups whose Updates and one counter Update per distinct shape fit in one transaction."""
    chunk: list[Live] = []
    shapes: set[Counter] = set()
    for entry in live:
        shape = entry[1][1]
        if chunk and len(chunk) + 1 + len(shapes | {shape}) > TRANSACTION_LIMIT:
            yield chunk
            chunk, shapes = [], set()
        chunk.append(entry)
        shapes.add(shape)
    if chunk:
        yield chunk
