"""Pass 3 of the packing (right-sizing) and the plan's results: node groups and why each node was bought."""

from __future__ import annotations

from shared.domain.node_types import Offer
from shared.domain.packing_bundles import Bundle, Runs, lane_end
from shared.domain.packing_groups import fits
from shared.domain.packing_lanes import Family, LaneType
from shared.domain.packing_nodes import NodePacker
from shared.domain.packing_plan import Lane, NodeGroup, NodeLoad
from shared.domain.packing_reasons import span_text
from shared.domain.resources import Resources


def right_size(packer: NodePacker) -> None:
    """Move each group to the cheapest type that holds its lanes (the tails of the first two passes)."""
    movable = [-o.min_nodes for o in packer.offers]  # nodes beyond minNodes: those run anyway
    for group in packer.entries.values():
        movable[group.offer] += group.count
    caps, price, spot, room = packer.caps, packer.price, packer.spot, packer.room
    # Per offer, the cheaper ones, cheapest first (ties to the first): the first that holds a group is its best.
    cheaper = [sorted((i for i in range(len(caps)) if price[i] < price[current]), key=lambda i: (price[i], i))
               for current in range(len(caps))]  # fmt: skip
    for group in packer.entries.values():
        current, count = group.offer, group.count
        if not group.lanes or movable[current] < count or not cheaper[current]:
            continue
        cap, free = caps[current], group.free
        used = [cap[0] - free[0], cap[1] - free[1], cap[2] - free[2], cap[3] - free[3]]
        c, m, d, a = used[0], int(used[1]), int(used[2]), int(used[3])
        best = -1
        for i in cheaper[current]:
            if (group.on_demand_only and spot[i]) or room[i] < count:
                continue
            if fits(c, m, d, a, *caps[i]):
                best = i
                break
        if best < 0:
            continue
        movable[current] -= count
        room[current] += count
        room[best] -= count
        packer.moved[(current, best)] = packer.moved.get((current, best), 0) + count
        packer.unindex(group)
        group.offer = best
        group.free = [caps[best][k] - used[k] for k in range(4)]
        packer.reindex(group)


def node_groups(packer: NodePacker) -> tuple[NodeGroup, ...]:
    """The plan's node groups. A 100,000-shape plan has 20,000 of them and 30,000 lanes: the frozen dataclasses
    are built slot by slot (see ``_lane``), a third of the time of their ``__init__``; one loop, so its
    names stay locals. A group holding bundled lanes is written node by node, each taking its bundles' next
    members (``shared.domain.packing_bundles``)."""
    made: dict[int, Lane] = {}
    out: list[NodeGroup] = []
    offers, bundles = packer.offers, packer.bundles
    dealt = dict.fromkeys(bundles, 0)  # members of each bundle dealt out so far
    lane_of, resources = _lane, _resources
    for group in packer.entries.values():
        lanes = group.lanes
        fc, fm, fd, fa = group.free
        free = resources(fc, int(fm), int(fd), int(fa))
        offer = offers[group.offer]
        # A lone node is written as _dealt writes it whether or not it runs bundled lanes (the most common
        # group of a continuous queue: no search of its lanes for one).
        if bundles and (group.count == 1 or any(id(lane) in bundles for lane, _ in lanes)):
            for _ in range(group.count):
                out.append(_group(offer, 1, free, _dealt(lanes, bundles, dealt, made)))
            continue
        if len(lanes) == 1 and lanes[0][1] == 1:  # most nodes of a continuous queue run one lane
            lane = lanes[0][0]
            made_lane = made.get(id(lane))
            if made_lane is None:
                made_lane = made[id(lane)] = lane_of(resources(*lane[:4]), lane[5])
            built: tuple[Lane, ...] = (made_lane,)
        else:
            every: list[Lane] = []
            for lane, copies in lanes:
                made_lane = made.get(id(lane))
                if made_lane is None:
                    made_lane = made[id(lane)] = lane_of(resources(*lane[:4]), lane[5])
                if copies == 1:
                    every.append(made_lane)
                else:
                    every.extend([made_lane] * copies)
            built = tuple(every)
        out.append(_group(offer, group.count, free, built))
    return tuple(out)


def _dealt(
    lanes: list[tuple[LaneType, int]], bundles: dict[int, Bundle], dealt: dict[int, int], made: dict[int, Lane]
) -> tuple[Lane, ...]:
    """One node's lanes: a bundle's copies are its next members, each a lane of the bundle's reservation."""
    new, set_reserved, set_runs, set_end = _new, _RESERVED, _RUNS, _END
    every: list[Lane] = []
    for lane, copies in lanes:
        key = id(lane)
        members = bundles.get(key)
        reserved = made.get(key)
        if reserved is None:
            reserved = made[key] = _lane(_resources(*lane[:4]), lane[5])
        if members is None:
            every.extend([reserved] * copies)
            continue
        start = dealt[key]
        dealt[key] = start + copies
        shared = reserved.reserved
        for runs, end in members.members[start : start + copies]:  # _ended, inline: 30,000 lanes
            made_lane = new(Lane)
            set_reserved(made_lane, shared)
            set_runs(made_lane, runs)
            set_end(made_lane, end)
            every.append(made_lane)
    return tuple(every)


def _group(offer: Offer, count: int, free: Resources, lanes: tuple[Lane, ...]) -> NodeGroup:
    """``NodeGroup(offer=..., count=..., load=NodeLoad(lanes=..., free=...))``, slot by slot."""
    load = _new(NodeLoad)
    _LANES(load, lanes)
    _FREE(load, free)
    made = _new(NodeGroup)
    _OFFER(made, offer)
    _COUNT(made, count)
    _LOAD(made, load)
    return made


def explain(packer: NodePacker) -> list[str]:
    """Why each node was bought, one line per kind of lane and node type, however many shapes.

    A line counts the jobs in lanes *led by* a kind of job (the largest in cores, which sets the lane's
    reservation): smaller jobs that share those lanes are counted there, not under their own kind."""
    reasons = []
    for (family, i), (nodes, jobs) in sorted(packer.opened.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        offer = packer.offers[i]
        reasons.append(
            f"{jobs} jobs in lanes led by {_family_text(packer, family)} → {nodes} new {offer.key} "
            f"(${offer.hourly_price:.4f}/h, {jobs / nodes:.3g} such jobs per node within the target time)"
        )
    for family, jobs in sorted(packer.filled.items()):
        reasons.append(
            f"{jobs} jobs in lanes led by {_family_text(packer, family)} fill room left on nodes already planned"
        )
    for (source, target), nodes in sorted(packer.moved.items()):
        a, b = packer.offers[source], packer.offers[target]
        reasons.append(
            f"right-sized {nodes} × {a.key} (${a.hourly_price:.4f}/h) to {b.key} "
            f"(${b.hourly_price:.4f}/h): their jobs still fit"
        )
    return reasons


def _family_text(packer: NodePacker, family: Family) -> str:
    text = packer._texts.get(family)
    if text is None:
        spans = packer.family_shapes[family]
        if spans.shapes == 1:
            text = spans.first.describe()
        else:  # a family's shapes share their cores and market
            on_demand, _, cores = family
            ranges = span_text((cores, cores), spans.memory, spans.disk, spans.walls, {not on_demand})
            text = f"{spans.shapes} shapes ({ranges})"
        packer._texts[family] = text
    return text


def _lane(reserved: Resources, runs: Runs) -> Lane:
    """``Lane(reserved=..., runs=..., end=...)``, built field by field: a 100,000-shape plan makes 30,000 of
    them, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) is a third of it."""
    return _ended(reserved, runs, lane_end(runs))


def _ended(reserved: Resources, runs: Runs, end: float) -> Lane:
    """``_lane`` with its end known (a bundle's member carries it from pass 1)."""
    made = _new(Lane)
    _RESERVED(made, reserved)
    _RUNS(made, runs)
    _END(made, end)
    return made


_new = object.__new__
_CORES, _MEMORY, _DISK, _ACCELERATORS = (
    Resources.__dict__[name].__set__ for name in ("cores", "memory", "disk", "accelerators")
)
_RESERVED, _RUNS, _END = (Lane.__dict__[name].__set__ for name in ("reserved", "runs", "end"))
_LANES, _FREE = (NodeLoad.__dict__[name].__set__ for name in ("lanes", "free"))
_OFFER, _COUNT, _LOAD = (NodeGroup.__dict__[name].__set__ for name in ("offer", "count", "load"))


def _resources(cores: float, memory: int, disk: int, accelerators: int) -> Resources:
    made = _new(Resources)
    _CORES(made, cores)
    _MEMORY(made, memory)
    _DISK(made, disk)
    _ACCELERATORS(made, accelerators)
    return made
