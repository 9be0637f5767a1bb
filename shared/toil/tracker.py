"""What a workflow engine's leader needs from Shoal, without Toil: submit in batches, learn starts and ends
from the completion feed, cancel and wait until cancelled jobs have stopped.

``JobTracker`` owns two threads:

- the submitter collects jobs for a short window (``batch_window``) and submits them together
  (``ShoalClient.submit``: records in transactions, queue messages ten to a call, one "demand changed"
  event); a failed submit is retried (submission is idempotent per id) and, after ``submit_attempts``,
  every job of the batch is reported failed, so the leader never waits for a job that is not there;
- the poller reads the feed (one Query, whatever the number of jobs out) every ``poll_interval``, keeps
  the start time of each started job, and queues each end for ``next_finished``. Every ``audit_interval``
  it also reads the records of the jobs out (batched, 100 a call): a job that ended without an
  announcement (an agent from before the feed, a record removed by hand, a job cancelled by someone else)
  is reported from its record rather than waited for forever.

Cancelled jobs are never reported: the tracker forgets them at once, and ignores their announcements.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.cluster_state import JobRecord, JobStatus
from shared.domain.jobs import Job
from shared.formats.job_feed import FeedEvent, FeedEventKind
from shared.services.ports import Now
from shared.services.submit import SubmitResult

log = logging.getLogger(__name__)

MAX_SUBMIT_BATCH = 500  # jobs per ShoalClient.submit call
CANCEL_REASON = "cancelled by its submitter"


class Submitter(Protocol):
    def submit(self, jobs: Sequence[Job]) -> SubmitResult: ...


class Cancellations(Protocol):
    def cancel_jobs(self, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]: ...

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]: ...

    def get_job(self, job_id: str) -> JobRecord | None: ...


class Feed(Protocol):
    def read(self) -> list[FeedEvent]: ...

    def acknowledge(self, events: Sequence[FeedEvent]) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """One job's end as the leader learns it."""

    job_id: str
    succeeded: bool
    exit_code: int | None  # None: it never ran (could not start, or could not be submitted)
    wall_time: float | None  # seconds from start to end; None when the start was not seen
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerSettings:
    poll_interval: float = 1.0  # seconds between feed reads
    batch_window: float = 0.2  # seconds the submitter waits for more jobs before submitting
    submit_attempts: int = 5
    retry_delay: float = 2.0  # seconds before retrying a failed submit, doubling
    stop_wait: float = 120.0  # seconds cancel() waits for running cancelled jobs to stop
    stop_poll: float = 0.5
    audit_interval: float = 300.0  # seconds between reads of the outstanding jobs' records


class JobTracker:
    def __init__(
        self,
        *,
        client: Submitter,
        store: Cancellations,
        feed: Feed,
        settings: TrackerSettings | None = None,
        clock: Now = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._feed = feed
        self.settings = settings or TrackerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._wake_submitter = threading.Condition(self._lock)
        self._submit_lock = threading.Lock()  # held while a batch is being submitted; cancel() waits for it
        self._pending: list[Job] = []  # issued, not yet submitted
        self._submitted: set[str] = set()  # submitted, not yet ended (nor cancelled)
        self._started: dict[str, float] = {}  # job id -> when it started (agent's clock)
        self._finished: queue.Queue[Finished] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_audit = time.monotonic() + self.settings.audit_interval

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._submit_loop, "shoal-submitter"), (self._poll_loop, "shoal-feed")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop both threads (jobs not yet submitted are dropped; call ``cancel`` first to withdraw the rest)."""
        self._stopping.set()
        with self._wake_submitter:
            self._wake_submitter.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    # --- what the leader asks -------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._wake_submitter:
            self._pending.append(job)
            self._wake_submitter.notify_all()

    def issued(self) -> set[str]:
        with self._lock:
            return {job.id for job in self._pending} | self._submitted

    def running(self) -> dict[str, float]:
        """Started, not yet ended: job id → when it started."""
        with self._lock:
            return dict(self._started)

    def next_finished(self, timeout: float) -> Finished | None:
        try:
            return self._finished.get(timeout=timeout) if timeout > 0 else self._finished.get_nowait()
        except queue.Empty:
            return None

    def cancel(self, job_ids: Sequence[str], *, wait: bool = True) -> list[str]:
        """Withdraw jobs: never run (again), never reported. With ``wait``, return once the running ones have
        stopped (or ``stop_wait`` has passed); returns the ids still stopping then (normally none)."""
        wanted = set(job_ids)
        with self._submit_lock, self._lock:  # not while a batch is half-submitted: it would escape the cancel
            self._pending = [job for job in self._pending if job.id not in wanted]
            ours = [i for i in job_ids if i in self._submitted]
            self._submitted.difference_update(wanted)
            for job_id in wanted:
                self._started.pop(job_id, None)
        if not ours:
            return []
        was = self._store.cancel_jobs(ours, reason=CANCEL_REASON, now=self._clock())
        stopping = [i for i, status in was.items() if status is JobStatus.RUNNING]
        if not wait or not stopping:
            return stopping
        return self._wait_stopped(stopping)

    # --- the submitter ----------------------------------------------------------------------------

    def _submit_loop(self) -> None:
        while not self._stopping.is_set():
            with self._wake_submitter:
                while not self._pending and not self._stopping.is_set():
                    self._wake_submitter.wait()
            if self._stopping.wait(self.settings.batch_window):
                return
            with self._submit_lock:
                with self._lock:
                    batch, self._pending = self._pending[:MAX_SUBMIT_BATCH], self._pending[MAX_SUBMIT_BATCH:]
                    self._submitted.update(job.id for job in batch)
                if batch:
                    self._submit(batch)

    def _submit(self, batch: list[Job]) -> None:
        delay = self.settings.retry_delay
        for attempt in range(1, self.settings.submit_attempts + 1):
            try:
                result = self._client.submit(batch)
            except Exception as error:
                log.warning("submitting %d job(s) failed (attempt %d): %s", len(batch), attempt, error)
                if attempt == self.settings.submit_attempts or self._stopping.wait(delay):
                    self._give_up(batch, f"could not be submitted to Shoal: {error}")
                    return
                delay *= 2
                continue
            for warning in result.warnings:
                log.warning("%s", warning)
            log.debug("submitted %d job(s) to Shoal", len(batch))
            return

    def _give_up(self, batch: list[Job], reason: str) -> None:
        with self._lock:
            lost = [job for job in batch if job.id in self._submitted]
            self._submitted.difference_update(job.id for job in lost)
        for job in lost:
            self._finished.put(Finished(job_id=job.id, succeeded=False, exit_code=None, wall_time=None, reason=reason))

    # --- the poller -------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
                if time.monotonic() >= self._next_audit:
                    self._next_audit = time.monotonic() + self.settings.audit_interval
                    self.audit()
            except Exception:
                log.exception("reading the Shoal completion feed failed; trying again")
            self._stopping.wait(self.settings.poll_interval)

    def poll(self) -> int:
        """Read the feed once and handle what it says; returns how many jobs ended."""
        events = self._feed.read()
        ended = 0
        with self._lock:
            for event in events:
                if event.job_id not in self._submitted:
                    continue  # cancelled, or not ours any more: nothing to tell
                if event.kind is FeedEventKind.START:
                    self._started[event.job_id] = event.at
                    continue
                started = self._started.pop(event.job_id, None)
                self._submitted.discard(event.job_id)
                wall = None if started is None else max(event.at - started, 1e-6)  # Toil wants > 0
                self._finished.put(
                    Finished(
                        job_id=event.job_id,
                        succeeded=event.status is JobStatus.SUCCEEDED,
                        exit_code=event.exit_code,
                        wall_time=wall,
                        reason=event.reason,
                    )
                )
                ended += 1
        if events:
            self._feed.acknowledge(events)
        return ended

    def audit(self) -> int:
        """Report the jobs out whose records say they ended (or have none) though no end was announced."""
        with self._lock:
            out = sorted(self._submitted)
        if not out:
            return 0
        statuses = self._store.statuses(out)
        ended = [i for i in out if i not in statuses or statuses[i][0] not in (JobStatus.QUEUED, JobStatus.RUNNING)]
        if not ended:
            return 0
        self.poll()  # an end announced since the records were read is reported from the feed, as usual
        reported = 0
        for job_id in ended:
            record = self._store.get_job(job_id)
            with self._lock:
                if job_id not in self._submitted:
                    continue
                self._submitted.discard(job_id)
                started = self._started.pop(job_id, None)
            finished = _from_record(job_id, record, started)
            log.warning("Shoal job %s ended without an announcement: %s", job_id, finished.reason or "succeeded")
            self._finished.put(finished)
            reported += 1
        return reported

    def _wait_stopped(self, job_ids: list[str]) -> list[str]:
        deadline = time.monotonic() + self.settings.stop_wait
        waiting = list(job_ids)
        while waiting:
            now = self._store.statuses(waiting)
            waiting = [i for i in waiting if i in now and now[i][0] is JobStatus.CANCELLED and now[i][1] is not None]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.settings.stop_poll)
        if waiting:
            log.warning(
                "%d cancelled job(s) had not stopped after %.0fs (their node may be gone): %s",
                len(waiting),
                self.settings.stop_wait,
                ", ".join(waiting[:10]),
            )
        return waiting


def _from_record(job_id: str, record: JobRecord | None, started: float | None) -> Finished:
    if record is None:
        return Finished(job_id=job_id, succeeded=False, exit_code=None, wall_time=None, reason="its record is gone")
    begun = record.started_at if record.started_at is not None else started
    wall = None if begun is None or record.finished_at is None else max(record.finished_at - begun, 1e-6)
    if record.status is JobStatus.SUCCEEDED:
        return Finished(job_id=job_id, succeeded=True, exit_code=record.exit_code or 0, wall_time=wall)
    reason = record.reason or f"the job is {record.status.value}"
    if record.status is JobStatus.CANCELLED:
        reason = f"cancelled by someone else: {reason}"
    return Finished(job_id=job_id, succeeded=False, exit_code=record.exit_code, wall_time=wall, reason=reason)
