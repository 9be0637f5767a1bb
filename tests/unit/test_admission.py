"""The agent's admission rule as a decision table: one row per verdict, and the order the checks go in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.domain.admission import Verdict, admit, admit_here, admit_record
from shared.domain.cluster_state import JobRecord, JobStatus
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources

GiB = 2**30
NODE = Resources(cores=16, memory=32 * GiB, disk=40 * GiB)
JOB = Job(id="j1", shape=Shape(resources=Resources(cores=4, memory=8 * GiB, disk=GiB), wall_time=60.0))
HUGE = Job(id="j2", shape=Shape(resources=Resources(cores=32, memory=8 * GiB, disk=GiB), wall_time=60.0))
QUEUED = JobRecord(job=JOB, status=JobStatus.QUEUED)
ROOMY = NODE
TIGHT = Resources(cores=2, memory=32 * GiB, disk=40 * GiB)


@pytest.mark.parametrize(
    ("job", "free", "record", "draining", "running_here", "verdict"),
    [
        (JOB, ROOMY, QUEUED, False, False, Verdict.START),
        (JOB, ROOMY, None, False, False, Verdict.RECORD_AND_START),
        (JOB, ROOMY, QUEUED, True, False, Verdict.RETURN),
        (JOB, ROOMY, QUEUED, False, True, Verdict.RUNNING_HERE),
        (JOB, TIGHT, QUEUED, False, False, Verdict.DECLINE_LATER),
        (HUGE, ROOMY, None, False, False, Verdict.DECLINE_NEVER),
        (JOB, ROOMY, replace(QUEUED, status=JobStatus.SUCCEEDED), False, False, Verdict.DELETE_DUPLICATE),
        (JOB, ROOMY, replace(QUEUED, status=JobStatus.FAILED), False, False, Verdict.DEAD_LETTER),
        (
            JOB,
            ROOMY,
            replace(QUEUED, status=JobStatus.RUNNING, node="i-other"),
            False,
            False,
            Verdict.RUNNING_ELSEWHERE,
        ),
        (JOB, ROOMY, replace(QUEUED, job=replace(JOB, command="other")), False, False, Verdict.DEAD_LETTER),
        # The order of the checks: draining before everything, capacity before the record.
        (HUGE, ROOMY, None, True, False, Verdict.RETURN),
        (JOB, TIGHT, replace(QUEUED, status=JobStatus.SUCCEEDED), False, False, Verdict.DECLINE_LATER),
        (JOB, ROOMY, QUEUED, True, True, Verdict.RETURN),
    ],
)
def test_admission_table(
    job: Job, free: Resources, record: JobRecord | None, draining: bool, running_here: bool, verdict: Verdict
) -> None:
    # GIVEN a node with ``free`` of NODE left  WHEN a message of ``job`` arrives
    admission = admit(
        job, free=free, capacity=NODE, record=record, draining=draining, node_id="i-here", running_here=running_here
    )
    # THEN the verdict is the table's, and it says why naming the job or the node
    assert admission.verdict is verdict
    assert admission.starts == (verdict in (Verdict.START, Verdict.RECORD_AND_START))
    assert job.id in admission.reason or "i-here" in admission.reason


def test_a_job_exactly_filling_what_is_free_starts() -> None:
    exact = Resources(cores=4, memory=8 * GiB, disk=GiB)
    assert admit(JOB, free=exact, capacity=NODE, record=QUEUED, draining=False, node_id="n").starts
    less = replace(exact, memory=8 * GiB - 1)
    assert admit(JOB, free=less, capacity=NODE, record=QUEUED, draining=False, node_id="n").verdict is (
        Verdict.DECLINE_LATER
    )


RUNNING_HERE = replace(QUEUED, status=JobStatus.RUNNING, node="i-here")
PAST_BUDGET = replace(QUEUED, on_demand_only=True, preemptions=3)


@pytest.mark.parametrize(
    ("record", "retried", "verdict"),
    [
        # The agent's branches once the store's start transaction refused the job (it reads the record then).
        (None, False, Verdict.RECORD_AND_START),
        (None, True, Verdict.RUNNING_ELSEWHERE),
        (RUNNING_HERE, False, Verdict.RESTART_HERE),
        (RUNNING_HERE, True, Verdict.RUNNING_ELSEWHERE),
        (replace(RUNNING_HERE, node="i-other"), False, Verdict.RUNNING_ELSEWHERE),
        (replace(QUEUED, status=JobStatus.CANCELLED), False, Verdict.DELETE_DUPLICATE),
        (replace(QUEUED, status=JobStatus.SUCCEEDED), True, Verdict.DELETE_DUPLICATE),
        (replace(QUEUED, status=JobStatus.FAILED, attempts=2, reason="exit code 1"), False, Verdict.DEAD_LETTER),
        (replace(RUNNING_HERE, job=replace(JOB, command="other")), False, Verdict.DEAD_LETTER),
        (PAST_BUDGET, False, Verdict.DECLINE_NEVER),
        (QUEUED, False, Verdict.REFUSED),
        (QUEUED, True, Verdict.REFUSED),
    ],
)
def test_record_table_after_the_store_refused(record: JobRecord | None, retried: bool, verdict: Verdict) -> None:
    # GIVEN the job store refused to start JOB on node i-here  WHEN the agent reads the record
    admission = admit_record(JOB, record=record, node_id="i-here", refused=True, retried=retried)
    # THEN the verdict is the table's; only a record-less job or one an earlier agent left here starts
    assert admission.verdict is verdict
    assert admission.starts == (verdict in (Verdict.RECORD_AND_START, Verdict.RESTART_HERE))
    assert JOB.id in admission.reason


def test_a_failed_jobs_duplicate_is_dead_lettered_with_its_last_failure() -> None:
    failed = replace(QUEUED, status=JobStatus.FAILED, attempts=2, reason="exit code 1")
    admission = admit_record(JOB, record=failed, node_id="n", refused=True)
    assert admission.reason == "job j1 had already failed 2 time(s); last: exit code 1"


@pytest.mark.parametrize(
    ("spot_node", "refused", "verdict"),
    [
        (True, False, Verdict.DECLINE_NEVER),  # the simulator knows the node's market
        (False, False, Verdict.START),  # an on-demand node starts it
        (False, True, Verdict.DECLINE_NEVER),  # the agent knows only that the store refused it
    ],
)
def test_a_job_past_its_preemption_budget(spot_node: bool, refused: bool, verdict: Verdict) -> None:
    admission = admit_record(JOB, record=PAST_BUDGET, node_id="n", spot_node=spot_node, refused=refused)
    assert admission.verdict is verdict


def test_admit_is_the_nodes_checks_then_the_records() -> None:
    # GIVEN a job that fits  WHEN the node has room  THEN admit_here leaves it to the record
    assert admit_here(JOB, free=ROOMY, capacity=NODE, draining=False, node_id="n") is None
    # and admit says what the record says
    for record in (None, QUEUED, replace(QUEUED, status=JobStatus.SUCCEEDED), RUNNING_HERE):
        whole = admit(JOB, free=ROOMY, capacity=NODE, record=record, draining=False, node_id="i-here")
        assert whole == admit_record(JOB, record=record, node_id="i-here")
