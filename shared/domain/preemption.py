"""The preemption budget: spot for N reclaims, then on-demand.

A spot reclaim (an interruption warning, a rebalance evacuation, a spot node lost) returns a job to the
queue without using one of its attempts; it counts a *preemption* instead (the job record's
``preemptions``). A job's budget is its ``max_preemptions`` (job format) or the cluster's
``max_preemptions`` setting. Once a preemptible job has used its budget it is planned as an on-demand
job (``demote``: its demand moves to the same shape with ``preemptible`` false) and the agent of a spot
node declines it (``admission.admit``), each with a reason saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus
from shared.domain.jobs import Job, Shape

DEFAULT_MAX_PREEMPTIONS = 2
# How the agent's evacuation reason starts when EC2 reclaims a spot instance (``shared.worker.imds``).
RECLAIM_REASON_PREFIXES = ("spot interruption", "rebalance")


def is_reclaim(reason: str) -> bool:
    """Does an evacuation's reason say EC2 is reclaiming the instance (not a stop, a signal, a crash)?"""
    return reason.lower().startswith(RECLAIM_REASON_PREFIXES)


def budget(job: Job, default: int) -> int:
    """How many reclaims ``job`` may suffer on spot."""
    return default if job.max_preemptions is None else job.max_preemptions


def on_demand_only(job: Job, preemptions: int, default: int) -> bool:
    """A preemptible job that has used its preemption budget runs only on on-demand nodes from now on. A
    budget is at least 1 (``preemptible: false`` is the way to never run on spot)."""
    return job.shape.preemptible and preemptions >= budget(job, default)


def why_on_demand(job: Job, preemptions: int, default: int) -> str:
    return (
        f"job {job.id} was preempted {preemptions} times (maxPreemptions {budget(job, default)}): "
        "it runs only on on-demand nodes now"
    )


def past_budget(
    records: Iterable[JobRecord], default: int, shape_of: Mapping[tuple[Shape, str | None], Shape] | None = None
) -> dict[Shape, DemandCount]:
    """Queued and running jobs past their budget, per (preemptible) shape, from the records of preempted jobs.
    ``shape_of``: the shape the round's demand plans each (requested shape, job name) as (``demand.planned``)."""
    out: dict[Shape, DemandCount] = {}
    for record in records:
        if record.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            continue
        if not on_demand_only(record.job, record.preemptions, default):
            continue
        shape = record.job.shape
        if shape_of is not None:
            shape = shape_of.get((shape, record.job.name), shape)
        count = out.get(shape, DemandCount())
        queued = record.status is JobStatus.QUEUED
        out[shape] = DemandCount(queued=count.queued + queued, running=count.running + (not queued))
    return out


def demote(
    demand: Mapping[Shape, DemandCount],
    past: Mapping[Shape, DemandCount],
    default: int,
    reasons: list[str],
) -> Mapping[Shape, DemandCount]:
    """``demand`` with the jobs past their budget moved to the on-demand twin of their shape (``demand``
    itself when there are none). A count is never moved beyond what the shape's counter holds."""
    if not past:
        return demand
    out = dict(demand)
    moved = 0
    for shape, count in past.items():
        have = out.get(shape)
        if have is None or not shape.preemptible:
            continue
        queued, running = min(count.queued, have.queued), min(count.running, have.running)
        if not queued and not running:
            continue
        twin = replace(shape, preemptible=False)
        before = out.get(twin, DemandCount())
        out[shape] = DemandCount(queued=have.queued - queued, running=have.running - running)
        out[twin] = DemandCount(queued=before.queued + queued, running=before.running + running)
        moved += queued + running
    if moved:
        reasons.append(
            f"{moved} preemptible jobs have used their preemption budget (maxPreemptions, cluster default "
            f"{default}): planned on on-demand nodes only"
        )
    return out
