"""The leader's side of Shoal without Toil: batched submits, the feed turned into ends, cancels."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from shared.adapters.job_feed import FeedEvent, FeedEventKind
from shared.domain.cluster_state import JobRecord, JobStatus
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.services.submit import SubmitResult
from shared.toil.tracker import Finished, JobTracker, TrackerSettings

SHAPE = Shape(resources=Resources(cores=1, memory=1 << 20, disk=1 << 20), wall_time=60)


def job(job_id: str) -> Job:
    return Job(id=job_id, shape=SHAPE, command="true", max_attempts=1, feed="f")


class Client:
    """Records each submit call; fails the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.failures = failures
        self.called = threading.Event()

    def submit(self, jobs: Sequence[Job]) -> SubmitResult:
        self.calls.append([j.id for j in jobs])
        self.called.set()
        if len(self.calls) <= self.failures:
            raise RuntimeError("queue unreachable")
        return SubmitResult(submitted=tuple(j.id for j in jobs), already_known=())


class Store:
    def __init__(self) -> None:
        self.status: dict[str, tuple[JobStatus, str | None]] = {}
        self.cancelled: list[str] = []

    def cancel_jobs(self, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]:
        self.cancelled += job_ids
        was = {i: self.status[i][0] for i in job_ids if i in self.status}
        self.status.update(dict.fromkeys(job_ids, (JobStatus.CANCELLED, None)))
        return was

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        return {i: self.status[i] for i in job_ids if i in self.status}

    def get_job(self, job_id: str) -> JobRecord | None:
        if job_id not in self.status:
            return None
        status = self.status[job_id][0]
        code = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 9}.get(status)
        return JobRecord(job=job(job_id), status=status, started_at=10.0, finished_at=14.0, exit_code=code)


class Feed:
    def __init__(self) -> None:
        self.events: list[FeedEvent] = []

    def read(self) -> list[FeedEvent]:
        return list(self.events)

    def acknowledge(self, events: Sequence[FeedEvent]) -> None:
        self.events = [e for e in self.events if e not in events]


def start(job_id: str, at: float) -> FeedEvent:
    return FeedEvent(job_id=job_id, kind=FeedEventKind.START, at=at, node="i-1", attempt=1)


def end(job_id: str, at: float, code: int | None = 0) -> FeedEvent:
    status = JobStatus.SUCCEEDED if code == 0 else JobStatus.FAILED
    return FeedEvent(job_id=job_id, kind=FeedEventKind.END, at=at, status=status, exit_code=code)


@pytest.fixture
def parts() -> tuple[Client, Store, Feed]:
    return Client(), Store(), Feed()


def submitted(tracker: JobTracker, client: Client, count: int) -> None:
    """Wait until the submitter thread has submitted ``count`` jobs in all."""
    for _ in range(500):
        if sum(len(c) for c in client.calls) >= count and not tracker._pending:
            return
        client.called.wait(0.01)
    pytest.fail("the submitter never submitted")


def test_jobs_issued_together_are_submitted_in_one_call(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    tracker = JobTracker(client=client, store=store, feed=feed, settings=TrackerSettings(batch_window=0.2))
    # GIVEN 30 jobs issued in a burst, before the submitter started
    for i in range(30):
        tracker.submit(job(f"j{i}"))
    tracker.start()
    try:
        # WHEN the submitter's window has passed
        submitted(tracker, client, 30)
        # THEN one call carried all of them, and they count as issued
        assert client.calls == [[f"j{i}" for i in range(30)]]
        assert tracker.issued() == {f"j{i}" for i in range(30)}
    finally:
        tracker.close()


def test_the_feed_becomes_running_jobs_then_ends_with_wall_times(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    tracker = JobTracker(client=client, store=store, feed=feed, settings=TrackerSettings(batch_window=0))
    tracker.submit(job("a"))
    tracker.submit(job("b"))
    tracker.start()
    try:
        submitted(tracker, client, 2)
        # GIVEN both started, then one ended with exit code 3
        feed.events = [start("a", 100.0), start("b", 101.0)]
        assert tracker.poll() == 0
        assert tracker.running() == {"a": 100.0, "b": 101.0}
        feed.events = [end("a", 112.5, code=3)]
        # WHEN the feed is read
        assert tracker.poll() == 1
        # THEN the end comes out once, with its exit code and wall time; the other still runs; the feed is empty
        assert tracker.next_finished(0) == Finished(job_id="a", succeeded=False, exit_code=3, wall_time=12.5)
        assert tracker.next_finished(0) is None
        assert tracker.running() == {"b": 101.0}
        assert tracker.issued() == {"b"}
        assert feed.events == []
    finally:
        tracker.close()


def test_a_cancelled_job_is_never_reported(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    tracker = JobTracker(client=client, store=store, feed=feed, settings=TrackerSettings(batch_window=0))
    tracker.submit(job("a"))
    tracker.start()
    try:
        submitted(tracker, client, 1)
        store.status["a"] = (JobStatus.QUEUED, None)
        # WHEN it is cancelled, and its end shows up on the feed anyway (it raced the cancel)
        assert tracker.cancel(["a"]) == []
        feed.events = [start("a", 1.0), end("a", 2.0)]
        tracker.poll()
        # THEN nothing is reported, nothing is issued or running, and the feed was cleared
        assert tracker.next_finished(0) is None
        assert tracker.issued() == set()
        assert tracker.running() == {}
        assert feed.events == []
    finally:
        tracker.close()


def test_a_job_cancelled_before_submission_is_never_submitted(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    tracker = JobTracker(client=client, store=store, feed=feed)
    # GIVEN an issued job the submitter has not sent yet (it is not running)
    tracker.submit(job("a"))
    # WHEN it is cancelled, and then the submitter runs
    tracker.cancel(["a"])
    tracker.submit(job("b"))
    tracker.start()
    try:
        submitted(tracker, client, 1)
        # THEN only the other was submitted, and the store was not asked to cancel anything
        assert client.calls == [["b"]]
        assert store.cancelled == []
    finally:
        tracker.close()


def test_cancel_waits_until_the_running_job_has_stopped(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    settings = TrackerSettings(batch_window=0, stop_poll=0.01, stop_wait=5)
    tracker = JobTracker(client=client, store=store, feed=feed, settings=settings)
    tracker.submit(job("a"))
    tracker.start()
    try:
        submitted(tracker, client, 1)
        store.status["a"] = (JobStatus.RUNNING, "i-1")
        reads = 0
        statuses = store.statuses

        def agent_stops_it_on_the_third_read(job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
            nonlocal reads
            reads += 1
            return statuses(job_ids) if reads < 3 else {"a": (JobStatus.CANCELLED, None)}

        store.cancel_jobs = lambda ids, *, reason, now: {"a": JobStatus.RUNNING}  # type: ignore[method-assign]
        store.statuses = agent_stops_it_on_the_third_read  # type: ignore[method-assign]
        store.status["a"] = (JobStatus.CANCELLED, "i-1")
        # WHEN it is cancelled
        left = tracker.cancel(["a"])
        # THEN cancel returned only once the record said it stopped
        assert left == []
        assert reads == 3
    finally:
        tracker.close()


def test_jobs_that_cannot_be_submitted_are_reported_failed_not_waited_for(parts: tuple[Client, Store, Feed]) -> None:
    _, store, feed = parts
    client = Client(failures=100)
    settings = TrackerSettings(batch_window=0, submit_attempts=3, retry_delay=0.001)
    tracker = JobTracker(client=client, store=store, feed=feed, settings=settings)
    tracker.submit(job("a"))
    tracker.start()
    try:
        # WHEN every submit fails
        finished = tracker.next_finished(10)
        # THEN after three tries the job comes back failed, never having run, with the cause
        assert finished is not None
        assert (finished.job_id, finished.succeeded, finished.exit_code) == ("a", False, None)
        assert finished.reason is not None and "queue unreachable" in finished.reason
        assert len(client.calls) == 3
        assert tracker.issued() == set()
    finally:
        tracker.close()


def test_an_end_never_announced_is_found_in_the_records(parts: tuple[Client, Store, Feed]) -> None:
    client, store, feed = parts
    tracker = JobTracker(client=client, store=store, feed=feed, settings=TrackerSettings(batch_window=0))
    for job_id in ("quiet", "gone", "busy", "late"):
        tracker.submit(job(job_id))
    tracker.start()
    try:
        submitted(tracker, client, 4)
        # GIVEN one job that failed without an announcement, one with no record, one still running, and one
        # whose end is announced (the audit must not report that one twice)
        store.status.update(
            {
                "quiet": (JobStatus.FAILED, "i-1"),
                "busy": (JobStatus.RUNNING, "i-1"),
                "late": (JobStatus.SUCCEEDED, "i-1"),
            }
        )
        feed.events = [start("late", 1.0), end("late", 3.0)]
        # WHEN the records are audited
        tracker.audit()
        # THEN each ended job is reported once: the announced one from the feed, the others from their records
        out = {}
        while (finished := tracker.next_finished(0)) is not None:
            out[finished.job_id] = (finished.succeeded, finished.exit_code, finished.wall_time)
        assert out == {"late": (True, 0, 2.0), "quiet": (False, 9, 4.0), "gone": (False, None, None)}
        assert tracker.issued() == {"busy"}
    finally:
        tracker.close()
