"""The agent's admission rule as a decision table: one row per verdict, and the order the checks go in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.domain.admission import Verdict, admit
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
