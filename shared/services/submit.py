"""Submitting jobs: record them, enqueue them, then nudge the scaler; in that order, so no job is lost.

1. ``store.record_jobs``: job records (QUEUED, ``enqueued = false``) and demand counters, in transactions;
   a resubmitted id is neither stored nor counted again.
2. ``queue.send_jobs`` for the new ids, plus any known id whose message never reached the queue (a
   previous submit that failed between 1 and 3); then ``store.mark_enqueued``.
3. One "demand changed" event per call, debounced through the table: only the submitter that wins
   the conditional update of ``sent_at`` sends, and none within ``debounce_seconds`` of the last one.
   A skipped or failed event delays scaling up by one scheduled round at most; it never loses a job.

If 2 fails, ``SubmitError`` names the ids that are recorded but not in the queue; submitting the same
jobs again sends exactly those (and does not count anything twice).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.jobs import Job
from shared.services.ports import (
    DemandEvents,
    EventPublishError,
    JobQueueError,
    JobSender,
    JobsNotSentError,
    Now,
    StoreError,
    SubmissionStore,
)

DEFAULT_DEBOUNCE_SECONDS = 5.0


class SubmitError(RuntimeError):
    """Jobs were recorded but did not all reach the queue; ``recorded_not_enqueued`` names them."""

    def __init__(self, message: str, *, recorded_not_enqueued: Sequence[str]) -> None:
        super().__init__(message)
        self.recorded_not_enqueued = tuple(recorded_not_enqueued)


class SubmitConfigError(ValueError):
    """A submit setting is missing; the message names the flag and the environment variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitResult:
    submitted: tuple[str, ...]  # new ids: recorded, counted and enqueued by this call
    already_known: tuple[str, ...]  # ids an earlier submission recorded: not counted again
    re_enqueued: tuple[str, ...] = ()  # known ids whose message had never reached the queue: sent now
    event_sent: bool = False  # False: debounced (one was sent moments ago), nothing new, or it failed
    warnings: tuple[str, ...] = ()  # what went wrong after the jobs were safely queued


def submit_jobs(
    jobs: Sequence[Job],
    *,
    store: SubmissionStore,
    queue: JobSender,
    events: DemandEvents,
    cluster: str,
    now: float,
    debounce_seconds: float = DEFAULT_DEBOUNCE_SECONDS,
) -> SubmitResult:
    unique = list({job.id: job for job in reversed(jobs)}.values())[::-1]
    try:
        recorded = store.record_jobs(unique, now)
    except StoreError as error:  # part of them may be recorded: a resubmit enqueues those
        raise SubmitError(
            f"recording the jobs failed, some may be recorded but not in the queue; "
            f"submit the same jobs again once this is fixed. Cause: {error}",
            recorded_not_enqueued=(),
        ) from error
    send_ids = set(recorded.new) | set(recorded.not_enqueued)
    to_send = [job for job in unique if job.id in send_ids]
    try:
        queue.send_jobs(to_send)
    except JobQueueError as error:
        unsent = set(error.unsent_job_ids) if isinstance(error, JobsNotSentError) else send_ids
        sent = [job.id for job in to_send if job.id not in unsent]
        # If this fails too, a resubmit sends those again: a duplicate message, which workers skip.
        with contextlib.suppress(StoreError):
            store.mark_enqueued(sent)
        missing = [job.id for job in to_send if job.id in unsent]
        raise SubmitError(
            f"{len(missing)} jobs are recorded but not in the queue ({_name_some(missing)}); "
            f"submit the same jobs again to enqueue them. Cause: {error}",
            recorded_not_enqueued=missing,
        ) from error
    warnings: list[str] = []
    try:
        store.mark_enqueued([job.id for job in to_send])
    except StoreError as error:  # the jobs are in the queue; a resubmit would only send duplicates
        warnings.append(f"the jobs are queued, but confirming that in the table failed: {error}")

    event_sent = False
    if to_send:
        try:
            if store.claim_demand_event(now, debounce_seconds):
                queued = sum(count.queued for count in store.demand().values())
                events.publish_demand_changed(cluster=cluster, queued=queued, now=now)
                event_sent = True
        except (EventPublishError, StoreError) as error:
            warnings.append(f"the scaler was not woken, its next scheduled round will find the jobs: {error}")
    new = set(recorded.new)
    return SubmitResult(
        submitted=recorded.new,
        already_known=tuple(job.id for job in unique if job.id not in new),
        re_enqueued=recorded.not_enqueued,
        event_sent=event_sent,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitConfig:
    """Where a cluster's submissions go (``shared.wiring.settings.read_submit_config`` reads the ``SHOAL_*``
    variables the stack outputs)."""

    table_name: str
    queue_url: str
    cluster: str
    region: str | None = None  # None: the AWS SDK's default (AWS_REGION, the profile, ...)
    event_bus_name: str = "default"


class ShoalClient:
    """The Python API: ``build_submit_client(read_submit_config()).submit(jobs)`` (``shared.wiring``)."""

    def __init__(
        self,
        *,
        store: SubmissionStore,
        queue: JobSender,
        events: DemandEvents,
        cluster: str,
        clock: Now = time.time,
    ) -> None:
        self.store, self.queue, self.events, self.cluster, self._clock = store, queue, events, cluster, clock

    def submit(self, jobs: Sequence[Job], *, debounce_seconds: float = DEFAULT_DEBOUNCE_SECONDS) -> SubmitResult:
        return submit_jobs(
            jobs,
            store=self.store,
            queue=self.queue,
            events=self.events,
            cluster=self.cluster,
            now=self._clock(),
            debounce_seconds=debounce_seconds,
        )


def _name_some(ids: Sequence[str], shown: int = 10) -> str:
    named = ", ".join(repr(i) for i in ids[:shown])
    return named + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
