"""Pieces of pass 2 of the packing (``shared.domain.packing_nodes``): open nodes, identical ones as one group, and
the order lanes are placed in."""

from __future__ import annotations

import math

from shared.domain.packing_lanes import Family, LaneType
from shared.domain.packing_plan import CORE_TOLERANCE

UNBOUNDED = 1 << 30  # copies of a lane that needs none of a resource
Item = tuple[LaneType, int, Family, tuple[int, ...]]  # a lane type, how many, its family, copies per offer
# A lane's place in the order of pass 2: its price key and position (ties: see break_ties); the item.
Keyed = tuple[float, int, LaneType, int, Family, tuple[int, ...]]


class OpenGroup:
    """``count`` identical open nodes of one offer: what is free on each and which lanes each runs."""

    __slots__ = ("count", "free", "id", "lanes", "offer", "on_demand_only")

    def __init__(
        self, count: int, free: list[float], offer: int, lanes: list[tuple[LaneType, int]], ident: int
    ) -> None:
        self.count = count
        self.free = free  # cores, memory, disk, accelerators
        self.offer = offer
        self.lanes = lanes  # (lane type, copies per node)
        self.on_demand_only = False
        self.id = ident

    def add(self, lane: LaneType, copies: int) -> None:
        free = self.free
        free[0] -= lane[0] * copies
        free[1] -= lane[1] * copies
        free[2] -= lane[2] * copies
        free[3] -= lane[3] * copies
        self.lanes.append((lane, copies))
        self.on_demand_only = self.on_demand_only or lane[4]


def fits(c: float, m: int, d: int, a: int, fc: float, fm: int, fd: int, fa: int) -> bool:  # noqa: PLR0917
    return c <= fc + CORE_TOLERANCE and m <= fm and d <= fd and a <= fa


def copies_in(c: float, m: float, d: float, a: float, fc: float, fm: float, fd: float, fa: float) -> int:  # noqa: PLR0917
    """How many of (c, m, d, a) fit side by side in (fc, fm, fd, fa)."""
    if c > fc + CORE_TOLERANCE or m > fm or d > fd or a > fa:
        return 0
    n = math.floor(fc / c + 1e-9) if c > 0 else UNBOUNDED
    if m:
        n = min(n, int(fm // m))
    if d:
        n = min(n, int(fd // d))
    if a:
        n = min(n, int(fa // a))
    return n


def break_ties(keyed: list[Keyed]) -> list[Item]:
    """Lanes sorted by price key and position, as sorted by (price key, tie, position), where the tie is a lane's
    numbers (cores, memory, disk, accelerators, market, its first job's wall time, memory and disk, its runs):
    only lanes of equal keys are put in order by them (few in a continuous queue, most in a small plan of
    jobs of one size, so the tie is made inline, not by a key function)."""
    out: list[Item] = []
    start, total = 0, len(keyed)
    while start < total:
        item = keyed[start]
        key = item[0]
        end = start + 1
        while end < total and keyed[end][0] == key:
            end += 1
        if end - start == 1:
            out.append((item[2], item[3], item[4], item[5]))
        else:
            tied = [
                (
                    (lane[0], lane[1], lane[2], lane[3], lane[4], first.wall_time, first.resources.memory,
                     first.resources.disk, len(lane[5])),
                    one[1],  # the position: no two are equal, so the items themselves are never compared
                    one,
                )
                for one in keyed[start:end]
                for lane in [one[2]]
                for first in [lane[5][0][0]]
            ]  # fmt: skip
            tied.sort()
            out.extend([(one[2], one[3], one[4], one[5]) for _, _, one in tied])
        start = end
    return out
