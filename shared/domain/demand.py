"""From demand counters to the demand the scaler plans: one rule for the deployed round and the simulator.

Counters are kept per ``DemandKey``: the job's requested shape and its name (jobs with one name share a
learned runtime). ``planned`` turns them into demand per shape whose wall time is the runtime expected for
the name (``runtimes.Runtimes.expected``, rounded by ``two_digits``), not the time the job asked for; running
jobs become demand of what is left of them (``policy.running_remaining``). The deployed round
(``shared.services.reconcile``) feeds it the state table's counters, the learned runtimes and the running
jobs' start times; the simulator (``shared.sim.engine``) feeds it its own, so the two cannot drift apart.

``queued_since`` is what a store can keep exactly without a read on the hot path: per key, the first
enqueue since a round last saw that key's queue empty (``emptied`` lists the keys whose mark a round clears).
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
    queued_since: dict[Shape, float]  # per planned shape, the earliest mark of its keys with jobs queued
    emptied: list[DemandKey]  # keys with a queued-since mark and nothing queued: the mark is to be cleared


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
    """``counters``: (queued, running) per key; ``running``: per name, (jobs running, sum of their start times);
    ``since``: per key, its queued-since mark. ``shape`` may intern the shapes it builds (the simulator does)."""
    counts: dict[Shape, list[int]] = {}
    shape_of: dict[DemandKey, Shape] = {}
    for key, (queued, running_jobs) in counters.items():
        if queued <= 0 and running_jobs <= 0:
            continue
        (requested, name), started = key, running.get(key[1])
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
    marks, emptied = _queued_since(counters, shape_of, since or {})
    return Planned(
        counts={s: DemandCount(queued=q, running=r) for s, (q, r) in counts.items()},
        shape_of=shape_of,
        queued_since=marks,
        emptied=emptied,
    )


def _queued_since(
    counters: Mapping[DemandKey, Sequence[int]], shape_of: Mapping[DemandKey, Shape], since: Mapping[DemandKey, float]
) -> tuple[dict[Shape, float], list[DemandKey]]:
    out: dict[Shape, float] = {}
    emptied: list[DemandKey] = []
    for key, mark in since.items():
        count = counters.get(key)
        if count is None or count[0] <= 0:
            emptied.append(key)
            continue
        planned_as = shape_of.get(key)
        if planned_as is not None and (planned_as not in out or mark < out[planned_as]):
            out[planned_as] = mark
    return out, emptied


def expected_end(key: DemandKey, started_at: float, shape_of: Mapping[DemandKey, Shape]) -> float:
    """When a job of ``key`` that started at ``started_at`` is expected to end (a key the round did not plan:
    by the wall time the job asked for)."""
    planned_as = shape_of.get(key)
    return started_at + (planned_as.wall_time if planned_as is not None else key[0].wall_time)


def empties_at(
    running: Mapping[str, Iterable[tuple[DemandKey, float]]], shape_of: Mapping[DemandKey, Shape], now: float
) -> dict[str, float]:
    """When each busy node is expected to be empty (never before ``now``): ``running`` lists, per node, the
    key and start time of each job it runs."""
    out: dict[str, float] = {}
    for node_id, jobs in running.items():
        ends = [expected_end(key, started_at, shape_of) for key, started_at in jobs]
        if ends:
            out[node_id] = max(now, *ends)
    return out
