"""Pack a histogram of job shapes into the cheapest fleet that starts every job within the target time.

The model (Toil's ``--targetTime`` semantics, made explicit so a checker can replay it):

- A node's usable capacity is split into *lanes*. A lane reserves a resource vector from time 0 and
  runs jobs one after another; every job in a lane fits within the lane's reservation and starts no
  later than the target time. Lanes run side by side, so at no instant do a node's running jobs
  exceed its usable capacity.
- Identical nodes are kept as one *group* with a count, so the work per shape is proportional to the
  number of groups, never to the number of jobs: a decision costs O(shapes × (groups + offers)).

The search is first-fit-decreasing over shapes with a cost-aware choice when new nodes must be opened
(the offer with the lowest price per job actually placed), followed by a right-sizing pass that moves
each group's load to a cheaper offer when that offer can hold it. Toil instead opens the smallest node
type that fits, job by job, whatever it costs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import RESOURCE_NAMES, Resources
from shared.domain.units import format_size

_MIN_WALL_TIME = 1e-3  # seconds; a job that claims to take no time still occupies its lane


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """``count`` consecutive jobs of one shape in a lane."""

    shape: Shape
    count: int


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
    packer = _Packer(offers, target_time)
    unplaceable: list[UnplacedShape] = []
    deferred: list[UnplacedShape] = []
    placeable: dict[Shape, int] = {}
    for shape, count in demand.items():
        if count <= 0:
            continue
        if packer.eligible(shape):
            placeable[shape] = count
        else:
            unplaceable.append(UnplacedShape(shape=shape, count=count, reason=why_unplaceable(shape, offers)))

    waiting = {shape: packer.place(shape, placeable[shape]) for shape in sorted(placeable, key=packer.order_key)}
    packer.right_size()
    # Right-sizing can free room on capped types; jobs deferred by maxNodes get another try. The loop
    # ends on a try, so whatever is still deferred really has every fitting type at its maximum.
    for _ in range(8):
        before = sum(waiting.values())
        waiting = {shape: packer.place(shape, left) for shape, left in waiting.items() if left}
        if not waiting or sum(waiting.values()) == before:
            break
        packer.right_size()
    for shape, left in waiting.items():
        if left:
            deferred.append(
                UnplacedShape(
                    shape=shape,
                    count=left,
                    reason=f"maxNodes reached for every node type that fits ({shape.describe()}); "
                    "these jobs wait for capacity to free up",
                )
            )
    return Plan(
        groups=tuple(g for g in packer.groups if g.count > 0),
        unplaceable=tuple(unplaceable),
        deferred=tuple(deferred),
        reasons=tuple(packer.reasons),
        target_time=target_time,
        offers=tuple(offers),
    )


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
        if wanted > has + (1e-9 if resource == "cores" else 0):
            return (
                f"needs {_amount(resource, wanted)}; the largest offered node{among}, {best.name}, "
                f"has {_amount(resource, has)}"
            )
    return f"needs {need.describe()} at once, and no offered node{among} has all of that together"


def _amount(resource: str, value: float) -> str:
    if resource in ("memory", "disk"):
        return f"{format_size(value)} {resource}"
    noun = resource if value != 1 else resource.removesuffix("s")
    return f"{value:g} {noun}"


class _Packer:
    def __init__(self, offers: Sequence[Offer], target_time: float) -> None:
        self.offers = list(offers)
        self.target_time = target_time
        self.groups: list[NodeGroup] = []
        self.reasons: list[str] = []
        self.nodes_of: dict[str, int] = {o.key: 0 for o in offers}
        self._largest = Resources(
            cores=max((o.usable.cores for o in offers), default=1.0) or 1.0,
            memory=max((o.usable.memory for o in offers), default=1) or 1,
            disk=max((o.usable.disk for o in offers), default=1) or 1,
            accelerators=max((o.usable.accelerators for o in offers), default=1) or 1,
        )
        for offer in offers:  # minNodes come first, so the first jobs fill nodes that run anyway
            if offer.min_nodes:
                self._add_group(offer, offer.min_nodes, _empty(offer))

    def eligible(self, shape: Shape) -> bool:
        return any(self._fits_offer(shape, o) for o in self.offers)

    def order_key(self, shape: Shape) -> tuple[bool, float, float]:
        r, big = shape.resources, self._largest
        dominant = max(r.cores / big.cores, r.memory / big.memory, r.disk / big.disk, r.accelerators / big.accelerators)
        # On-demand-only shapes first: preemptible ones can then fill what they leave on on-demand nodes.
        return (shape.preemptible, -dominant, -shape.wall_time)

    def place(self, shape: Shape, count: int) -> int:
        """Place ``count`` jobs of ``shape``: into open nodes first, then into new ones. Returns jobs left."""
        left = self._fill_open_groups(shape, count)
        if left:
            left = self._open_nodes(shape, left)
        return left

    def _fill_open_groups(self, shape: Shape, count: int) -> int:
        left = count
        index = 0
        while left and index < len(self.groups):
            group = self.groups[index]
            index += 1
            if not self._market_ok(shape, group.offer):
                continue
            per_node = _capacity(group.load, shape, self.target_time)
            if per_node == 0:
                continue
            full = min(group.count, left // per_node)
            left -= full * per_node
            pieces: list[NodeGroup] = []
            if full:
                pieces.append(replace(group, count=full, load=_put(group.load, shape, per_node, self.target_time)))
            rest = group.count - full
            if left and rest:
                pieces.append(replace(group, count=1, load=_put(group.load, shape, left, self.target_time)))
                left, rest = 0, rest - 1
            if rest:
                pieces.append(replace(group, count=rest))
            index -= 1
            self.groups[index : index + 1] = pieces
            index += len(pieces)
        return left

    def _open_nodes(self, shape: Shape, count: int) -> int:
        left = count
        while left:
            best: tuple[float, int, str, Offer, int, int] | None = None
            for offer in self.offers:
                room = offer.max_nodes - self.nodes_of[offer.key]
                if room <= 0 or not self._fits_offer(shape, offer):
                    continue
                per_node = _capacity(_empty(offer), shape, self.target_time)
                # Either cover everything left with this type, or only the nodes it fills completely
                # and leave the tail to the next pass (big nodes for the bulk, small ones for the rest).
                for nodes in {min(room, -(-left // per_node)), min(room, left // per_node)}:
                    if nodes == 0:
                        continue
                    placed = min(left, nodes * per_node)
                    score = (nodes * offer.hourly_price / placed, -placed, offer.key, offer, per_node, nodes)
                    if best is None or score[:3] < best[:3]:
                        best = score
            if best is None:
                return left
            per_job, _, _, offer, per_node, nodes = best
            full = min(nodes, left // per_node)
            if full:
                self._add_group(offer, full, _put(_empty(offer), shape, per_node, self.target_time))
            remainder = left - full * per_node
            if remainder and full < nodes:
                self._add_group(offer, 1, _put(_empty(offer), shape, remainder, self.target_time))
                remainder = 0
            placed = (left - remainder) if remainder else left
            self.reasons.append(
                f"{placed} jobs of {shape.describe()} → {nodes} new {offer.key} "
                f"(${per_job:.4f}/job-hour, {per_node} jobs per node within the target time)"
            )
            left = remainder
        return 0

    def right_size(self) -> None:
        """Move each group's load onto a cheaper offer that can hold it (the tails of a first-fit pass)."""
        for index, group in enumerate(self.groups):
            current = group.offer
            if self.nodes_of[current.key] - group.count < current.min_nodes or group.load.jobs == 0:
                continue
            runs = [run for lane in group.load.lanes for run in lane.runs]
            best: tuple[float, Offer, NodeLoad] | None = None
            for offer in self.offers:
                if offer.hourly_price >= current.hourly_price or offer.key == current.key:
                    continue
                if offer.max_nodes - self.nodes_of[offer.key] < group.count:
                    continue
                if not all(self._market_ok(run.shape, offer) for run in runs):
                    continue
                load = self._repack(runs, offer)
                if load is not None and (best is None or offer.hourly_price < best[0]):
                    best = (offer.hourly_price, offer, load)
            if best is not None:
                _, offer, load = best
                self.reasons.append(
                    f"right-sized {group.count} × {current.key} (${current.hourly_price:.4f}/h) "
                    f"to {offer.key} (${offer.hourly_price:.4f}/h): its {group.load.jobs} jobs still fit"
                )
                self.nodes_of[current.key] -= group.count
                self.nodes_of[offer.key] += group.count
                self.groups[index] = NodeGroup(offer=offer, count=group.count, load=load)

    def _repack(self, runs: Sequence[Run], offer: Offer) -> NodeLoad | None:
        totals: dict[Shape, int] = {}
        for run in runs:
            totals[run.shape] = totals.get(run.shape, 0) + run.count
        load = _empty(offer)
        for shape in sorted(totals, key=self.order_key):
            if _capacity(load, shape, self.target_time) < totals[shape]:
                return None
            load = _put(load, shape, totals[shape], self.target_time)
        return load

    def _add_group(self, offer: Offer, count: int, load: NodeLoad) -> None:
        self.groups.append(NodeGroup(offer=offer, count=count, load=load))
        self.nodes_of[offer.key] += count

    def _fits_offer(self, shape: Shape, offer: Offer) -> bool:
        return self._market_ok(shape, offer) and shape.resources.fits_in(offer.usable)

    @staticmethod
    def _market_ok(shape: Shape, offer: Offer) -> bool:
        return shape.preemptible or not offer.spot


def _empty(offer: Offer) -> NodeLoad:
    return NodeLoad(lanes=(), free=offer.usable)


def _rounds(wall_time: float, after: float, target_time: float) -> int:
    """How many jobs of ``wall_time`` can start, back to back from ``after``, no later than the target."""
    if after > target_time + 1e-9:
        return 0
    return math.floor((target_time - after) / max(wall_time, _MIN_WALL_TIME) + 1e-9) + 1


def _capacity(load: NodeLoad, shape: Shape, target_time: float) -> int:
    need = shape.resources
    total = 0
    for lane in load.lanes:
        if need.fits_in(lane.reserved):
            total += _rounds(shape.wall_time, lane.end, target_time)
    copies = need.copies_in(load.free)
    if copies:
        total += copies * _rounds(shape.wall_time, 0.0, target_time)
    return total


def _put(load: NodeLoad, shape: Shape, count: int, target_time: float) -> NodeLoad:
    """``load`` with ``count`` more jobs of ``shape``: existing lanes first, then new lanes, each filled deep."""
    need, wall = shape.resources, max(shape.wall_time, _MIN_WALL_TIME)
    lanes = list(load.lanes)
    left = count
    for i, lane in enumerate(lanes):
        if not left:
            break
        if not need.fits_in(lane.reserved):
            continue
        take = min(left, _rounds(shape.wall_time, lane.end, target_time))
        if take:
            lanes[i] = Lane(reserved=lane.reserved, runs=_append(lane.runs, shape, take), end=lane.end + take * wall)
            left -= take
    free = load.free
    per_lane = _rounds(shape.wall_time, 0.0, target_time)
    while left:
        if not need.fits_in(free):
            raise ValueError("internal: placed more jobs than the node's capacity")  # guarded by _capacity
        take = min(left, per_lane)
        lanes.append(Lane(reserved=need, runs=(Run(shape=shape, count=take),), end=take * wall))
        free = free - need
        left -= take
    return NodeLoad(lanes=tuple(lanes), free=free)


def _append(runs: tuple[Run, ...], shape: Shape, count: int) -> tuple[Run, ...]:
    if runs and runs[-1].shape == shape:
        return (*runs[:-1], Run(shape=shape, count=runs[-1].count + count))
    return (*runs, Run(shape=shape, count=count))
