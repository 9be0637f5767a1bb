"""The in-memory twin of ``DynamoJobStore``: the job records and the demand counters (per requested shape and job
name, with the jobs ever enqueued, as ``DynamoDemandStore`` reads them), with the same conditions.

One lock stands in for DynamoDB's per-item atomicity (and its transactions). Nothing here survives the
process: tests, benchmarks and the local cloud only (left out of the Lambda asset and the node code).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from shared.adapters.job_records import OUTPUT_TAIL_LIMIT
from shared.domain import preemption
from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus
from shared.domain.demand import Counters, DemandKey, Enqueued, RunningJob
from shared.domain.jobs import Job, Shape
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.services.ports import RecordedJobs


class MemoryJobStore:
    """``JobStore`` and ``SubmissionStore`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, JobRecord] = {}
        self._enqueued: dict[str, bool] = {}
        self._counts: dict[DemandKey, tuple[int, int]] = {}  # (queued, running) per requested shape and name
        self._ever: dict[DemandKey, Enqueued] = {}
        self._demand_event_at: float | None = None

    def put_jobs(self, jobs: Sequence[Job], now: float) -> list[str]:
        return list(self.record_jobs(jobs, now).new)

    def record_jobs(self, jobs: Sequence[Job], now: float) -> RecordedJobs:
        new: list[str] = []
        not_enqueued: list[str] = []
        with self._lock:
            for job in list({job.id: job for job in reversed(jobs)}.values())[::-1]:
                known = self._records.get(job.id)
                if known is not None:
                    if known.status is JobStatus.QUEUED and not self._enqueued[job.id]:
                        not_enqueued.append(job.id)
                    continue
                self._records[job.id] = JobRecord(job=job, status=JobStatus.QUEUED, submitted_at=now)
                self._enqueued[job.id] = False
                self._add(job, now, queued=+1)
                new.append(job.id)
        return RecordedJobs(new=tuple(new), not_enqueued=tuple(not_enqueued))

    def mark_enqueued(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                if job_id in self._records:
                    self._enqueued[job_id] = True

    def claim_demand_event(self, now: float, debounce_seconds: float) -> bool:
        with self._lock:
            if self._demand_event_at is not None and self._demand_event_at > now - debounce_seconds:
                return False
            self._demand_event_at = now
            return True

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._records.get(job_id)

    def demand(self) -> dict[Shape, DemandCount]:
        out: dict[Shape, DemandCount] = {}
        with self._lock:
            for (shape, _), (queued, running) in self._counts.items():
                if queued > 0 or running > 0:
                    count = out.get(shape, DemandCount())
                    out[shape] = DemandCount(queued=count.queued + queued, running=count.running + running)
        return out

    def counters(self) -> Counters:
        """The counters per requested shape and job name (``round_demand.DemandSource.counters``)."""
        with self._lock:
            counts = {k: c for k, c in self._counts.items() if c[0] > 0 or c[1] > 0}
            return Counters(counts=counts, enqueued={k: e for k, e in self._ever.items() if k in counts})

    def running_jobs(self, job_ids: Sequence[str]) -> list[RunningJob]:
        """The RUNNING records among ``job_ids`` (``round_demand.DemandSource.running_jobs``)."""
        with self._lock:
            records = [(i, r) for i in dict.fromkeys(job_ids) if (r := self._records.get(i)) is not None]
        return [
            RunningJob(job_id=i, key=(r.job.shape, r.job.name), started_at=r.started_at, node=r.node)
            for i, r in records
            if r.status is JobStatus.RUNNING and r.started_at is not None and r.node is not None
        ]

    def running_on(self, node_id: str) -> list[str]:
        with self._lock:
            return sorted(i for i, r in self._records.items() if r.status is JobStatus.RUNNING and r.node == node_id)

    def start_job(self, job: Job, node_id: str, now: float) -> int | None:
        with self._lock:
            record = self._records.get(job.id)
            if record is None or record.status is not JobStatus.QUEUED or record.job != job:
                return None
            start = record.starts + 1
            self._records[job.id] = replace(
                record,
                status=JobStatus.RUNNING,
                node=node_id,
                started_at=now,
                attempts=record.attempts + 1,
                starts=start,
            )
            self._add(record.job, now, queued=-1, running=+1)
            return start

    def finish_job(self, job: Job, node_id: str, *, attempt: int, exit_code: int, output_tail: str, now: float) -> bool:
        with self._lock:
            record = self._running_on(job.id, node_id, attempt)
            if record is None:
                return False
            self._records[job.id] = replace(
                record,
                status=JobStatus.SUCCEEDED,
                finished_at=now,
                exit_code=exit_code,
                output_tail=output_tail[-OUTPUT_TAIL_LIMIT:],
            )
            self._add(record.job, now, running=-1)
            return True

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
        with self._lock:
            record = self._running_on(job.id, node_id, attempt)
            if record is None:
                return None
            retry = record.attempts < job.max_attempts
            status = JobStatus.QUEUED if retry else JobStatus.FAILED
            self._records[job.id] = replace(
                record,
                status=status,
                node=None if retry else record.node,
                finished_at=now,
                exit_code=exit_code,
                output_tail=output_tail[-OUTPUT_TAIL_LIMIT:],
                reason=reason,
            )
            self._add(record.job, now, queued=+1 if retry else 0, running=-1)
            return status

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
        with self._lock:
            record = self._running_on(job_id, node_id)
            if record is None:
                return False
            preemptions = record.preemptions + preempted
            self._records[job_id] = replace(
                record,
                status=JobStatus.QUEUED,
                node=None,
                reason=reason,
                attempts=record.attempts - 1,
                preemptions=preemptions,
                on_demand_only=record.on_demand_only
                or (preempted and preemption.on_demand_only(record.job, preemptions, max_preemptions)),
            )
            self._add(record.job, now, queued=+1, running=-1)
            return True

    def preempted_jobs(self) -> list[JobRecord]:
        with self._lock:
            return [
                r for r in self._records.values() if r.preemptions and r.status in (JobStatus.QUEUED, JobStatus.RUNNING)
            ]

    def cancel_jobs(self, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]:
        cancelled: dict[str, JobStatus] = {}
        with self._lock:
            for job_id in dict.fromkeys(job_ids):
                record = self._records.get(job_id)
                if record is None or record.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                    continue
                self._records[job_id] = replace(record, status=JobStatus.CANCELLED, cancelled_at=now, reason=reason)
                queued = record.status is JobStatus.QUEUED
                self._add(record.job, now, queued=-1 if queued else 0, running=0 if queued else -1)
                cancelled[job_id] = record.status
        return cancelled

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        with self._lock:
            return {i: (r.status, r.node) for i in job_ids if (r := self._records.get(i)) is not None}

    def release_cancelled(self, job_id: str, node_id: str, *, now: float) -> bool:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.status is not JobStatus.CANCELLED or record.node != node_id:
                return False
            self._records[job_id] = replace(record, node=None)
            return True

    def _running_on(self, job_id: str, node_id: str, attempt: int | None = None) -> JobRecord | None:
        record = self._records.get(job_id)
        if record is None or record.status is not JobStatus.RUNNING or record.node != node_id:
            return None
        return record if attempt is None or record.starts == attempt else None

    def _add(self, job: Job, now: float, *, queued: int = 0, running: int = 0) -> None:
        """Move the counter of ``job``'s requested shape and name, as ``job_records.demand_update`` does; an
        enqueue (``queued`` > 0) also counts in the jobs ever enqueued, and when the last was."""
        key = (job.shape, job.name)
        count = self._counts.get(key, (0, 0))
        self._counts[key] = (count[0] + queued, count[1] + running)
        if queued > 0:
            self._ever[key] = (self._ever.get(key, (0, now))[0] + queued, now)
