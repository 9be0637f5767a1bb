"""Pack a histogram of job shapes into the cheapest fleet that starts every job within the target time.

The model (Toil's ``--targetTime`` semantics, made explicit so a checker can replay it):

- A node's usable capacity is split into *lanes*. A lane reserves a resource vector from time 0 and
  runs jobs one after another; every job in a lane fits within the lane's reservation and starts no
  later than the target time. Lanes run side by side, so at no instant do a node's running jobs
  exceed its usable capacity.
- Identical nodes are kept as one *group* with a count, so identical work is done once.

How a plan is found, in three passes, each near-linear in the number of distinct shapes:

1. **Lanes** (the time dimension). Jobs are split by market (may it run on spot) and accelerators.
   Many jobs of one shape first fill whole lanes of that shape: a lane holds ``⌊target / wall⌋ + 1``
   of them back to back (exact up to 16 further starts, deeper ones rounded *down* to four significant
   bits: at most 6 % fewer starts, only for jobs shorter than 1/16 of the target). The rest, which is
   every job of a continuous queue, is ordered so that neighbours are alike (by cores, then coarse
   cells of the less scarce of memory and disk, then the scarcer) and taken in windows of 128: largest
   first, each job joins the open lane of its window whose reservation grows least, as long as all of
   the lane's jobs but its longest fit back to back before the target time (the longest runs last: it
   only has to start by then, so a two-hour job can end a lane of one-minute ones) and some node type
   still holds the lane. A lane reserves the component-wise maximum of its jobs.
2. **Nodes** (the resource dimensions). Lanes go largest first (by what they would cost on the node
   type that is cheapest for them). Each takes the tightest open node with room, of any type its
   market allows, found by bisection on each type's scarcest resource and a bounded look past that
   point for the others; only when none has room is a node bought, of the type with the lowest price
   per job it will actually hold (its copies, or fewer when only a few jobs of that kind are left). So
   shapes mix on a node: a memory-heavy job beside a core-heavy one, small jobs in the room a big one
   leaves, preemptible jobs in room on on-demand nodes.
3. **Right-sizing.** Each group of nodes moves to the cheapest type whose capacity holds its lanes.
   Lanes that ``maxNodes`` left without room are then taken apart into single jobs and tried again.

What it guarantees: every plan is feasible for the exact, unrounded jobs (lanes and nodes are checked
against exact needs; only reservations and wall-time buckets round, and only up), which the replaying
checker in the tests proves; every job that fits some offered node is placed unless ``maxNodes`` leaves
no room on every type that fits it (then it is *deferred*, alone, never because of a lane partner); a
job is *unplaceable* only when no offered node of its market holds its exact needs, with a one-line
reason; equal demands give equal plans whatever their order. Cost: O(S log S + L·T·(log N + k)) for
S shapes, L lanes, T node types, N open groups and a look-past of k; memory O(S + L). Identical
nodes are one group, identical lanes one item, so few-shape queues cost next to nothing.

What it trades: lanes keep time simple (a lane's jobs run back to back in a fixed reservation) where
Toil's time slices let a node's free room change shape over time; a lane of unlike jobs reserves its
largest member in each resource; mixing is local to a window and a few candidate lanes and nodes, so
a node with room is sometimes missed (costing a node, never feasibility); node types are chosen per
lane by price per job, not by an exact optimum. It is a heuristic, measured against Toil by
``benchmarks/bench_plan.py``.
"""

from __future__ import annotations

import gc
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import RESOURCE_NAMES, Resources
from shared.domain.units import format_duration, format_size

_MIN_WALL_TIME = 1e-3  # seconds; a job that claims to take no time still occupies its lane
_EXACT_DEPTH = 16  # lane depths up to this are exact; deeper ones keep four significant bits
_WINDOW = 128  # jobs mixed into lanes together: alike in size, any wall time
_LANE_CHOICES = 8  # open lanes of a window a job may join
_LOOK_PAST = 6  # open nodes examined per type past the bisection point before buying a new one
_CORE_TOLERANCE = 1e-9  # so 0.1 + 0.2 cores counts as 0.3
_UNBOUNDED = 1 << 30


class Run(NamedTuple):
    """``count`` consecutive jobs of one shape in a lane (a named tuple: plans hold one per distinct shape,
    100,000 of them for a continuous queue, and a tuple is several times cheaper to make than a frozen
    dataclass)."""

    shape: Shape
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, which nothing here calls


@dataclass(frozen=True, slots=True, kw_only=True)
class Lane:
    reserved: Resources
    runs: tuple[Run, ...]
    end: float  # seconds from now when the lane's next job could start


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLoad:
    """What one node runs: its lanes and the capacity no lane has reserved yet."""

    lanes: tuple[Lane, ...] = ()
    free: Resources

    @property
    def jobs(self) -> int:
        return sum(run.count for lane in self.lanes for run in lane.runs)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGroup:
    """``count`` identical nodes of one offer, each running ``load``."""

    offer: Offer
    count: int
    load: NodeLoad


@dataclass(frozen=True, slots=True, kw_only=True)
class UnplacedShape:
    shape: Shape
    count: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    groups: tuple[NodeGroup, ...]
    unplaceable: tuple[UnplacedShape, ...] = ()  # fits no offered node: will never run as offered
    deferred: tuple[UnplacedShape, ...] = ()  # fits, but maxNodes leaves no room within the target time
    reasons: tuple[str, ...] = ()
    target_time: float = 0.0
    offers: tuple[Offer, ...] = field(default=())

    def node_counts(self) -> dict[str, int]:
        """Nodes per offer key (every offer present, zero included)."""
        counts = {offer.key: 0 for offer in self.offers}
        for group in self.groups:
            counts[group.offer.key] = counts.get(group.offer.key, 0) + group.count
        return counts

    @property
    def hourly_cost(self) -> float:
        return sum(group.count * group.offer.hourly_price for group in self.groups)

    @property
    def placed_jobs(self) -> int:
        return sum(group.count * group.load.jobs for group in self.groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """One placed job, as ``--assignments`` reports it."""

    shape: Shape
    offer: Offer
    node: int  # index among the plan's nodes of this offer, from 0
    start: float  # seconds from now


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
    packer = _Packer(offers, max(0.0, target_time))
    unplaceable: list[UnplacedShape] = []
    placeable: list[tuple[Shape, int]] = []
    # No sort here: every later order is by the shapes' own numbers, so equal demands in any order give
    # equal plans.
    for shape, count in demand.items():
        if count <= 0:
            continue
        if packer.eligible(shape):
            placeable.append((shape, count))
        else:
            unplaceable.append(UnplacedShape(shape=shape, count=count, reason=why_unplaceable(shape, offers)))
    unplaceable.sort(key=lambda u: _shape_order((u.shape, u.count)))
    packer.pack(packer.lanes(placeable))
    packer.right_size()
    # Right-sizing can free room on capped types; jobs deferred by maxNodes get another try. The loop
    # ends on a try, so whatever is still deferred really has every fitting type at its maximum.
    for _ in range(8):
        waiting, packer.waiting = packer.one_job_each(packer.waiting), []
        if not waiting:
            break
        packer.place(waiting)
        if sum(item[1] for item in packer.waiting) == sum(item[1] for item in waiting):
            break
        packer.right_size()
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
        groups=packer.groups(),
        unplaceable=tuple(unplaceable),
        deferred=tuple(deferred),
        reasons=tuple(packer.explain()),
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
                    wall = max(run.shape.wall_time, _MIN_WALL_TIME)
                    for _ in range(run.count):
                        yield Placement(shape=run.shape, offer=group.offer, node=node, start=start)
                        start += wall


def short_resource(shape: Shape, offers: Sequence[Offer]) -> str | None:
    """None if some offered node can hold ``shape``; else the resource it lacks most plainly ("cores", ...).

    A resource no eligible offer has enough of is named first; a shape that fits each resource somewhere
    but all of them nowhere at once is named by its first resource.
    """
    markets = [o for o in offers if shape.preemptible or not o.spot]
    if any(shape.resources.fits_in(o.usable) for o in markets):
        return None
    for resource in RESOURCE_NAMES:
        wanted = getattr(shape.resources, resource)
        if not markets or all(wanted > getattr(o.usable, resource) + 1e-9 for o in markets):
            return resource
    return RESOURCE_NAMES[0]


def why_unplaceable(shape: Shape, offers: Sequence[Offer]) -> str:
    """Name the resource no offered node has enough of, and the largest offer of it."""
    markets = [o for o in offers if shape.preemptible or not o.spot]
    if not markets:
        return "needs an on-demand node (it is not preemptible), but only spot node types are offered"
    need = shape.resources
    among = "" if len(markets) == len(offers) else " on demand (the job is not preemptible)"
    for resource in RESOURCE_NAMES:
        wanted = getattr(need, resource)
        best = max(markets, key=lambda o: getattr(o.usable, resource))
        has = getattr(best.usable, resource)
        if wanted > has + (_CORE_TOLERANCE if resource == "cores" else 0):
            return (
                f"needs {_amount(resource, wanted)}; the largest offered node{among}, {best.name}, "
                f"has {_amount(resource, has)}"
            )
    return f"needs {need.describe()} at once, and no offered node{among} has all of that together"


def summarize_unplaced(unplaced: Sequence[UnplacedShape]) -> list[str]:
    """One line per distinct cause (the reason with its numbers taken out), however many shapes share it.

    ``812 jobs (640 shapes, 300–420 GiB memory): needs more memory than the largest offered node ...``
    """
    by_cause: dict[str, list[UnplacedShape]] = {}
    for u in unplaced:
        by_cause.setdefault(_cause(u.reason), []).append(u)
    lines = []
    for cause, members in by_cause.items():
        jobs = sum(u.count for u in members)
        if len(members) == 1:
            lines.append(f"{jobs} jobs of {members[0].shape.describe()}: {members[0].reason}")
            continue
        lines.append(f"{jobs} jobs in {len(members)} shapes ({_ranges(u.shape for u in members)}): {cause}")
    return lines


def _cause(reason: str) -> str:
    """The reason without the job's own amount: ``needs 301 GiB memory; ...`` → ``needs more memory ...``."""
    if reason.startswith("needs ") and ";" in reason:
        head, tail = reason.split(";", 1)
        resource = head.rsplit(" ", 1)[-1]
        return f"needs more {resource} than{tail}"
    return reason


def _ranges(shapes: Iterator[Shape] | Sequence[Shape]) -> str:
    shapes = list(shapes)
    cores = [s.resources.cores for s in shapes]
    memory = [s.resources.memory for s in shapes]
    disk = [s.resources.disk for s in shapes]
    walls = [s.wall_time for s in shapes]
    parts = [
        _span(cores, lambda v: f"{v:g}", "cores"),
        _span(memory, format_size, "memory"),
        _span(disk, format_size, "disk"),
        _span(walls, format_duration, ""),
    ]
    markets = {s.preemptible for s in shapes}
    parts.append("preemptible" if markets == {True} else "on-demand only" if markets == {False} else "either market")
    return ", ".join(p for p in parts if p)


def _span(values: Sequence[float], show: object, noun: str) -> str:
    assert callable(show)
    low, high = min(values), max(values)
    text = show(low) if low == high else f"{show(low)}–{show(high)}"
    return f"{text} {noun}".rstrip()


def _amount(resource: str, value: float) -> str:
    if resource in ("memory", "disk"):
        return f"{format_size(value)} {resource}"
    noun = resource if value != 1 else resource.removesuffix("s")
    return f"{value:g} {noun}"


def lane_depth(wall_time: float, target_time: float) -> int:
    """How many jobs of ``wall_time`` one lane holds: back to back, each starting by the target time.

    Exact up to 16 further starts; beyond that rounded down to four significant bits, so very short
    jobs of nearby lengths share lanes (at most 6 % fewer starts than the exact count).
    """
    wall = max(wall_time, _MIN_WALL_TIME)
    if wall > target_time:
        return 1
    further = math.floor(target_time / wall + 1e-9)
    if further > _EXACT_DEPTH:
        shift = further.bit_length() - 4
        further = (further >> shift) << shift
    return further + 1


# ---- the packer ------------------------------------------------------------------------------------
#
# Plain tuples and small slotted objects inside (the hot path: 100,000 distinct shapes in well under a
# second); frozen dataclasses at the boundary.
#
# A lane type: (cores, memory, disk, accelerators, on_demand_only, runs), where runs is a tuple of
# (shape, jobs) run back to back. An item: a lane type with how many identical lanes are wanted.

_LaneType = tuple[float, int, int, int, bool, tuple[tuple[Shape, int], ...]]
_Family = tuple[bool, int, float]  # on-demand only, accelerators, cores
_Item = tuple[_LaneType, int, _Family, tuple[int, ...]]  # a lane type, how many, its family, copies per offer


class _Group:
    """``count`` identical open nodes of one offer: what is free on each and which lanes each runs."""

    __slots__ = ("count", "free", "id", "lanes", "offer", "on_demand_only")

    def __init__(
        self, count: int, free: list[float], offer: int, lanes: list[tuple[_LaneType, int]], ident: int
    ) -> None:
        self.count = count
        self.free = free  # cores, memory, disk, accelerators
        self.offer = offer
        self.lanes = lanes  # (lane type, copies per node)
        self.on_demand_only = False
        self.id = ident

    def add(self, lane: _LaneType, copies: int) -> None:
        free = self.free
        free[0] -= lane[0] * copies
        free[1] -= lane[1] * copies
        free[2] -= lane[2] * copies
        free[3] -= lane[3] * copies
        self.lanes.append((lane, copies))
        self.on_demand_only = self.on_demand_only or lane[4]


class _Packer:
    def __init__(self, offers: Sequence[Offer], target_time: float) -> None:
        self.offers = list(offers)
        self.target_time = target_time
        self.caps = [(o.usable.cores, o.usable.memory, o.usable.disk, o.usable.accelerators) for o in offers]
        self.spot = [o.spot for o in offers]
        self.scale = [tuple(1.0 / (x or 1) for x in cap) for cap in self.caps]
        # Node capacities a job may use, by whether it is preemptible; largest first, so checks end early.
        by_size = sorted(self.caps, key=lambda cap: (-cap[0], -cap[1], -cap[2], -cap[3]))
        self.caps_of = {
            True: by_size,
            False: [
                cap for cap in by_size if any(c == cap and not s for c, s in zip(self.caps, self.spot, strict=True))
            ],
        }
        self.price = [o.hourly_price for o in offers]
        self.room = [o.max_nodes - o.min_nodes for o in offers]
        self.entries: dict[int, _Group] = {}
        # Per offer, the open groups with room, sorted by what is free of the offer's scarcest resource.
        self.keys: list[list[float]] = [[] for _ in offers]
        self.members: list[list[_Group]] = [[] for _ in offers]
        self.key_dim = [0] * len(offers)
        self.deferred: dict[Shape, int] = {}
        self.waiting: list[_Item] = []  # lanes maxNodes had no room for
        self.left: dict[_Family, int] = {}  # lanes of each family not placed yet
        self.opened: dict[tuple[_Family, int], list[int]] = {}  # (family, offer) → [nodes, jobs]
        self.filled: dict[_Family, int] = {}  # jobs placed into room on nodes already planned
        self.family_shapes: dict[_Family, list[Shape]] = {}
        self._texts: dict[_Family, str] = {}
        self.moved: dict[tuple[int, int], int] = {}  # right-sizing (from, to) → nodes
        self.minimum: tuple[float, float, float, float] = (0.0, 0, 0, 0)
        self._next_id = 0
        for i, offer in enumerate(offers):  # minNodes come first, so the first jobs fill nodes that run anyway
            if offer.min_nodes:
                self._new_group(offer.min_nodes, list(self.caps[i]), i, [])

    def eligible(self, shape: Shape) -> bool:
        r = shape.resources
        c, m, d, a = r.cores - _CORE_TOLERANCE, r.memory, r.disk, r.accelerators
        for cc, cm, cd, ca in self.caps_of[shape.preemptible]:  # noqa: SIM110 - a loop is faster than any()
            if c <= cc and m <= cm and d <= cd and a <= ca:
                return True
        return False

    # -- pass 1: lanes --------------------------------------------------------------------------------

    def lanes(self, placeable: Sequence[tuple[Shape, int]]) -> list[tuple[_LaneType, int, _Family]]:
        """Lane types with their multiplicity (see the module docstring, pass 1)."""
        markets: dict[tuple[bool, int], list[tuple[Shape, int]]] = {}
        families: dict[_Family, list[Shape]] = {}
        for shape, count in placeable:
            r = shape.resources
            markets.setdefault((not shape.preemptible, r.accelerators), []).append((shape, count))
            families.setdefault((not shape.preemptible, r.accelerators, r.cores), []).append(shape)
        self.family_shapes = families
        items: list[tuple[_LaneType, int, _Family]] = []
        for market in sorted(markets):
            items.extend((lane, n, (lane[4], lane[3], lane[0])) for lane, n in self._cut(market, markets[market]))
        return items

    def _cut(self, market: tuple[bool, int], members: list[tuple[Shape, int]]) -> Iterator[tuple[_LaneType, int]]:
        """Lanes for the jobs of one market: full lanes of one shape, then windows of alike jobs mixed."""
        on_demand, acc = market
        target = self.target_time
        depth_of: dict[float, int] = {}
        rest: list[Shape] = []
        for shape, count in members:
            wall = shape.wall_time
            depth = depth_of.get(wall)
            if depth is None:
                depth = depth_of[wall] = lane_depth(wall, target)
            # Full lanes of one shape; the rest (and a few jobs longer than the target, which may end a
            # lane of shorter ones) are mixed below.
            keep = count % depth if depth > 1 else min(count, _WINDOW)
            if count > keep:
                r = shape.resources
                yield (r.cores, r.memory, r.disk, acc, on_demand, ((shape, depth),)), (count - keep) // depth
            rest.extend([shape] * keep)
        if not rest:
            return
        # Neighbours in this order are alike: by cores, then coarse cells of the less scarce of memory and
        # disk (on the cheapest node type for an average job), then the scarcer one.
        jobs = len(rest)
        mean_memory = sum(s.resources.memory for s in rest) / jobs
        mean_disk = sum(s.resources.disk for s in rest) / jobs
        mean_cores = sum(s.resources.cores for s in rest) / jobs
        best = self._cheapest(mean_cores, math.ceil(mean_memory), math.ceil(mean_disk), acc, on_demand=on_demand)
        cap = self.caps[best] if best is not None else (1.0, 1, 1, 1)
        by_memory = (mean_memory / cap[1] if cap[1] else 0.0) >= (mean_disk / cap[2] if cap[2] else 0.0)
        cells = max(1, min(64, math.isqrt(jobs // _WINDOW)))
        scale = cells / ((cap[2] if by_memory else cap[1]) or 1)

        def order(shape: Shape) -> tuple[float, int, int, int, float]:
            r = shape.resources
            first, second = (r.memory, r.disk) if by_memory else (r.disk, r.memory)
            return (r.cores, min(cells - 1, int(second * scale)), first, second, shape.wall_time)

        rest.sort(key=order, reverse=True)
        nodes = [node for node in self.caps_of[not on_demand] if node[3] >= acc]  # largest first
        for begin in range(0, jobs, _WINDOW):
            yield from _time_pack(rest[begin : begin + _WINDOW], target, acc, cap, nodes, on_demand=on_demand)

    # -- pass 2: nodes --------------------------------------------------------------------------------

    def pack(self, items: list[tuple[_LaneType, int, _Family]]) -> None:
        caps, price = self.caps, self.price
        keyed = []
        weight = [[0.0] * 4 for _ in self.offers]
        left: dict[_Family, int] = {}
        low_c, low_m, low_d, low_a = math.inf, math.inf, math.inf, math.inf
        pending = [(lane, count, family, self._copies_all(lane)) for lane, count, family in items]
        position = 0
        while position < len(pending):
            lane, count, family, copies = pending[position]
            position += 1
            c, m, d, a, on_demand, _ = lane
            best = self._cheapest_of(copies)
            if best is None:  # a lane no node holds (lanes are built so this cannot be): one job each then
                if len(lane[5]) > 1 or lane[5][0][1] > 1:
                    pending.extend(self.one_job_each([(lane, count, family, copies)]))
                else:  # never silently lost: it is reported as waiting
                    self.waiting.append((lane, count, family, copies))
                continue
            cap = caps[best]
            shares = (
                c / cap[0],
                m / cap[1] if cap[1] else 0.0,
                d / cap[2] if cap[2] else 0.0,
                a / cap[3] if cap[3] else 0.0,
            )
            row = weight[best]
            row[0] += shares[0] * count
            row[1] += shares[1] * count
            row[2] += shares[2] * count
            row[3] += shares[3] * count
            low_c = c if c < low_c else low_c
            low_m = m if m < low_m else low_m
            low_d = d if d < low_d else low_d
            low_a = a if a < low_a else low_a
            first = lane[5][0][0]
            tie = (c, m, d, a, on_demand, first.wall_time, first.resources.memory, first.resources.disk, len(lane[5]))
            keyed.append((-price[best] * max(shares), tie, lane, count, family, copies))
            left[family] = left.get(family, 0) + count
        self.key_dim = [max(range(4), key=lambda dim, w=w: (w[dim], -dim)) for w in weight]  # type: ignore[misc]
        if keyed:
            self.minimum = (low_c, low_m, low_d, low_a)
        for keys, members in zip(self.keys, self.members, strict=True):  # the search keys changed: index again
            keys.clear()
            members.clear()
        for group in self.entries.values():
            self._reindex(group)
        keyed.sort(key=lambda k: (k[0], k[1]))
        self.left = left
        self.place([(lane, count, family, copies) for _, _, lane, count, family, copies in keyed])

    def place(self, items: list[_Item]) -> None:
        """Place lanes in this order; what maxNodes leaves no room for waits in ``self.waiting``."""
        left = self.left
        for _, count, family, _ in items:  # lanes retried after right-sizing may belong to new families
            left.setdefault(family, count)
        for lane, wanted, family, copies in items:
            count = wanted
            runs = lane[5]
            jobs_per_lane = runs[0][1] if len(runs) == 1 else sum(n for _, n in runs)
            placed = self._fill(lane, count, copies)
            if placed:
                self.filled[family] = self.filled.get(family, 0) + placed * jobs_per_lane
                left[family] -= placed
                count -= placed
            while count:
                opened = self._open(lane, count, copies, family_left=left[family], family=family, jobs=jobs_per_lane)
                if not opened:
                    self.waiting.append((lane, count, family, copies))
                    break
                count -= opened
                left[family] -= opened

    def one_job_each(self, items: list[_Item]) -> list[_Item]:
        """Waiting lanes taken apart: a small job must not wait because it shared a lane with a big one."""
        out = []
        for lane, count, family, copies in items:
            if len(lane[5]) == 1 and lane[5][0][1] == 1:
                out.append((lane, count, family, copies))
                continue
            for shape, n in lane[5]:
                r = shape.resources
                single: _LaneType = (r.cores, r.memory, r.disk, r.accelerators, not shape.preemptible, ((shape, 1),))
                out.append(
                    (single, n * count, (not shape.preemptible, r.accelerators, r.cores), self._copies_all(single))
                )
        return out

    def _copies_all(self, lane: _LaneType) -> tuple[int, ...]:
        """How many copies of the lane an empty node of each offer holds (0: it does not fit, or wrong market)."""
        c, m, d, a, on_demand, _ = lane
        out = []
        for (fc, fm, fd, fa), spot in zip(self.caps, self.spot, strict=True):
            if (on_demand and spot) or c > fc + _CORE_TOLERANCE or m > fm or d > fd or a > fa:
                out.append(0)
                continue
            n = int(fc / c + 1e-9) if c > 0 else _UNBOUNDED
            if m and fm // m < n:
                n = fm // m
            if d and fd // d < n:
                n = fd // d
            if a and fa // a < n:
                n = fa // a
            out.append(n)
        return tuple(out)

    def _cheapest_of(self, copies: tuple[int, ...]) -> int | None:
        best: tuple[float, float, int] | None = None
        for i, n in enumerate(copies):
            if n:
                score = (self.price[i] / n, self.price[i], i)
                if best is None or score < best:
                    best = score
        return None if best is None else best[2]

    def _fill(self, lane: _LaneType, count: int, copies: tuple[int, ...]) -> int:
        """Put up to ``count`` lanes into room on open nodes, tightest first; return how many went in."""
        c, m, d, a = lane[0], lane[1], lane[2], lane[3]
        need = (c, m, d, a)
        all_keys, all_members, key_dim, scale = self.keys, self.members, self.key_dim, self.scale
        placed = 0
        while count:
            best: _Group | None = None
            best_slack = math.inf
            for offer_index, keys in enumerate(all_keys):
                if not keys or not copies[offer_index]:
                    continue
                dim = key_dim[offer_index]
                wanted = need[dim]
                at = bisect_left(keys, wanted - _CORE_TOLERANCE)
                stop = min(at + _LOOK_PAST, len(keys))
                members = all_members[offer_index]
                while at < stop:
                    free = members[at].free
                    if c <= free[0] + _CORE_TOLERANCE and m <= free[1] and d <= free[2] and a <= free[3]:
                        slack = (keys[at] - wanted) * scale[offer_index][dim]
                        if slack < best_slack:
                            best, best_slack = members[at], slack
                        break
                    at += 1
            if best is None:
                return placed
            put = self._put(best, lane, count)
            placed += put
            count -= put
        return placed

    def _put(self, group: _Group, lane: _LaneType, count: int) -> int:
        """Add up to ``count`` lanes to a group's nodes (splitting the group); return how many were added."""
        free = group.free
        per_node = min(count, _copies(lane[0], lane[1], lane[2], lane[3], free[0], free[1], free[2], free[3]))
        if count >= per_node * group.count:
            self._unindex(group)
            group.add(lane, per_node)
            self._reindex(group)
            return per_node * group.count
        full, rest = divmod(count, per_node)
        for size, copies in ((full, per_node), (1 if rest else 0, rest)):
            if not size:
                continue
            self._unindex(group)
            group.count -= size
            twin = self._new_group(size, list(free), group.offer, list(group.lanes), index=False)
            twin.on_demand_only = group.on_demand_only
            twin.add(lane, copies)
            self._reindex(twin)
            if group.count:
                self._reindex(group)
            else:
                del self.entries[group.id]
        return count

    def _open(
        self, lane: _LaneType, count: int, copies_of: tuple[int, ...], *, family_left: int, family: _Family, jobs: int
    ) -> int:
        """Buy nodes for up to ``count`` lanes; return how many lanes they took (0: maxNodes everywhere)."""
        best: tuple[float, float, str, int, int] | None = None
        wanted = family_left if family_left > count else count
        for i, copies in enumerate(copies_of):
            if not copies or self.room[i] <= 0:
                continue
            # A node's price over the jobs it will really hold: its copies, or what is left of this kind.
            score = (
                self.price[i] / (copies if copies < wanted else wanted),
                self.price[i],
                self.offers[i].key,
                i,
                copies,
            )
            if best is None or score[:3] < best[:3]:
                best = score
        if best is None:
            return 0
        _, _, _, i, copies = best
        nodes = min(count // copies, self.room[i])
        taken = nodes * copies if nodes else count
        nodes = nodes or 1
        self.room[i] -= nodes
        group = self._new_group(nodes, list(self.caps[i]), i, [], index=False)
        group.add(lane, taken // nodes)
        self._reindex(group)
        record = self.opened.setdefault((family, i), [0, 0])
        record[0] += nodes
        record[1] += taken * jobs
        return taken

    def _cheapest(self, c: float, m: int, d: int, a: int, *, on_demand: bool) -> int | None:
        """The offer with the lowest price per copy of this lane on an otherwise empty node."""
        return self._cheapest_of(self._copies_all((c, m, d, a, on_demand, ())))

    def _new_group(
        self, count: int, free: list[float], offer: int, lanes: list[tuple[_LaneType, int]], *, index: bool = True
    ) -> _Group:
        group = _Group(count, free, offer, lanes, self._next_id)
        self._next_id += 1
        self.entries[group.id] = group
        if index:
            self._reindex(group)
        return group

    def _reindex(self, group: _Group) -> None:
        free, low = group.free, self.minimum
        if free[0] < low[0] - _CORE_TOLERANCE or free[1] < low[1] or free[2] < low[2] or free[3] < low[3]:
            return  # nothing left to place fits in what is free: leave it out of the search
        key = free[self.key_dim[group.offer]]
        keys = self.keys[group.offer]
        at = bisect_right(keys, key)
        keys.insert(at, key)
        self.members[group.offer].insert(at, group)

    def _unindex(self, group: _Group) -> None:
        keys, members = self.keys[group.offer], self.members[group.offer]
        key = group.free[self.key_dim[group.offer]]
        at = bisect_left(keys, key)
        while at < len(keys) and keys[at] == key:
            if members[at] is group:
                del keys[at]
                del members[at]
                return
            at += 1

    # -- pass 3: right-sizing -------------------------------------------------------------------------

    def right_size(self) -> None:
        """Move each group to the cheapest type that holds its lanes (the tails of the first two passes)."""
        movable = [-o.min_nodes for o in self.offers]  # nodes beyond minNodes: those run anyway
        for group in self.entries.values():
            movable[group.offer] += group.count
        for group in self.entries.values():
            current, count = group.offer, group.count
            if not group.lanes or movable[current] < count:
                continue
            cap = self.caps[current]
            used = [cap[k] - group.free[k] for k in range(4)]
            best: int | None = None
            for i, other in enumerate(self.caps):
                if self.price[i] >= self.price[current] or (group.on_demand_only and self.spot[i]):
                    continue
                if self.room[i] < count or not _fits(used[0], int(used[1]), int(used[2]), int(used[3]), *other):
                    continue
                if best is None or (self.price[i], i) < (self.price[best], best):
                    best = i
            if best is None:
                continue
            movable[current] -= count
            self.room[current] += count
            self.room[best] -= count
            self.moved[(current, best)] = self.moved.get((current, best), 0) + count
            self._unindex(group)
            group.offer = best
            group.free = [self.caps[best][k] - used[k] for k in range(4)]
            self._reindex(group)

    # -- results --------------------------------------------------------------------------------------

    def groups(self) -> tuple[NodeGroup, ...]:
        made: dict[int, Lane] = {}
        out = []
        for group in self.entries.values():
            built: list[Lane] = []
            for lane, copies in group.lanes:
                made_lane = made.get(id(lane))
                if made_lane is None:
                    made_lane = made[id(lane)] = _lane(lane)
                built.extend([made_lane] * copies)
            fc, fm, fd, fa = group.free
            free = Resources(cores=fc, memory=int(fm), disk=int(fd), accelerators=int(fa))
            load = NodeLoad(lanes=tuple(built), free=free)
            out.append(NodeGroup(offer=self.offers[group.offer], count=group.count, load=load))
        return tuple(out)

    def explain(self) -> list[str]:
        """Why each node was bought, one line per kind of job and node type, however many shapes."""
        reasons = []
        for (family, i), (nodes, jobs) in sorted(self.opened.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            offer = self.offers[i]
            reasons.append(
                f"{jobs} jobs of {self._family_text(family)} → {nodes} new {offer.key} "
                f"(${offer.hourly_price:.4f}/h, {jobs / nodes:.3g} such jobs per node within the target time)"
            )
        for family, jobs in sorted(self.filled.items()):
            reasons.append(f"{jobs} jobs of {self._family_text(family)} fill room left on nodes already planned")
        for (source, target), nodes in sorted(self.moved.items()):
            a, b = self.offers[source], self.offers[target]
            reasons.append(
                f"right-sized {nodes} × {a.key} (${a.hourly_price:.4f}/h) to {b.key} "
                f"(${b.hourly_price:.4f}/h): their jobs still fit"
            )
        return reasons

    def _family_text(self, family: _Family) -> str:
        text = self._texts.get(family)
        if text is None:
            shapes = self.family_shapes.get(family, [])
            text = shapes[0].describe() if len(shapes) == 1 else f"{len(shapes)} shapes ({_ranges(shapes)})"
            self._texts[family] = text
        return text


def _fits_any(c: float, m: int, d: int, nodes: Sequence[tuple[float, int, int, int]]) -> bool:
    for fc, fm, fd, _ in nodes:  # noqa: SIM110 - a loop is faster than any()
        if c <= fc + _CORE_TOLERANCE and m <= fm and d <= fd:
            return True
    return False


def _time_pack(
    window: list[Shape],
    target: float,
    acc: int,
    cap: tuple[float, int, int, int],
    nodes: Sequence[tuple[float, int, int, int]],
    *,
    on_demand: bool,
) -> Iterator[tuple[_LaneType, int]]:
    """Lanes for a window of alike jobs, largest first, each joining the lane its reservation grows least.

    A lane can take a job while all its jobs but the longest fit within the target time back to back:
    the longest runs last, so every job starts by the target (the last one may run past it). A lane
    grows only while some node type of its market (``nodes``) can still hold it.
    """
    unit_c = 1.0 / (cap[0] or 1)
    unit_m = 1.0 / (cap[1] or 1)
    unit_d = 1.0 / (cap[2] or 1)
    # One entry per lane in each list: reserved cores, memory, disk; total and longest wall; its jobs.
    cores: list[float] = []
    memory: list[int] = []
    disk: list[int] = []
    total: list[float] = []
    longest: list[float] = []
    members: list[list[Shape]] = []
    limit = target + 1e-9
    for shape in window:
        r = shape.resources
        c, m, d = r.cores, r.memory, r.disk
        wall = shape.wall_time
        if wall < _MIN_WALL_TIME:  # noqa: PLR1730 - the innermost loop: no max()
            wall = _MIN_WALL_TIME
        best = -1
        best_growth = c * unit_c + m * unit_m + d * unit_d  # what a lane of its own costs
        for i in range(max(0, len(cores) - _LANE_CHOICES), len(cores)):
            # Everything but the longest job must fit before the target time.
            if total[i] + wall - (longest[i] if longest[i] > wall else wall) > limit:
                continue
            growth = 0.0
            if c > cores[i]:
                growth += (c - cores[i]) * unit_c
            if m > memory[i]:
                growth += (m - memory[i]) * unit_m
            if d > disk[i]:
                growth += (d - disk[i]) * unit_d
            if growth < best_growth and (
                growth == 0.0
                or _fits_any(
                    c if c > cores[i] else cores[i],
                    m if m > memory[i] else memory[i],
                    d if d > disk[i] else disk[i],
                    nodes,
                )
            ):
                best, best_growth = i, growth
        if best < 0:
            cores.append(c)
            memory.append(m)
            disk.append(d)
            total.append(wall)
            longest.append(wall)
            members.append([shape])
            continue
        # Conditionals, not max(): this is the innermost loop of a 100,000-shape plan.
        if c > cores[best]:  # noqa: PLR1730
            cores[best] = c
        if m > memory[best]:  # noqa: PLR1730
            memory[best] = m
        if d > disk[best]:  # noqa: PLR1730
            disk[best] = d
        total[best] += wall
        if wall > longest[best]:  # noqa: PLR1730
            longest[best] = wall
        members[best].append(shape)
    for i, jobs in enumerate(members):
        if len(jobs) == 1:
            runs: tuple[tuple[Shape, int], ...] = ((jobs[0], 1),)
        elif len(jobs) == 2:
            one, two = jobs
            runs = ((one, 1), (two, 1)) if one.wall_time <= two.wall_time else ((two, 1), (one, 1))
        else:
            jobs.sort(key=_wall_time)
            merged: list[tuple[Shape, int]] = []
            for shape in jobs:
                if merged and merged[-1][0] is shape:
                    merged[-1] = (shape, merged[-1][1] + 1)
                else:
                    merged.append((shape, 1))
            runs = tuple(merged)
        yield (cores[i], memory[i], disk[i], acc, on_demand, runs), 1


def _wall_time(shape: Shape) -> float:
    return shape.wall_time


_make_run = tuple.__new__  # Run from a (shape, count) pair without a Python-level __new__ call


def _lane(lane: _LaneType) -> Lane:
    c, m, d, a, _, runs = lane
    return Lane(
        reserved=Resources(cores=c, memory=m, disk=d, accelerators=a),
        runs=tuple([_make_run(Run, run) for run in runs]),
        end=sum(max(s.wall_time, _MIN_WALL_TIME) * n for s, n in runs),
    )


def _fits(c: float, m: int, d: int, a: int, fc: float, fm: int, fd: int, fa: int) -> bool:  # noqa: PLR0917
    return c <= fc + _CORE_TOLERANCE and m <= fm and d <= fd and a <= fa


def _copies(c: float, m: float, d: float, a: float, fc: float, fm: float, fd: float, fa: float) -> int:  # noqa: PLR0917
    """How many of (c, m, d, a) fit side by side in (fc, fm, fd, fa)."""
    if c > fc + _CORE_TOLERANCE or m > fm or d > fd or a > fa:
        return 0
    n = math.floor(fc / c + 1e-9) if c > 0 else _UNBOUNDED
    if m:
        n = min(n, int(fm // m))
    if d:
        n = min(n, int(fd // d))
    if a:
        n = min(n, int(fa // a))
    return n
