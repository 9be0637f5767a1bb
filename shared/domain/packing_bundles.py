"""Bundles: many mixed lanes that pass 2 places as one item (see ``shared.domain.packing``).

A continuous queue makes tens of thousands of mixed lanes, no two alike. From ``ROUND_FROM`` resource vectors
(cores, memory, disk) left to mix in a market (once whole lanes of one shape are taken out), each such lane's
reservation is rounded *up* onto a grid of ``GRID`` steps of the smallest node type that holds it (its jobs
still fit: a reservation only grows, and never past that node), so many lanes share one reservation. Lanes of
one reservation are interchangeable to pass 2: it places them as one lane type with a count (a *bundle*), and
only when the plan is written are its members dealt out, in order, to the nodes that took its copies.
Few-shape queues and small plans (the simulator's) never reach ``ROUND_FROM``: their plans are exact as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.domain.jobs import Shape
from shared.domain.packing_plan import CORE_TOLERANCE, MIN_WALL_TIME

if TYPE_CHECKING:
    from shared.domain.packing_lanes import Family, LaneType

ROUND_FROM = 2048  # resource vectors left to mix in a market from which its mixed lanes are rounded and bundled
GRID = 8  # steps of a node type's memory and disk that a mixed lane's reservation is rounded up to

Runs = tuple[tuple[Shape, int], ...]
Member = tuple[Runs, float]  # a bundled lane's runs and its end (the sum of its jobs' wall times, from pass 1)


class Bundle:
    """The lanes behind one bundled lane type: each member's runs, jobs counted up to each member, and how
    many members pass 2 has placed (it places them in order, so placed members are a prefix).

    The reasons count a placement's jobs from the members next in this order, while the plan deals members
    to nodes in the order of its groups: per bundle the counts agree, but a reason line (jobs → new nodes of
    one type) may name a few jobs more or fewer than the lanes of equal reservation those nodes run."""

    __slots__ = ("jobs", "lane", "members", "placed")

    def __init__(self, lane: LaneType, members: list[Member]) -> None:
        self.lane = lane  # held, so no other lane type can take its id while the registry lives
        self.members = members
        jobs = [0]
        total = 0
        for runs, _ in members:
            for run in runs:
                total += run[1]
            jobs.append(total)
        self.jobs = jobs
        self.placed = 0

    def take(self, lanes: int) -> int:
        """Count ``lanes`` more members as placed; return how many jobs they hold."""
        start = self.placed
        self.placed = start + lanes
        return self.jobs[start + lanes] - self.jobs[start]

    def rest(self) -> list[Member]:
        """The members not placed, removed from this bundle (they wait for room)."""
        rest = self.members[self.placed :]
        del self.members[self.placed :]
        del self.jobs[self.placed + 1 :]
        return rest


def rounder(nodes: Sequence[tuple[float, int, int, int]]) -> list[tuple[float, int, int, int, int]]:
    """Per node type a lane may use, smallest first: its cores, memory, disk and the grid's memory and disk steps."""
    return [(fc, fm, fd, max(1, fm // GRID), max(1, fd // GRID)) for fc, fm, fd, _ in reversed(nodes)]


def bundle(  # noqa: PLR0917 - positional: once per mixed lane, 30,000 times in a 100,000-shape plan
    bundles: dict[tuple[float, int, int], list[Member]],
    steps: list[tuple[float, int, int, int, int]],
    c: float,
    m: int,
    d: int,
    member: Member,
) -> None:
    """Add a lane to ``bundles`` under its reservation rounded up on the smallest node type that holds it."""
    for fc, fm, fd, sm, sd in steps:
        if c <= fc + CORE_TOLERANCE and m <= fm and d <= fd:
            m = -(-m // sm) * sm
            m = m if m < fm else fm
            d = -(-d // sd) * sd
            d = d if d < fd else fd
            break
    key = (c, m, d)
    members = bundles.get(key)
    if members is None:
        bundles[key] = [member]
    else:
        members.append(member)


def bundled_lanes(
    out: list[tuple[LaneType, int, Family]],
    bundles: dict[tuple[float, int, int], list[Member]],
    registry: dict[int, Bundle],
    acc: int,
    *,
    on_demand: bool,
) -> None:
    """One lane type per reservation, with its members' count, added to ``out``; a lone member is a plain lane."""
    for (c, m, d), members in bundles.items():
        lane: LaneType = (c, m, d, acc, on_demand, members[0][0])
        if len(members) > 1:
            registry[id(lane)] = Bundle(lane, members)
        out.append((lane, len(members), (on_demand, acc, c)))


def lane_end(runs: Runs) -> float:
    """When a lane's jobs have all run: the sum of their wall times (each at least ``MIN_WALL_TIME``)."""
    if len(runs) == 1:
        shape, n = runs[0]
        return max(shape.wall_time, MIN_WALL_TIME) * n
    if len(runs) == 2:  # the most common lane of a continuous queue; x + y is what sum([x, y]) gives
        (one, n), (two, k) = runs
        return ((w if (w := one.wall_time) > MIN_WALL_TIME else MIN_WALL_TIME) * n) + (
            (w if (w := two.wall_time) > MIN_WALL_TIME else MIN_WALL_TIME) * k
        )
    return sum([(s.wall_time if s.wall_time > MIN_WALL_TIME else MIN_WALL_TIME) * n for s, n in runs])


def reserves_its_job(lane: LaneType) -> bool:
    """A lane of one job that reserves just what the job asks. A bundled lane's reservation is rounded up: taken
    apart, its job must be placed by its own needs (a rounded disk can fit no type the job itself fits)."""
    r = lane[5][0][0].resources
    return lane[:4] == (r.cores, r.memory, r.disk, r.accelerators)
