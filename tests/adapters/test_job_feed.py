"""Cancelling jobs, and the completion feed the job store writes inside each job's own transitions."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.job_feed import DynamoJobFeed, FeedEventKind
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.memory_state import MemoryJobStore
from shared.adapters.state_table import StateTable
from shared.domain.cluster_state import DemandCount, JobStatus
from tests.adapters.conftest import make_job

Store = DynamoJobStore | MemoryJobStore
NOW = 1_700_000_000.0
FEED = "toil-wf-run1"


# --- cancelling: both backends -------------------------------------------------------------------------


def test_cancel_withdraws_queued_and_running_jobs_and_their_demand(job_store: Store) -> None:
    # GIVEN four jobs of one shape: one running, one queued, one succeeded, and one unknown id
    job_store.put_jobs([make_job("run"), make_job("wait"), make_job("done")], NOW)
    assert job_store.start_job(make_job("run"), "i-1", NOW) == 1
    assert job_store.start_job(make_job("done"), "i-1", NOW) == 1
    assert job_store.finish_job(make_job("done"), "i-1", attempt=1, exit_code=0, output_tail="", now=NOW)

    # WHEN all four are cancelled
    was = job_store.cancel_jobs(["run", "wait", "done", "nobody"], reason="killed", now=NOW + 5)

    # THEN the live two are CANCELLED (the running one still names its node), the rest untouched
    assert was == {"run": JobStatus.RUNNING, "wait": JobStatus.QUEUED}
    assert job_store.statuses(["run", "wait", "done", "nobody"]) == {
        "run": (JobStatus.CANCELLED, "i-1"),
        "wait": (JobStatus.CANCELLED, None),
        "done": (JobStatus.SUCCEEDED, "i-1"),
    }
    record = job_store.get_job("wait")
    assert record is not None
    assert (record.reason, record.cancelled_at) == ("killed", NOW + 5)
    # THEN the scaler no longer counts them
    assert job_store.demand() == {}


def test_a_cancelled_job_never_starts_and_is_never_reported_done(job_store: Store) -> None:
    # GIVEN a running job and a queued one, both cancelled
    job_store.put_jobs([make_job("a"), make_job("b")], NOW)
    assert job_store.start_job(make_job("a"), "i-1", NOW) == 1
    job_store.cancel_jobs(["a", "b"], reason="killed", now=NOW)

    # WHEN a worker tries to start the queued one, and to finish or fail the running one
    started = job_store.start_job(make_job("b"), "i-2", NOW)
    finished = job_store.finish_job(make_job("a"), "i-1", attempt=1, exit_code=0, output_tail="", now=NOW)
    failed = job_store.fail_job(
        make_job("a"), "i-1", attempt=1, reason="exit code 1", exit_code=1, output_tail="", now=NOW
    )
    requeued = job_store.requeue_job("a", "i-1", reason="interrupted", now=NOW)

    # THEN the store refuses every one of them
    assert (started, finished, failed, requeued) == (None, False, None, False)
    assert job_store.statuses(["a", "b"]) == {"a": (JobStatus.CANCELLED, "i-1"), "b": (JobStatus.CANCELLED, None)}
    assert job_store.demand() == {}


def test_release_clears_the_node_only_for_the_node_that_ran_it(job_store: Store) -> None:
    # GIVEN a cancelled job that ran on i-1, and a running job that is not cancelled
    job_store.put_jobs([make_job("a"), make_job("b")], NOW)
    job_store.start_job(make_job("a"), "i-1", NOW)
    job_store.start_job(make_job("b"), "i-1", NOW)
    job_store.cancel_jobs(["a"], reason="killed", now=NOW)

    # WHEN nodes say they have ended them
    assert not job_store.release_cancelled("a", "i-2", now=NOW)
    assert not job_store.release_cancelled("b", "i-1", now=NOW)
    assert job_store.release_cancelled("a", "i-1", now=NOW)

    # THEN only the cancelled job on its own node has stopped; the other still runs
    assert job_store.statuses(["a", "b"]) == {"a": (JobStatus.CANCELLED, None), "b": (JobStatus.RUNNING, "i-1")}
    assert job_store.demand() == {make_job("b").shape: DemandCount(running=1)}


def test_cancelling_many_jobs_of_many_shapes_adjusts_every_counter(job_store: Store) -> None:
    # GIVEN 150 queued jobs over four shapes (more than one transaction holds)
    jobs = [make_job(f"j{i}", i % 4) for i in range(150)]
    job_store.put_jobs(jobs, NOW)

    # WHEN all are cancelled
    was = job_store.cancel_jobs([job.id for job in jobs], reason="killed", now=NOW)

    # THEN each was cancelled once and no demand is left
    assert len(was) == 150
    assert job_store.demand() == {}


# --- the feed: DynamoDB ----------------------------------------------------------------------------------


@pytest.fixture
def store(table: StateTable) -> DynamoJobStore:
    return DynamoJobStore(table)


@pytest.fixture
def feed(table: StateTable) -> DynamoJobFeed:
    return DynamoJobFeed(table, FEED)


def test_starts_and_ends_are_announced_on_the_jobs_feed(store: DynamoJobStore, feed: DynamoJobFeed) -> None:
    # GIVEN three jobs on the feed (one attempt each) and one on no feed
    jobs = [make_job(i, feed=FEED, max_attempts=1) for i in ("ok", "bad", "lost")] + [make_job("other")]
    store.put_jobs(jobs, NOW)
    for job in jobs:
        assert store.start_job(job, "i-1", NOW + 1) == 1

    # WHEN one succeeds, one fails with exit code 3, one could not start, and the other succeeds
    store.finish_job(jobs[0], "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 4)
    store.fail_job(jobs[1], "i-1", attempt=1, reason="exit code 3", exit_code=3, output_tail="", now=NOW + 5)
    store.fail_job(jobs[2], "i-1", attempt=1, reason="could not start", exit_code=None, output_tail="", now=NOW + 6)
    store.finish_job(jobs[3], "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 7)

    # THEN the feed holds the three starts, then the three ends, and nothing of the job on no feed
    events = feed.read()
    assert [(e.job_id, e.kind) for e in events] == [
        ("bad", FeedEventKind.START),
        ("lost", FeedEventKind.START),
        ("ok", FeedEventKind.START),
        ("ok", FeedEventKind.END),
        ("bad", FeedEventKind.END),
        ("lost", FeedEventKind.END),
    ]
    assert (events[0].node, events[0].attempt, events[0].at) == ("i-1", 1, NOW + 1)
    ends = {e.job_id: (e.status, e.exit_code, e.at, e.reason) for e in events if e.kind is FeedEventKind.END}
    assert ends == {
        "ok": (JobStatus.SUCCEEDED, 0, NOW + 4, None),
        "bad": (JobStatus.FAILED, 3, NOW + 5, "exit code 3"),
        "lost": (JobStatus.FAILED, None, NOW + 6, "could not start"),
    }


def test_a_failure_that_will_be_retried_announces_no_end(store: DynamoJobStore, feed: DynamoJobFeed) -> None:
    # GIVEN a job on the feed with attempts left
    job = make_job("a", feed=FEED, max_attempts=2)
    store.put_jobs([job], NOW)
    store.start_job(job, "i-1", NOW)

    # WHEN its first attempt fails
    assert store.fail_job(job, "i-1", attempt=1, reason="exit 1", exit_code=1, output_tail="", now=NOW) is (
        JobStatus.QUEUED
    )

    # THEN only its start is on the feed
    assert [e.kind for e in feed.read()] == [FeedEventKind.START]


def test_acknowledged_events_are_gone_and_new_ones_still_come(store: DynamoJobStore, feed: DynamoJobFeed) -> None:
    # GIVEN a started job whose start was read and acknowledged
    job = make_job("a", feed=FEED, max_attempts=1)
    store.put_jobs([job], NOW)
    store.start_job(job, "i-1", NOW)
    feed.acknowledge(feed.read())
    assert feed.read() == []

    # WHEN it finishes
    store.finish_job(job, "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 2)

    # THEN the next read holds exactly its end; another feed holds nothing
    assert [(e.job_id, e.kind) for e in feed.read()] == [("a", FeedEventKind.END)]
    assert DynamoJobFeed(store._table, "someone-else").read() == []


def test_a_poll_is_one_query_however_many_jobs_are_out(
    store: DynamoJobStore, feed: DynamoJobFeed, dynamodb: Any
) -> None:
    # GIVEN 60 jobs on the feed, all started and finished
    jobs = [make_job(f"j{i}", feed=FEED, max_attempts=1) for i in range(60)]
    store.put_jobs(jobs, NOW)
    for job in jobs:
        store.start_job(job, "i-1", NOW)
        store.finish_job(job, "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 1)
    calls: list[str] = []
    dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    # WHEN the feed is read
    events = feed.read()

    # THEN one Query brought all 120 announcements (no read per job)
    assert len(events) == 120
    assert calls == ["Query"]
