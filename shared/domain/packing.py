"""Pack a histogram of job shapes into the cheapest fleet that starts every job within the target time.

The model (Toil's ``--targetTime`` semantics, made explicit so a checker can replay it):

- A node's usable capacity is split into *lanes*. A lane reserves a resource vector from time 0 and
  runs jobs one after another; every job in a lane fits within the lane's reservation and starts no
  later than the target time. Lanes run side by side, so at no instant do a node's running jobs
  exceed its usable capacity.
- Identical nodes are kept as one *group* with a count, so identical work is done once.

How a plan is found, in three passes, each near-linear in the number of distinct shapes:

1. **Lanes** (the time dimension). Jobs are split by market (may it run on spot) and accelerators. Many jobs
   of one shape first fill whole lanes of that shape: a lane holds ``⌊target / wall⌋ + 1`` of them back to
   back (exact up to 16 further starts, deeper ones rounded *down* to four significant bits: at most 6 % fewer
   starts, only for jobs shorter than 1/16 of the target). Jobs of one resource vector that are left (or
   longer than the target) share lanes by best fit on time, alike lanes as one item with a count. The rest,
   which is every job of a continuous queue, is ordered so that neighbours are alike (by cores, then coarse
   cells of the less scarce of memory and disk, then the scarcer) and taken in windows of 128: largest first,
   each job joins the open lane of its window whose reservation grows least, as long as all of the lane's jobs
   but its longest fit back to back before the target time (the longest runs last: it only has to start by
   then, so a two-hour job can end a lane of one-minute ones) and some node type still holds the lane. A lane
   reserves the component-wise maximum of its jobs. A market with 2,048 or more resource vectors left to mix
   (``shared.domain.packing_bundles``) then rounds each of these lanes' memory and disk *up* to eighths of the
   smallest node type that holds it (never past it), so its ~30,000 lanes share a few hundred reservations,
   and lanes of one reservation are one *bundle*: pass 2 places it as one lane type with a count, and each
   member is dealt out, in order, to a node that took a copy when the plan is written.
2. **Nodes** (the resource dimensions). Lanes go largest first (by what they would cost on the node
   type that is cheapest for them). Each takes the tightest open node with room, of any type its
   market allows, found by bisection on each type's scarcest resource and a bounded look past that
   point for the others (six distinct free vectors, at most 96 nodes: nodes left alike by one kind of
   job fail alike, so they count once); only when none has room is a node bought, of the type with the lowest price
   per job it will actually hold (its copies, or fewer when only a few jobs of that kind are left), a node that
   holds more jobs counted dearer for the tail it is paid for while its last job runs
   (``packing_tail.tail_factor``). So
   shapes mix on a node: a memory-heavy job beside a core-heavy one, small jobs in the room a big one
   leaves, preemptible jobs in room on on-demand nodes.
3. **Right-sizing.** Each group of nodes moves to the cheapest type whose capacity holds its lanes.
   Lanes that ``maxNodes`` left without room are then taken apart into single jobs and tried again.

What it guarantees: every plan is feasible for the exact, unrounded jobs (lanes and nodes are checked
against exact needs; only reservations and wall-time buckets round, and only up), which the replaying
checker in the tests proves; every job that fits some offered node is placed unless ``maxNodes`` leaves
no room on every type that fits it (then it is *deferred*, alone, never because of a lane partner or a
bundle); a job is *unplaceable* only when no offered node of its market holds its exact needs, with a
one-line reason (rounding happens after that verdict, on lanes, and never past a node that holds the
lane); equal demands give equal plans whatever their order. Cost: O(S log S + B·T·(log N + k)) for S
shapes, B lane types (bundles count once), T node types, N open groups and a look-past of k; memory
O(S + L) for L lanes. Identical nodes are one group, identical lanes one item, so few-shape queues cost
next to nothing.

What it trades: lanes keep time simple (a lane's jobs run back to back in a fixed reservation) where
Toil's time slices let a node's free room change shape over time; a lane of unlike jobs reserves its
largest member in each resource; mixing is local to a window and a few candidate lanes and nodes, so
a node with room is sometimes missed (costing a node, never feasibility); node types are chosen per
lane by price per job, not by an exact optimum. Bundling trades up to an eighth of a node's memory and
disk per mixed lane for speed: against the exact lanes it cost +4 % on 5,000 and +3.3 % on 10,000 mixed
jobs, nothing on 30,000 and 100,000 (+0.4 %, +0.0 %), -1.2 % on the gpu queue and -4.8 % on the
on-demand one at 100,000, +0.7 % on too-big (rounded reservations line nodes up as often as they waste
room). Jobs alike but for wall time are bundled too: 100,000 jobs of 50,000 resource vectors with two wall
times each, or 33,334 shapes of three jobs each, took 1.5-1.8 s unbundled and take 0.6-0.8 s, 5-7 % cheaper.
Queues under the threshold (few-shape queues, the simulator's small plans) are not rounded. Lanes alike by
best fit on time are one item since this change: 1,000 shapes of 100 jobs each went from 1.2 s to 0.08 s
and 7 % cheaper; the few-shape queue and the traces keep their nodes and cost, in fewer groups (141 → 14).
It is a heuristic, measured against Toil by ``benchmarks/bench_plan.py``.

Where the time goes (100,000 mixed jobs, the 2-core shared machine, CPU, side by side in the same window): the
bench's histogram + plan 0.80 s, median of 12 runs (0.64-0.92 s) at load 2.4-3.9, against 0.90 s (0.63-0.99 s)
before the last round (0.93 of it pair by pair); ``shoal plan`` 1.74 s in all, 0.94 of before. Pass 1 about 0.5 s:
gathering the shapes 0.07-0.10 s, ordering neighbours 0.10-0.13 s, the windows' lane choice 0.15-0.19 s (600,000
tries of a lane for 100,000 jobs, four in five refused on time alone: about 0.3 µs a try), their runs and bundles
0.09 s; pass 2 0.015 s (701 bundles instead of 32,696 lanes; it was 0.5 s), the plan's dataclasses 0.06-0.08 s
(17,868 node groups and 32,696 lanes, each its own since the jobs differ), the split by fit 0.03 s; the bench's
histogram 0.065 s, nearly all of it hashing each Shape once (two generated ``__hash__`` calls: one flat hash is
no faster, and a cached one would only move the cost into parsing). Freeing a plan takes 0.035 s more. The last
round cut, without changing any plan: a bucket's neighbours sorted by two stable sorts on one integer each
(0.03 s), a continuous queue told from its first 1,024 jobs by the histogram (0.02 s), a market's mean sizes in one
pass over its rows (0.02 s: each row is a fetch from memory), a lone node's lanes written without a search. It
tried, for nothing: skipping lanes full for every job left in the window (a window's shortest job, often one
minute, leaves almost no lane full), one composite integer sort key for the neighbours (twice as slow), the
cores of a family's rows shared as one object. ``shoal plan`` reads 100,000 lines in 0.6 s, 0.25 s of it
``json``'s own decoding; decoding 2,048 lines as one array was no faster in all. Trying a finer grid: 32
steps cost 1.5 % less at 100,000 jobs but 0.1 s more in pass 2 (6,049 bundles). The constant factors were cut
twice before without changing any plan (plain tuples, one integer sort key, no key functions in pass 2's sort,
lists for generators, neighbours sorted in (cores, cell) buckets, a family's spans kept as the shapes are read,
runs made as ``Run`` once, an offer's fit found once per resource vector, tie-breaking only among equal price
keys). Quantizing *job* shapes onto a
round-up grid before packing was tried and cost 7-20 % more on the mixed queue without being faster until
coarse: a job's grid cell is fixed before it finds partners, a lane's only after. numpy is not used: the passes
are greedy, one lane after another, and the domain ships in a Lambda layer. Below 0.5 s would need a cheaper
pass 1 (fewer lane choices cost 3.5 % for no measurable gain).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.packing_lanes import lane_depth
from shared.domain.packing_nodes import NodePacker
from shared.domain.packing_plan import (
    MIN_WALL_TIME,
    Lane,
    NodeGroup,
    NodeLoad,
    Placement,
    Plan,
    Run,
    UnplacedShape,
)
from shared.domain.packing_reasons import short_resource, summarize_unplaced, why_unplaceable
from shared.domain.packing_results import explain, node_groups, right_size

__all__ = [
    "Lane",
    "NodeGroup",
    "NodeLoad",
    "Placement",
    "Plan",
    "Run",
    "UnplacedShape",
    "lane_depth",
    "placements",
    "plan",
    "short_resource",
    "summarize_unplaced",
    "why_unplaceable",
]


def plan(demand: Mapping[Shape, int], offers: Sequence[Offer], *, target_time: float) -> Plan:
    """The cheapest fleet (by this heuristic) that starts every placeable job within ``target_time``."""
    # Planning makes hundreds of thousands of small tuples and frees none of them until the end: the
    # cyclic garbage collector would scan them again and again for nothing (a third of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _plan(demand, offers, target_time=target_time)
    finally:
        if collecting:
            gc.enable()


def _plan(demand: Mapping[Shape, int], offers: Sequence[Offer], *, target_time: float) -> Plan:
    packer = NodePacker(offers, max(0.0, target_time))
    # No sort here: every later order is by the shapes' own numbers, so equal demands in any order give
    # equal plans.
    placeable, unfit = packer.split(demand.items())
    unplaceable = [
        UnplacedShape(shape=shape, count=count, reason=why_unplaceable(shape, offers)) for shape, count in unfit
    ]
    unplaceable.sort(key=lambda u: _shape_order((u.shape, u.count)))
    packer.pack(packer.lanes(placeable))
    right_size(packer)
    # Right-sizing can free room on capped types; jobs deferred by maxNodes get another try. The loop
    # ends on a try, so whatever is still deferred really has every fitting type at its maximum.
    for _ in range(8):
        waiting, packer.waiting = packer.one_job_each(packer.waiting), []
        if not waiting:
            break
        packer.place(waiting)
        if sum(item[1] for item in packer.waiting) == sum(item[1] for item in waiting):
            break
        right_size(packer)
    for lane, count, _, _ in packer.waiting:
        for shape, n in lane[5]:
            packer.deferred[shape] = packer.deferred.get(shape, 0) + n * count
    deferred = [
        UnplacedShape(
            shape=shape,
            count=count,
            reason=f"maxNodes reached for every node type that fits ({shape.describe()}); "
            "these jobs wait for capacity to free up",
        )
        for shape, count in sorted(packer.deferred.items(), key=_shape_order)
    ]
    return Plan(
        groups=node_groups(packer),
        unplaceable=tuple(unplaceable),
        deferred=tuple(deferred),
        reasons=tuple(explain(packer)),
        target_time=target_time,
        offers=tuple(offers),
    )


def _shape_order(item: tuple[Shape, int]) -> tuple[float, int, int, int, float, bool]:
    """A total order on shapes by plain numbers (comparing the dataclasses is much slower)."""
    s = item[0]
    r = s.resources
    return (r.cores, r.memory, r.disk, r.accelerators, s.wall_time, s.preemptible)


def placements(result: Plan) -> Iterator[Placement]:
    """Every placed job with its node and start time, in a stable order."""
    next_index: dict[str, int] = {}
    for group in result.groups:
        base = next_index.get(group.offer.key, 0)
        next_index[group.offer.key] = base + group.count
        for node in range(base, base + group.count):
            for lane in group.load.lanes:
                start = 0.0
                for run in lane.runs:
                    wall = max(run.shape.wall_time, MIN_WALL_TIME)
                    for _ in range(run.count):
                        yield Placement(shape=run.shape, offer=group.offer, node=node, start=start)
                        start += wall
