"""Open nodes while pass 2 of the packing runs (``shared.domain.packing_nodes``): identical nodes as one group."""

from __future__ import annotations

import math

from shared.domain.packing_lanes import LaneType
from shared.domain.packing_plan import CORE_TOLERANCE

UNBOUNDED = 1 << 30  # copies of a lane that needs none of a resource


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
