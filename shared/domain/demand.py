"""From demand counters to the demand the scaler plans: one rule for the deployed round and the simulator.

Counters are kept per ``DemandKey``: the job's requested shape and its name (jobs with one name share a
learned runtime). ``planned`` turns them into demand per shape whose wall time is the runtime expected for
the name (``runtimes.Runtimes.expected``, rounded by ``two_digits``), not the time the job asked for; running
jobs become demand of what is left of them (``policy.running_remaining``). The deployed round
(``shared.services.reconcile``) feeds it the state table's counters, the learned runtimes and the running
jobs' start times; the simulator (``shared.sim.engine``) feeds it its own, so the two cannot drift apart.

``queued_since`` (when the oldest queued job of a shape was queued) comes from what a store can count without
a read on the hot path: per key, how many jobs were ever enqueued and when the last was (an ``ADD`` and a
``SET`` in the update every enqueue already makes). Each round keeps checkpoints (that time, that count); as
a key's queue is first in, first out, its oldest queued job is the one numbered ``enqueued - queued + 1``, and
the first checkpoint that counts it says when it was queued: exactly when it came last before a round (a
batch submitted at once), else to within the gap between two rounds (``queue_marks``). A queued job is never
taken for older than it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.domain.cluster_state import DemandCount
from shared.domain.jobs import Shape
from shared.domain.policy import running_remaining
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes

DemandKey = tuple[Shape, str | None]  # the job's requested shape, and its name (None: unnamed)
Checkpoints = tuple[tuple[float, int], ...]  # (when the last was enqueued, jobs of the key ever enqueued), oldest first
Enqueued = tuple[int, float]  # jobs of a key ever enqueued, and when the last of them was
MAX_CHECKPOINTS = 32  # per key; beyond it the closest two merge (their jobs then look younger, never older)


@dataclass(frozen=True, slots=True, kw_only=True)
class Counters:
    """The demand counters as a store keeps them."""

    counts: dict[DemandKey, tuple[int, int]]  # (queued, running) per key
    enqueued: dict[DemandKey, Enqueued]  # per key (``queue_marks``)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningJob:
    """A running job as the round needs it: its counter's key, when it started and where."""

    job_id: str
    key: DemandKey
    started_at: float
    node: str


def running_by_name(jobs: Iterable[RunningJob]) -> dict[str | None, tuple[int, float]]:
    """Per job name, how many of ``jobs`` run and the sum of their start times (``planned``'s ``running``)."""
    out: dict[str | None, tuple[int, float]] = {}
    for job in jobs:
        count, total = out.get(job.key[1], (0, 0.0))
        out[job.key[1]] = (count + 1, total + job.started_at)
    return out


def two_digits(seconds: float) -> float:
    """An expected runtime to two significant digits: finer than anyone knows it, and coarse enough that
    rounds with the same demand plan alike (``scaling`` remembers plans per demand)."""
    if seconds <= 0:
        return 1.0
    scale = 10.0 ** (math.floor(math.log10(seconds)) - 1)
    return max(1.0, round(seconds / scale) * scale)


def _shape(resources: Resources, wall_time: float, preemptible: bool) -> Shape:
    return Shape(resources=resources, wall_time=wall_time, preemptible=preemptible)


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """The demand a round plans, and how each counter's key maps into it."""

    counts: dict[Shape, DemandCount]
    shape_of: dict[DemandKey, Shape]  # the shape a key's queued jobs are planned as (its full expected runtime)
    queued_since: dict[Shape, float]  # per planned shape, the earliest mark of its keys (``queue_marks``)


def planned(
    counters: Mapping[DemandKey, Sequence[int]],
    running: Mapping[str | None, Sequence[float]],
    runtimes: Runtimes,
    now: float,
    *,
    since: Mapping[DemandKey, float] | None = None,
    learn_from_running: bool = True,
    plan_remaining: bool = True,
    shape: Callable[[Resources, float, bool], Shape] = _shape,
) -> Planned:
    """``counters``: (queued, running) per key; ``running``: per name, (jobs running, sum of their start times;
    unnamed jobs are not pooled); ``since``: per key, when its oldest queued job was queued. ``shape`` may
    intern the shapes it builds (the simulator does)."""
    counts: dict[Shape, list[int]] = {}
    shape_of: dict[DemandKey, Shape] = {}
    for key, (queued, running_jobs) in counters.items():
        if queued <= 0 and running_jobs <= 0:
            continue
        requested, name = key
        started = running.get(name) if name is not None else None  # unnamed jobs have nothing in common
        so_far = (int(started[0]), started[0] * now - started[1]) if started and learn_from_running else (0, 0.0)
        resources, spot = requested.resources, requested.preemptible
        planned_as = shape(resources, two_digits(runtimes.expected(name, requested.wall_time, so_far)), spot)
        shape_of[key] = planned_as
        total = counts.setdefault(planned_as, [0, 0])
        total[0] += max(0, queued)
        if running_jobs > 0 and so_far[0] > 0 and plan_remaining:
            left = two_digits(running_remaining(planned_as.wall_time, so_far))
            counts.setdefault(shape(resources, left, spot), [0, 0])[1] += running_jobs
        else:
            total[1] += max(0, running_jobs)
    queued_since: dict[Shape, float] = {}
    for key, mark in (since or {}).items():
        marked = shape_of.get(key)
        if marked is not None and (marked not in queued_since or mark < queued_since[marked]):
            queued_since[marked] = mark
    return Planned(
        counts={s: DemandCount(queued=q, running=r) for s, (q, r) in counts.items()},
        shape_of=shape_of,
        queued_since=queued_since,
    )


def checkpoint(marks: Checkpoints, *, enqueued: Enqueued, queued: int, now: float) -> Checkpoints:
    """One key's checkpoints after a round at ``now`` that read its counters: the ones that still count a
    queued job, and a new one if jobs were enqueued since the last."""
    if queued <= 0:
        return ()
    count, last_at = enqueued
    left = count - queued  # jobs that ever left the queue: started, cancelled (FIFO: the oldest first)
    kept = [mark for mark in marks if mark[1] > left]
    if not kept or kept[-1][1] < count:
        kept.append((min(now, last_at), count))
    if len(kept) > MAX_CHECKPOINTS:
        # the later of the two closest rounds (never the first) stands for both: its jobs look younger by the gap
        closest = min(range(1, len(kept) - 1), key=lambda i: kept[i + 1][0] - kept[i][0])
        del kept[closest]
    return tuple(kept)


def queue_marks(
    marks: Mapping[DemandKey, Checkpoints],
    counters: Mapping[DemandKey, Sequence[int]],
    enqueued: Mapping[DemandKey, Enqueued],
    now: float,
) -> dict[DemandKey, Checkpoints]:
    """Every key's checkpoints after a round at ``now`` (keys with nothing queued have none); the first one's
    time is when the key's oldest queued job was queued (``since``)."""
    out: dict[DemandKey, Checkpoints] = {}
    for key, count in counters.items():
        if count[0] > 0:
            out[key] = checkpoint(marks.get(key, ()), enqueued=enqueued.get(key, (0, now)), queued=count[0], now=now)
    return out


# A running job that has run this many times its expected runtime is an outlier of its name: from then on it is
# expected to run as long again as it has run, not to end at once (an outlier's time left grows with its age).
# Taken to end at once, a 32-core job 20 h into a 72-h run (its user's jobs took 7 h on average) had its 96-core
# node drained as "empty within 10 minutes", its room unused for days (the RICC week). At 1× its expected runtime
# it cost nf-mag 3.7 %: a node whose long job merely overran is still best drained there (its room costs more
# than spot nodes' for the small jobs that would fill it).
OVERRUN_FACTOR = 2.0


# A node running a job expected to run longer than this is not drained as emptying soon (consolidation): a
# learned runtime is a mean, and a long job's spread around it is hours, in which a drained node keeps running it
# and takes no other work. On the RICC week (seed 0) nodes drained so held $2,289 of unused room for over an hour;
# with this rule the week costs 1.8 % less (5 seeds of 5), nf-core unchanged (docs/simulate.md, session 13).
CONSOLIDATE_JOBS_UP_TO = 8 * 3600.0


def runs_long(keys: Iterable[DemandKey], shape_of: Mapping[DemandKey, Shape]) -> bool:
    """Is one of these jobs expected to run longer than ``CONSOLIDATE_JOBS_UP_TO`` (its node is not drained as
    emptying soon)?"""
    return any(expected_runtime(key, shape_of) > CONSOLIDATE_JOBS_UP_TO for key in keys)


def expected_runtime(key: DemandKey, shape_of: Mapping[DemandKey, Shape]) -> float:
    """How long a job of ``key`` is expected to run: as the round planned it (a key the round did not plan: the
    wall time the job asked for)."""
    planned_as = shape_of.get(key)
    return planned_as.wall_time if planned_as is not None else key[0].wall_time


def outlier_from(key: DemandKey, started_at: float, shape_of: Mapping[DemandKey, Shape]) -> float:
    """When a job of ``key`` that started at ``started_at`` becomes an outlier (``OVERRUN_FACTOR``)."""
    return started_at + expected_runtime(key, shape_of) * OVERRUN_FACTOR


def expected_end(key: DemandKey, started_at: float, shape_of: Mapping[DemandKey, Shape], now: float) -> float:
    """When a job of ``key`` that started at ``started_at`` is expected to end, seen at ``now``: after its expected
    runtime, or, an outlier, when it has run as long again as it has."""
    if now >= outlier_from(key, started_at, shape_of):
        return started_at + 2.0 * (now - started_at)
    return started_at + expected_runtime(key, shape_of)


def empties_at(
    running: Mapping[str, Iterable[tuple[DemandKey, float]]], shape_of: Mapping[DemandKey, Shape], now: float
) -> dict[str, float]:
    """When each busy node is expected to be empty (never before ``now``): ``running`` lists, per node, the
    key and start time of each job it runs. A node running a long job (``CONSOLIDATE_JOBS_UP_TO``) is left out:
    when it empties is not known well enough to drain it for that."""
    out: dict[str, float] = {}
    for node_id, node_jobs in running.items():
        jobs = list(node_jobs)
        if runs_long((key for key, _ in jobs), shape_of):
            continue
        ends = [expected_end(key, started_at, shape_of, now) for key, started_at in jobs]
        if ends:
            out[node_id] = max(now, *ends)
    return out
