"""Recording submitted jobs in the state table, idempotently, and confirming them once they are in the queue.

Submission (``record_jobs``) is idempotent per job id: a job's Put carries ``attribute_not_exists(pk)``,
so a resubmitted id is neither stored nor counted again, even when two submitters race. What closes
the gap between "recorded" and "in the queue" is a marker per recording transaction,
``SUBMISSION``/``{batch id}``, whose string set ``pending`` holds the ids of that transaction's jobs; it
is written in the same transaction as the jobs. Once SQS accepted their messages the submitter removes
them from ``pending`` (``mark_enqueued``: one UpdateItem per batch, ``DELETE pending :ids``). A later
resubmit of the same ids learns which recorded, still QUEUED jobs are still pending (``not_enqueued``)
and sends them. The marker is the submitter's alone, so confirming never contends with the workers'
job transitions. A crash between SQS and ``mark_enqueued`` makes that resubmit send a duplicate
message, which the worker recognises (its ``start_job`` finds the job no longer QUEUED).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from shared.adapters.job_records import RACE_ROUNDS, count_op, job_json
from shared.adapters.state_table import (
    TRANSACTION_LIMIT,
    StateTable,
    StateTableError,
    TransactionCancelledError,
    attr_names,
    get_str,
    job_key,
    key,
    n,
    need_str,
    s,
)
from shared.domain.cluster_state import JobStatus, shape_key
from shared.domain.jobs import Job, Shape
from shared.services.ports import RecordedJobs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from shared.adapters.state_table import Item

DEMAND_EVENT_KEY = key("CLUSTER", "DEMAND_EVENT")
MARKER_ITEMS = 1  # the batch's pending marker rides in each recording transaction


def submission_key(batch_id: str) -> Item:
    return key("SUBMISSION", batch_id)


class DynamoSubmissions:
    """The submitter's side of ``SubmissionStore``: record, confirm in the queue, debounce "demand changed"."""

    def __init__(self, table: StateTable) -> None:
        self._table = table
        self._batch_of: dict[str, str] = {}  # job id → its recording batch, until confirmed in the queue

    def record_jobs(self, jobs: Sequence[Job], now: float) -> RecordedJobs:
        unique = list({job.id: job for job in reversed(jobs)}.values())[::-1]  # first of each id wins
        order = {job.id: i for i, job in enumerate(unique)}
        batch_prefix = f"{round(now * 1000):015d}-{uuid.uuid4().hex[:12]}"
        batches = itertools.count()
        new: list[str] = []
        not_enqueued: list[str] = []
        pending = unique
        for _ in range(RACE_ROUNDS):
            known = self._batches_of([job.id for job in pending])
            not_enqueued += self._still_pending(known)
            raced: list[Job] = []
            for chunk in _transaction_chunks([job for job in pending if job.id not in known]):
                batch_id = f"{batch_prefix}-{next(batches)}"
                try:
                    self._table.transact(self._record_ops(chunk, batch_id, now))
                except TransactionCancelledError as cancelled:
                    if not cancelled.condition_failed:
                        raise
                    raced += chunk  # someone recorded one of these meanwhile: look again
                else:
                    new += [job.id for job in chunk]
                    self._batch_of.update(dict.fromkeys((job.id for job in chunk), batch_id))
            if not raced:
                break
            pending = raced
        else:
            raise StateTableError(
                f"could not record jobs in table {self._table.name!r}: other submitters kept writing the same ids"
            )
        return RecordedJobs(
            new=tuple(sorted(new, key=order.__getitem__)),
            not_enqueued=tuple(sorted(not_enqueued, key=order.__getitem__)),
        )

    def mark_enqueued(self, job_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(job_ids))
        unknown = [job_id for job_id in ids if job_id not in self._batch_of]
        if unknown:
            found = self._batches_of(unknown)
            self._batch_of.update({job_id: batch for job_id, (_, batch) in found.items() if batch is not None})
        by_batch: dict[str, list[str]] = {}
        for job_id in ids:
            batch_id = self._batch_of.pop(job_id, None)
            if batch_id is not None:
                by_batch.setdefault(batch_id, []).append(job_id)
        for batch_id, batch_ids in by_batch.items():
            self._table.update(
                submission_key(batch_id),
                "DELETE #pending :ids",
                condition="attribute_exists(#pk)",
                names=attr_names("pending", "pk"),
                values={":ids": {"SS": batch_ids}},
            )

    def claim_demand_event(self, now: float, debounce_seconds: float) -> bool:
        claimed = self._table.update(
            DEMAND_EVENT_KEY,
            "SET #sent_at = :now",
            condition="attribute_not_exists(#sent_at) OR #sent_at <= :cutoff",
            names={"#sent_at": "sent_at"},
            values={":now": n(now), ":cutoff": n(now - debounce_seconds)},
        )
        return claimed is not None

    def _record_ops(self, jobs: Sequence[Job], batch_id: str, now: float) -> list[TransactWriteItemTypeDef]:
        """Puts of the jobs, one counter Update per shape, and the batch's ``pending`` marker."""
        per_shape: dict[tuple[str, str | None], int] = {}
        ops: list[TransactWriteItemTypeDef] = []
        for job in jobs:
            key_of_shape = shape_key(job.shape)
            per_shape[key_of_shape, job.name] = per_shape.get((key_of_shape, job.name), 0) + 1
            item: Item = {
                **job_key(job.id),
                "status": s(JobStatus.QUEUED),
                "attempts": n(0),
                "starts": n(0),
                "submitted_at": n(now),
                "job": s(job_json(job)),
                "shape": s(key_of_shape),
                "batch": s(batch_id),
            }
            if job.name is not None:
                item["name"] = s(job.name)
            ops.append(self._table.put_item_op(item, condition="attribute_not_exists(#pk)", names={"#pk": "pk"}))
        ops += [count_op(self._table, *counter, queued=count, now=now) for counter, count in per_shape.items()]
        marker: Item = {**submission_key(batch_id), "pending": {"SS": [job.id for job in jobs]}, "created_at": n(now)}
        ops.append(self._table.put_item_op(marker))
        return ops

    def _batches_of(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """Status and recording batch of each id that has a record."""
        items = self._table.batch_get([job_key(i) for i in job_ids], projection=("status", "batch"))
        return {
            need_str(item, "pk").removeprefix("JOB#"): (JobStatus(need_str(item, "status")), get_str(item, "batch"))
            for item in items
        }

    def _still_pending(self, known: Mapping[str, tuple[JobStatus, str | None]]) -> list[str]:
        """The QUEUED ids whose batch marker still lists them: recorded, never confirmed in the queue."""
        queued = {job_id: batch for job_id, (status, batch) in known.items() if status is JobStatus.QUEUED and batch}
        markers = self._table.batch_get([submission_key(b) for b in sorted(set(queued.values()))], ("pending",))
        pending: set[str] = set()
        for marker in markers:
            value = marker.get("pending")
            pending.update(value.get("SS", []) if value is not None else [])
        still = {job_id: batch for job_id, batch in queued.items() if job_id in pending}
        self._batch_of.update(still)
        return list(still)


def _transaction_chunks(jobs: Sequence[Job]) -> Iterator[list[Job]]:
    """Groups whose Puts, one counter Update per distinct shape and name and the marker fit in one transaction."""
    chunk: list[Job] = []
    shapes: set[tuple[Shape, str | None]] = set()
    for job in jobs:
        extra_shape = 0 if (job.shape, job.name) in shapes else 1
        if chunk and len(chunk) + 1 + len(shapes) + extra_shape + MARKER_ITEMS > TRANSACTION_LIMIT:
            yield chunk
            chunk, shapes = [], set()
        chunk.append(job)
        shapes.add((job.shape, job.name))
    if chunk:
        yield chunk
