"""May this job start on this node now? The agent's rule for one received message, as a pure decision.

The agent (``shared/worker/receiver.py``) asks this for every message it receives; ``shoal simulate``'s
nodes ask it too, so the simulator admits jobs by the same rule. Every verdict says what to do with the
message and why:

- the node is draining or stopping: give the message back at once (another node takes it);
- the job already runs here (a second copy of its message): hide the copy until this run settles;
- capacity: a job that does not fit what is free goes back at once (it fits the node later, or never),
  before the job store is asked anything (as the agent does: it reserves, then writes);
- cheaper nodes first: a young job a cheaper node type runs for less goes back at once, for a cheaper node
  with room to take (``shared.domain.cheaper_first``; the caller says why, or None);
- the job record says it is not this node's to run: a settled (or cancelled) job's duplicate is deleted
  (success) or dead-lettered (failure), one running elsewhere is looked at again later, a message that does
  not match its record is dead-lettered; a queued job starts, one with no record is recorded and started;
- a job past its preemption budget is declined by a spot node (it runs only on on-demand nodes now).

The agent asks in two steps (``admit_here`` before it reserves, ``admit_record`` only when the job store's
start transaction refused the job); ``admit`` is both at once, for a caller that holds the record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.domain.cluster_state import JobRecord, JobStatus
from shared.domain.jobs import Job
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS, on_demand_only, why_on_demand
from shared.domain.resources import Resources


class Verdict(enum.StrEnum):
    START = "start"  # reserve the job's resources and run it
    RECORD_AND_START = "record-and-start"  # no record (sent straight to the queue): record it, then start it
    RESTART_HERE = "restart-here"  # an earlier agent of this node left it RUNNING, nobody runs it: requeue, start
    RETURN = "return"  # the node takes no work (draining, stopping): visible again at once
    REFUSED = "refused"  # the store would not start a queued job here (the node drains): visible again at once
    DECLINE_LATER = "decline-later"  # fits this node, not beside what runs now: visible again at once
    DECLINE_NEVER = "decline-never"  # larger than the whole node, or on-demand only: visible again at once
    LEAVE = "leave"  # fits, but a cheaper node type runs it for less: visible again at once, for one of those
    RUNNING_HERE = "running-here"  # a second copy of a message whose job runs here: hide it a while
    RUNNING_ELSEWHERE = "running-elsewhere"  # another node runs it: hide the message a while
    DELETE_DUPLICATE = "delete-duplicate"  # the job already succeeded (or was cancelled): delete the message
    DEAD_LETTER = "dead-letter"  # failed for good, or the message does not match its record


STARTING = frozenset({Verdict.START, Verdict.RECORD_AND_START, Verdict.RESTART_HERE})


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    verdict: Verdict
    reason: str

    @property
    def starts(self) -> bool:
        return self.verdict in STARTING


def admit(
    job: Job,
    *,
    free: Resources,
    capacity: Resources,
    record: JobRecord | None,
    draining: bool,
    node_id: str,
    running_here: bool = False,
    spot_node: bool = False,
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    leave: str | None = None,
) -> Admission:
    """The verdict on one received message of ``job`` at a node with ``free`` of its ``capacity`` left.

    ``record`` is the job store's record of the job (None: there is none); ``draining`` means the node was
    told to take no new work (or is stopping); ``running_here`` means this node's agent runs the job now.
    On a ``spot_node``, a job past its preemption budget (``shared.domain.preemption``; ``max_preemptions``
    is the cluster's default) is declined. ``leave``: why a cheaper node should take it (``cheaper_first``).
    The node's own checks (``admit_here``) come before the record's (``admit_record``).
    """
    here = admit_here(
        job, free=free, capacity=capacity, draining=draining, node_id=node_id, running_here=running_here, leave=leave
    )
    if here is not None:
        return here
    return admit_record(job, record=record, node_id=node_id, spot_node=spot_node, max_preemptions=max_preemptions)


def admit_here(
    job: Job,
    *,
    free: Resources,
    capacity: Resources,
    draining: bool,
    node_id: str,
    running_here: bool = False,
    leave: str | None = None,
) -> Admission | None:
    """What the node alone says of ``job``: give it back (draining, already here, no room), or None: the record
    decides. The agent asks this before it reserves the job's resources and asks the job store anything."""
    if draining:
        return Admission(verdict=Verdict.RETURN, reason=f"node {node_id} is draining: it starts no new jobs")
    if running_here:
        return Admission(verdict=Verdict.RUNNING_HERE, reason=f"job {job.id} already runs on this node")
    need = job.shape.resources
    if not need.fits_in(capacity):
        return Admission(
            verdict=Verdict.DECLINE_NEVER, reason=f"job {job.id} needs {need.describe()}: more than the whole node"
        )
    if not need.fits_in(free):
        return Admission(
            verdict=Verdict.DECLINE_LATER, reason=f"job {job.id} fits this node, but not beside the jobs running now"
        )
    if leave is not None:
        return Admission(verdict=Verdict.LEAVE, reason=f"job {job.id} fits node {node_id}, but {leave}")
    return None


def admit_record(
    job: Job,
    *,
    record: JobRecord | None,
    node_id: str,
    spot_node: bool = False,
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    refused: bool = False,
    retried: bool = False,
) -> Admission:
    """What the job store's ``record`` says of ``job`` at ``node_id``, once the node has room for it.

    The agent asks the store first (its start transaction) and reads the record only when the store
    ``refused``: then a queued job is one this node may not take now (it drains, or the job is on-demand
    only), and one left RUNNING here by an earlier agent is requeued and started again. ``retried``: the
    store refused it a second time, after it was recorded or requeued; the agent looks again later.
    """
    if record is None:
        if retried:
            return Admission(
                verdict=Verdict.RUNNING_ELSEWHERE, reason=f"job {job.id} has no record yet; looking again later"
            )
        return Admission(verdict=Verdict.RECORD_AND_START, reason=f"job {job.id} has no record: record it and start")
    if record.job != job:
        # Not the job its id was recorded with (hand-written, or an older resubmission): running it would run
        # something nobody counted. The record's own message, if any, is unaffected.
        return Admission(
            verdict=Verdict.DEAD_LETTER,
            reason=f"message for job {job.id} does not match the job recorded under that id; resubmit it with a new id",
        )
    if record.status is JobStatus.SUCCEEDED:
        return Admission(verdict=Verdict.DELETE_DUPLICATE, reason=f"job {job.id} has already succeeded")
    if record.status is JobStatus.CANCELLED:
        return Admission(verdict=Verdict.DELETE_DUPLICATE, reason=f"job {job.id} was cancelled")
    if record.status is JobStatus.FAILED:
        # Its dead-lettering may be what failed last time: rather two copies in the dead-letter queue than none.
        return Admission(
            verdict=Verdict.DEAD_LETTER,
            reason=f"job {job.id} had already failed {record.attempts} time(s); last: {record.reason}",
        )
    if record.status is JobStatus.RUNNING:
        if refused and not retried and record.node == node_id:
            return Admission(
                verdict=Verdict.RESTART_HERE,
                reason=f"job {job.id} was left running here by an earlier agent; requeueing it to start it again",
            )
        where = "this node (an earlier agent)" if record.node == node_id else f"node {record.node}"
        return Admission(verdict=Verdict.RUNNING_ELSEWHERE, reason=f"job {job.id} is running on {where}")
    past_budget = on_demand_only(job, record.preemptions, max_preemptions)
    if (record.on_demand_only and (spot_node or refused)) or (spot_node and past_budget):
        return Admission(verdict=Verdict.DECLINE_NEVER, reason=why_on_demand(job, record.preemptions, max_preemptions))
    if refused:
        return Admission(
            verdict=Verdict.REFUSED, reason=f"job {job.id} refused here: node {node_id} is draining; returning it"
        )
    return Admission(verdict=Verdict.START, reason=f"job {job.id} fits in what is free")
