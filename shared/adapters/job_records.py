"""A job's record in the state table: its stored JSON, the record read back, and the writes every job
transaction shares (the shape's demand counter, the feed announcement, the all-or-nothing transaction).

Used by the three writers of job records: the submitter (``job_submissions``), the workers' transitions
(``job_store``) and cancellation (``job_cancellation``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.adapters.job_feed import FeedEvent, FeedEventKind, feed_item
from shared.adapters.state_table import (
    StateTable,
    StateTableError,
    TransactionCancelledError,
    attr_names,
    demand_key,
    get_float,
    get_int,
    get_str,
    n,
    need_str,
)
from shared.domain.cluster_state import JobRecord, JobStatus
from shared.domain.jobs import Job, JobSpecError, parse_job

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from shared.adapters.state_table import Item

OUTPUT_TAIL_LIMIT = 8192  # characters kept on the record (the agent sends at most 4 KiB)
RACE_ROUNDS = 8  # re-read and retry this often when another writer changed a job between our read and write


def job_json(job: Job) -> str:
    """The job as its record stores it: canonical JSON, so the same job always compares equal."""
    return json.dumps(job.to_dict(), sort_keys=True, separators=(",", ":"))


def record_from_item(item: Item, table_name: str) -> JobRecord:
    """The ``JOB#{id}`` item read back; a record whose job does not parse is named as corrupt."""
    try:
        job = parse_job(json.loads(need_str(item, "job")))
    except (json.JSONDecodeError, JobSpecError) as error:
        raise StateTableError(
            f"job record {get_str(item, 'pk')!r} in table {table_name!r} is corrupt: {error}"
        ) from None
    return JobRecord(
        job=job,
        status=JobStatus(need_str(item, "status")),
        attempts=get_int(item, "attempts") or 0,
        starts=get_int(item, "starts") or 0,
        node=get_str(item, "node"),
        submitted_at=get_float(item, "submitted_at") or 0.0,
        started_at=get_float(item, "started_at"),
        finished_at=get_float(item, "finished_at"),
        exit_code=get_int(item, "exit_code"),
        output_tail=get_str(item, "output_tail"),
        reason=get_str(item, "reason"),
        cancelled_at=get_float(item, "cancelled_at"),
        preemptions=get_int(item, "preemptions") or 0,
        on_demand_only=bool(item.get("on_demand_only", {}).get("BOOL", False)),
    )


def count_op(
    table: StateTable, shape_key: str, name: str | None, *, queued: int = 0, running: int = 0, now: float = 0.0
) -> TransactWriteItemTypeDef:
    """The Update that moves the ``DEMAND`` counters of one requested shape and job name, in the same transaction
    as the job's change. An enqueue (submitted, retried, requeued: ``queued`` > 0) also counts in ``enqueued``
    and sets ``enqueued_at`` to ``now``, so the round can tell when the oldest queued job came
    (``shared.domain.demand.queue_marks``); the same one Update either way."""
    if queued <= 0:
        return table.update_item_op(
            demand_key(shape_key, name),
            "ADD #queued :queued, #running :running",
            names=attr_names("queued", "running"),
            values={":queued": n(queued), ":running": n(running)},
        )
    return table.update_item_op(
        demand_key(shape_key, name),
        "SET #enqueued_at = :now ADD #queued :queued, #running :running, #enqueued :queued",
        names=attr_names("queued", "running", "enqueued", "enqueued_at"),
        values={":queued": n(queued), ":running": n(running), ":now": n(now)},
    )


def announce_ops(
    table: StateTable,
    job: Job,
    kind: FeedEventKind,
    now: float,
    *,
    node: str | None = None,
    attempt: int | None = None,
    status: JobStatus | None = None,
    exit_code: int | None = None,
    reason: str | None = None,
) -> list[TransactWriteItemTypeDef]:
    """The Put announcing this transition on the job's feed, if it names one."""
    if job.feed is None:
        return []
    event = FeedEvent(
        job_id=job.id,
        kind=kind,
        at=now,
        node=node,
        attempt=attempt,
        status=status,
        exit_code=exit_code,
        reason=reason,
    )
    return [table.put_item_op(feed_item(job.feed, event))]


def transact_if_conditions_hold(table: StateTable, items: Sequence[TransactWriteItemTypeDef]) -> bool:
    """All or nothing; False when a condition no longer holds."""
    try:
        table.transact(list(items))
    except TransactionCancelledError as cancelled:
        if cancelled.condition_failed:
            return False
        raise
    return True
