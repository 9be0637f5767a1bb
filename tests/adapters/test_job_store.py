"""Job records and demand counters: every transition is conditional and moves the counters once."""

from __future__ import annotations

import pytest

from shared.adapters.job_store import DynamoJobStore
from shared.adapters.memory_state import MemoryJobStore
from shared.adapters.state_table import StateTable, StateTableError, job_key, s
from shared.domain.cluster_state import DemandCount, JobStatus
from tests.adapters.conftest import make_job

Store = DynamoJobStore | MemoryJobStore
NOW = 1_700_000_000.0


def test_put_jobs_records_queued_jobs_and_counts_them_per_shape(job_store: Store) -> None:
    # GIVEN three jobs of two shapes
    jobs = [make_job("a", 0), make_job("b", 0), make_job("c", 1, name="align", env={"X": "1"}, timeout="5m")]

    # WHEN they are put
    new = job_store.put_jobs(jobs, NOW)

    # THEN each is a QUEUED record holding the job as submitted, and demand counts them per shape
    assert new == ["a", "b", "c"]
    record = job_store.get_job("c")
    assert record is not None
    assert record.status is JobStatus.QUEUED
    assert record.job == jobs[2]
    assert record.attempts == 0
    assert record.submitted_at == NOW
    assert job_store.demand() == {jobs[0].shape: DemandCount(queued=2), jobs[2].shape: DemandCount(queued=1)}


def test_resubmitted_ids_are_not_recorded_or_counted_twice(job_store: Store) -> None:
    # GIVEN two recorded jobs
    job_store.put_jobs([make_job("a"), make_job("b")], NOW)

    # WHEN the same ids come again with a new one (and a duplicate inside the call)
    new = job_store.put_jobs([make_job("a"), make_job("b"), make_job("c"), make_job("c")], NOW + 1)

    # THEN only the new id is recorded, and counted once
    assert new == ["c"]
    assert job_store.demand() == {make_job("a").shape: DemandCount(queued=3)}


def test_record_jobs_names_known_jobs_that_never_reached_the_queue(job_store: Store) -> None:
    # GIVEN three recorded jobs, two of them confirmed in the queue
    job_store.record_jobs([make_job("a"), make_job("b"), make_job("c")], NOW)
    job_store.mark_enqueued(["a", "c"])

    # WHEN they are submitted again with a new one
    recorded = job_store.record_jobs([make_job("a"), make_job("b"), make_job("c"), make_job("d")], NOW)

    # THEN the new one is new, and the unconfirmed one is reported for sending
    assert recorded.new == ("d",)
    assert recorded.not_enqueued == ("b",)


def test_a_started_job_is_not_reported_as_not_enqueued(job_store: Store) -> None:
    # GIVEN a job a worker took before the submitter confirmed its message
    job_store.record_jobs([make_job("a")], NOW)
    job_store.start_job(make_job("a"), "i-1", NOW)

    # WHEN it is submitted again
    recorded = job_store.record_jobs([make_job("a")], NOW)

    # THEN it is not sent again: its message evidently arrived
    assert recorded.not_enqueued == ()


def test_many_jobs_of_many_shapes_fill_several_transactions(job_store: Store) -> None:
    # GIVEN 250 jobs over 4 shapes (more than one 100-item transaction)
    jobs = [make_job(f"job-{i:03d}", i % 4) for i in range(250)]

    # WHEN they are put
    new = job_store.put_jobs(jobs, NOW)

    # THEN all are recorded, in order, and the counters add up
    assert new == [j.id for j in jobs]
    demand = job_store.demand()
    assert sum(c.queued for c in demand.values()) == 250
    assert {c.queued for c in demand.values()} == {62, 63}


def test_start_job_moves_a_queued_job_to_running_once(job_store: Store) -> None:
    # GIVEN a queued job
    job = make_job("a")
    job_store.put_jobs([job], NOW)

    # WHEN two workers try to start it
    first = job_store.start_job(job, "i-1", NOW + 5)
    second = job_store.start_job(job, "i-2", NOW + 6)

    # THEN the first gets it (attempt 1), the second gets None, and the counters moved once
    assert (first, second) == (1, None)
    record = job_store.get_job("a")
    assert record is not None
    assert (record.status, record.node, record.attempts, record.started_at) == (JobStatus.RUNNING, "i-1", 1, NOW + 5)
    assert job_store.demand() == {job.shape: DemandCount(queued=0, running=1)}


def test_start_job_of_an_unknown_job_is_none(job_store: Store) -> None:
    # GIVEN nothing recorded  WHEN a worker starts a job  THEN there is nothing to start
    assert job_store.start_job(make_job("ghost"), "i-1", NOW) is None
    assert job_store.demand() == {}


def test_a_message_that_is_not_its_records_job_starts_nothing(job_store: Store) -> None:
    # GIVEN a recorded job, and a message under its id with another command
    job_store.put_jobs([make_job("a")], NOW)
    impostor = make_job("a", command="rm -rf /data")

    # WHEN a worker starts the impostor  THEN nothing starts and nothing is counted
    assert job_store.start_job(impostor, "i-1", NOW) is None
    record = job_store.get_job("a")
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    assert job_store.demand() == {make_job("a").shape: DemandCount(queued=1)}


def test_finish_job_needs_the_job_running_on_that_node(job_store: Store) -> None:
    # GIVEN a job running on i-1
    job = make_job("a")
    job_store.put_jobs([job], NOW)
    attempt = job_store.start_job(job, "i-1", NOW)
    assert attempt == 1

    # WHEN another node, an older attempt, then its node report it finished
    wrong_node = job_store.finish_job(job, "i-2", attempt=1, exit_code=0, output_tail="", now=NOW + 9)
    stale = job_store.finish_job(job, "i-1", attempt=0, exit_code=0, output_tail="", now=NOW + 9)
    right_node = job_store.finish_job(job, "i-1", attempt=1, exit_code=0, output_tail="done\n", now=NOW + 10)
    again = job_store.finish_job(job, "i-1", attempt=1, exit_code=0, output_tail="done\n", now=NOW + 11)

    # THEN only the running attempt's report counts, once; the job is SUCCEEDED and no longer demand
    assert (wrong_node, stale, right_node, again) == (False, False, True, False)
    record = job_store.get_job("a")
    assert record is not None
    assert (record.status, record.exit_code, record.output_tail, record.finished_at) == (
        JobStatus.SUCCEEDED,
        0,
        "done\n",
        NOW + 10,
    )
    assert job_store.demand() == {}


def test_fail_job_requeues_while_attempts_remain_then_fails(job_store: Store) -> None:
    # GIVEN a job with two attempts
    job = make_job("a", max_attempts=2)
    job_store.put_jobs([job], NOW)

    # WHEN it fails twice
    first_attempt = job_store.start_job(job, "i-1", NOW)
    first = job_store.fail_job(
        job, "i-1", attempt=1, reason="exit code 1", exit_code=1, output_tail="boom", now=NOW + 1
    )
    requeued = job_store.get_job("a")
    second_attempt = job_store.start_job(job, "i-2", NOW + 2)
    second = job_store.fail_job(
        job, "i-2", attempt=2, reason="killed by signal 9", exit_code=None, output_tail="", now=NOW + 3
    )

    # THEN the first failure requeues it (no node), the second fails it for good
    assert (first_attempt, second_attempt) == (1, 2)
    assert first is JobStatus.QUEUED
    assert requeued is not None
    assert (requeued.status, requeued.node, requeued.attempts, requeued.reason) == (
        JobStatus.QUEUED,
        None,
        1,
        "exit code 1",
    )
    assert second is JobStatus.FAILED
    record = job_store.get_job("a")
    assert record is not None
    assert (record.status, record.attempts, record.exit_code, record.reason, record.node) == (
        JobStatus.FAILED,
        2,
        None,
        "killed by signal 9",
        "i-2",
    )
    assert job_store.demand() == {}


def test_fail_job_from_another_node_is_refused(job_store: Store) -> None:
    # GIVEN a job running on i-1
    job_store.put_jobs([make_job("a")], NOW)
    job_store.start_job(make_job("a"), "i-1", NOW)

    # WHEN i-2 reports it failed  THEN nothing changes
    assert job_store.fail_job(make_job("a"), "i-2", attempt=1, reason="?", exit_code=1, output_tail="", now=NOW) is None
    record = job_store.get_job("a")
    assert record is not None and record.status is JobStatus.RUNNING


def test_requeue_job_gives_the_attempt_back(job_store: Store) -> None:
    # GIVEN a one-attempt job running on a spot node
    job = make_job("a", max_attempts=1)
    job_store.put_jobs([job], NOW)
    job_store.start_job(job, "i-1", NOW)

    # WHEN the node is interrupted and the job requeued, then it runs and fails elsewhere
    assert job_store.requeue_job("a", "i-1", reason="spot interruption", now=NOW + 1)
    assert not job_store.requeue_job("a", "i-1", reason="again", now=NOW + 2)
    after_requeue = job_store.get_job("a")
    assert job_store.start_job(job, "i-2", NOW + 3) == 2  # each start has its own number

    # THEN the interruption did not use up its only attempt (though both starts count), and the counters follow
    assert after_requeue is not None
    assert (after_requeue.status, after_requeue.attempts, after_requeue.node) == (JobStatus.QUEUED, 0, None)
    assert after_requeue.starts == 1
    assert job_store.demand() == {job.shape: DemandCount(queued=0, running=1)}
    assert job_store.fail_job(job, "i-2", attempt=1, reason="stale", exit_code=2, output_tail="", now=NOW + 4) is None
    assert job_store.fail_job(
        job, "i-2", attempt=2, reason="exit code 2", exit_code=2, output_tail="", now=NOW + 4
    ) is (JobStatus.FAILED)
    record = job_store.get_job("a")
    assert record is not None and (record.attempts, record.starts, record.reason) == (1, 2, "exit code 2")


def test_a_restart_on_the_same_node_is_a_new_start_and_the_old_one_cannot_settle(job_store: Store) -> None:
    # GIVEN a job started on i-1, requeued there (its agent restarted), and started there again
    job = make_job("a", max_attempts=3)
    job_store.put_jobs([job], NOW)
    first = job_store.start_job(job, "i-1", NOW)
    assert job_store.requeue_job("a", "i-1", reason="the agent restarted", now=NOW + 1)
    second = job_store.start_job(job, "i-1", NOW + 2)
    # THEN the two runs have different numbers, and only the second may settle the job
    assert (first, second) == (1, 2)
    assert not job_store.finish_job(job, "i-1", attempt=1, exit_code=0, output_tail="", now=NOW + 3)
    assert job_store.fail_job(job, "i-1", attempt=2, reason="x", exit_code=1, output_tail="", now=NOW + 3) is (
        JobStatus.QUEUED
    )
    record = job_store.get_job("a")
    assert record is not None and (record.status, record.attempts, record.starts) == (JobStatus.QUEUED, 1, 2)


def test_claim_demand_event_is_debounced(job_store: Store) -> None:
    # GIVEN a 5 s debounce  WHEN submitters ask at 0, 1, 5 and 5 s
    claims = [job_store.claim_demand_event(NOW + t, 5.0) for t in (0, 1, 5, 5)]

    # THEN the first and the first one 5 s later may send
    assert claims == [True, False, True, False]


# --- DynamoDB only ----------------------------------------------------------------------------------


def test_a_job_recorded_between_the_read_and_the_write_is_not_counted_twice(
    table: StateTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store whose first look finds nothing, while another submitter records "a" meanwhile
    store = DynamoJobStore(table)
    submissions = store._submissions
    other = DynamoJobStore(table)
    real_lookup = submissions._batches_of
    calls = 0

    def stale_first_look(job_ids: list[str]) -> dict[str, tuple[JobStatus, str | None]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            other.put_jobs([make_job("a")], NOW)
            return {}
        return real_lookup(job_ids)

    monkeypatch.setattr(submissions, "_batches_of", stale_first_look)

    # WHEN it records "a" and "b" (one transaction whose Put of "a" now fails its condition)
    recorded = store.record_jobs([make_job("a"), make_job("b")], NOW)

    # THEN it looks again, records only "b", and "a" is counted once
    assert recorded.new == ("b",)
    assert recorded.not_enqueued == ("a",)
    assert store.demand() == {make_job("a").shape: DemandCount(queued=2)}


def test_a_missing_table_is_named_in_the_error(missing_table: StateTable) -> None:
    # GIVEN a store on a table that does not exist
    store = DynamoJobStore(missing_table)

    # WHEN it is used  THEN each call says which table is missing and what to check
    with pytest.raises(StateTableError, match=r"table 'no-such-table' does not exist in us-east-1.*--table"):
        store.put_jobs([make_job("a")], NOW)
    with pytest.raises(StateTableError, match="does not exist"):
        store.get_job("a")
    with pytest.raises(StateTableError, match="does not exist"):
        store.demand()


def test_a_corrupt_record_is_reported_with_its_key(table: StateTable) -> None:
    # GIVEN a job item whose job JSON is not a job
    table.put({**job_key("bad"), "status": s("QUEUED"), "job": s('{"id": "bad"}')})

    # WHEN it is read  THEN the error names the record and the missing field
    with pytest.raises(StateTableError, match=r"'JOB#bad'.*corrupt.*missing field 'cores'"):
        DynamoJobStore(table).get_job("bad")


def test_confirming_from_another_process_clears_the_pending_marker(table: StateTable) -> None:
    # GIVEN jobs recorded by one submitter process
    DynamoJobStore(table).record_jobs([make_job("a"), make_job("b"), make_job("c", 1)], NOW)

    # WHEN another process (a fresh store) confirms two of them in the queue
    DynamoJobStore(table).mark_enqueued(["a", "c", "ghost"])

    # THEN only the unconfirmed one is reported on a resubmit, and the job records were not touched for it
    assert DynamoJobStore(table).record_jobs([make_job("a"), make_job("b"), make_job("c", 1)], NOW).not_enqueued == (
        "b",
    )
    (marker,) = table.query("SUBMISSION")
    assert marker["pending"]["SS"] == ["b"]


def test_no_job_starts_on_a_draining_node(table: StateTable) -> None:
    from shared.adapters.node_store import DynamoNodeStore
    from shared.domain.cluster_state import Market, NodeRecord, NodeState

    def active(instance_id: str) -> NodeRecord:
        return NodeRecord(
            instance_id=instance_id,
            offer_key="m5.2xlarge",
            instance_type="m5.2xlarge",
            market=Market.ON_DEMAND,
            state=NodeState.ACTIVE,
        )

    # GIVEN a queued job and a node the scaler has just told to drain
    jobs, nodes = DynamoJobStore(table), DynamoNodeStore(table)
    nodes.put_node(active("i-1"))
    jobs.put_jobs([make_job("a")], NOW)
    assert nodes.mark_draining("i-1", NOW + 1)
    # WHEN its agent, not yet aware, tries to start the job  THEN the store refuses, atomically
    assert jobs.start_job(make_job("a"), "i-1", NOW + 2) is None
    record = jobs.get_job("a")
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    assert jobs.demand()[record.job.shape] == DemandCount(queued=1)
    # AND an active node may start it
    nodes.put_node(active("i-2"))
    assert jobs.start_job(make_job("a"), "i-2", NOW + 3) == 1


def calls_made(table: StateTable) -> list[str]:
    """The DynamoDB operations the table's client makes from now on, in order."""
    made: list[str] = []
    table.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: made.append(model.name))
    return made


def test_the_workers_transitions_are_one_write_each_without_a_read(table: StateTable) -> None:
    # GIVEN a queued job (the hot path: thousands of short jobs a minute on a busy cluster)
    store, job = DynamoJobStore(table), make_job("a")
    store.put_jobs([job], NOW)
    made = calls_made(table)
    # WHEN a worker starts and finishes its first attempt
    attempt = store.start_job(job, "i-1", NOW)
    assert attempt == 1
    assert store.finish_job(job, "i-1", attempt=attempt, exit_code=0, output_tail="", now=NOW + 1)
    # THEN each transition was a single transaction: no read before either
    assert made == ["TransactWriteItems", "TransactWriteItems"]


def test_a_retried_job_learns_its_attempt_from_the_cancelled_condition(table: StateTable) -> None:
    # GIVEN a job whose first attempt failed (so a first-attempt guess is wrong)
    store, job = DynamoJobStore(table), make_job("a", max_attempts=3)
    store.put_jobs([job], NOW)
    store.start_job(job, "i-1", NOW)
    store.fail_job(job, "i-1", attempt=1, reason="exit code 1", exit_code=1, output_tail="", now=NOW + 1)
    made = calls_made(table)
    # WHEN another worker starts it
    attempt = store.start_job(job, "i-2", NOW + 2)
    # THEN the refused guess handed back the record, and the second write started attempt 2 without a read
    assert attempt == 2
    assert made == ["TransactWriteItems", "TransactWriteItems"]
    assert store.demand() == {job.shape: DemandCount(queued=0, running=1)}
