"""Pass 2 of the packing: lanes onto nodes (see ``shared.domain.packing`` for the whole algorithm).

Lanes go largest first; each takes the tightest open node with room, of any type its market allows, found by
bisection on each type's scarcest resource and a bounded look past that point; only when none has room is a
node bought, of the type with the lowest price per job it will actually hold, its tail counted (``tail_factor``).
Identical nodes stay one group.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from operator import itemgetter

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.packing_bundles import Bundle, reserves_its_job
from shared.domain.packing_groups import UNBOUNDED, Item, Keyed, OpenGroup, break_ties, copies_in
from shared.domain.packing_lanes import Family, FamilySpans, LaneType, lane_types
from shared.domain.packing_plan import CORE_TOLERANCE, Run
from shared.domain.packing_tail import tail_factor

_LOOK_PAST = 6  # distinct free vectors examined per type past the bisection point before buying a new node
_LOOK_AT = 96  # and at most this many open nodes
_JOBS = itemgetter(1)  # of a run: (shape, jobs)

# What pass 2 knows of a resource vector: copies per offer, the cheapest offer, shares of it, the price key.
_Fit = tuple[tuple[int, ...], int, tuple[float, float, float, float], float]


class NodePacker:
    def __init__(self, offers: Sequence[Offer], target_time: float) -> None:
        self.offers = list(offers)
        self.target_time = target_time
        self.caps = [(o.usable.cores, o.usable.memory, o.usable.disk, o.usable.accelerators) for o in offers]
        self.spot = [o.spot for o in offers]
        self.price = [o.hourly_price for o in offers]
        # What _offers_for reads of each offer: its index, usable capacity, market and price.
        self._slots = [
            (i, *cap, spot, price)
            for i, (cap, spot, price) in enumerate(zip(self.caps, self.spot, self.price, strict=True))
        ]
        self.scale = [tuple(1.0 / (x or 1) for x in cap) for cap in self.caps]
        # Node capacities a job may use, by whether it is preemptible; largest first, so checks end early.
        by_size = sorted(self.caps, key=lambda cap: (-cap[0], -cap[1], -cap[2], -cap[3]))
        self.caps_of = {
            True: by_size,
            False: [
                cap for cap in by_size if any(c == cap and not s for c, s in zip(self.caps, self.spot, strict=True))
            ],
        }
        self.room = [o.max_nodes - o.min_nodes for o in offers]
        self.entries: dict[int, OpenGroup] = {}
        # Per offer, the open groups with room, sorted by what is free of the offer's scarcest resource.
        self.keys: list[list[float]] = [[] for _ in offers]
        self.members: list[list[OpenGroup]] = [[] for _ in offers]
        self.frees: list[list[list[float]]] = [[] for _ in offers]  # each member's free list, side by side
        self.key_dim = [0] * len(offers)
        self.deferred: dict[Shape, int] = {}
        self.waiting: list[Item] = []  # lanes maxNodes had no room for
        self.left: dict[Family, int] = {}  # lanes of each family not placed yet
        self.opened: dict[tuple[Family, int], list[int]] = {}  # (family, offer) → [nodes, jobs]
        self.filled: dict[Family, int] = {}  # jobs placed into room on nodes already planned
        self.family_shapes: dict[Family, FamilySpans] = {}
        self.bundles: dict[int, Bundle] = {}  # id of a bundled lane type → its members
        self._texts: dict[Family, str] = {}
        self.moved: dict[tuple[int, int], int] = {}  # right-sizing (from, to) → nodes
        self.minimum: tuple[float, float, float, float] = (0.0, 0, 0, 0)
        self._next_id = 0
        for i, offer in enumerate(offers):  # minNodes come first, so the first jobs fill nodes that run anyway
            if offer.min_nodes:
                self._new_group(offer.min_nodes, list(self.caps[i]), i, [])

    def split(self, demand: Iterable[tuple[Shape, int]]) -> tuple[list[tuple[Shape, int]], list[tuple[Shape, int]]]:
        """``demand`` (positive counts only) as (what some offer holds, what none does)."""
        placeable, unfit = [], []
        caps_of = self.caps_of
        for shape, count in demand:
            if count <= 0:
                continue
            r = shape.resources
            c, m, d, a = r.cores - CORE_TOLERANCE, r.memory, r.disk, r.accelerators
            for cc, cm, cd, ca in caps_of[shape.preemptible]:
                if c <= cc and m <= cm and d <= cd and a <= ca:
                    placeable.append((shape, count))
                    break
            else:
                unfit.append((shape, count))
        return placeable, unfit

    def lanes(self, placeable: Sequence[tuple[Shape, int]]) -> list[tuple[LaneType, int, Family]]:
        """Lane types with their multiplicity (pass 1, ``shared.domain.packing_lanes``)."""
        items, self.family_shapes = lane_types(
            placeable,
            target_time=self.target_time,
            caps=self.caps,
            caps_of=self.caps_of,
            cheapest=self._cheapest,
            registry=self.bundles,
        )
        return items

    # -- pass 2: nodes --------------------------------------------------------------------------------

    def pack(self, items: list[tuple[LaneType, int, Family]]) -> None:
        keyed: list[Keyed] = []
        weight = [[0.0] * 4 for _ in self.offers]
        left: dict[Family, int] = {}
        low_c, low_m, low_d, low_a = math.inf, math.inf, math.inf, math.inf
        pending = items
        position = 0
        fit_of: dict[tuple[float, int, int, int, bool], _Fit] = {}
        while position < len(pending):
            lane, count, family = pending[position]
            position += 1
            c, m, d, a, on_demand, runs = lane
            # Lanes of one resource vector (many, when jobs of one size differ in wall time) fit alike.
            fit = fit_of.get((c, m, d, a, on_demand))
            if fit is None:
                fit = fit_of[c, m, d, a, on_demand] = self._fit(c, m, d, a, on_demand)
                if fit[1] >= 0:  # the smallest needs of what is placed (a vector seen again changes nothing)
                    low_c = c if c < low_c else low_c
                    low_m = m if m < low_m else low_m
                    low_d = d if d < low_d else low_d
                    low_a = a if a < low_a else low_a
            copies, best, shares, key = fit
            if best < 0:  # a lane no node holds (lanes are built so this cannot be): one job each then
                if len(runs) > 1 or runs[0][1] > 1:
                    if pending is items:
                        pending = list(items)
                    pending.extend([item[:3] for item in self.one_job_each([(lane, count, family, copies)])])
                else:  # never silently lost: it is reported as waiting
                    self.waiting.append((lane, count, family, copies))
                continue
            row = weight[best]
            row[0] += shares[0] * count
            row[1] += shares[1] * count
            row[2] += shares[2] * count
            row[3] += shares[3] * count
            # The position breaks ties as a stable sort would, so the lanes themselves are never compared.
            keyed.append((key, len(keyed), lane, count, family, copies))
            left[family] = left.get(family, 0) + count
        self.key_dim = [max(range(4), key=lambda dim, w=w: (w[dim], -dim)) for w in weight]  # type: ignore[misc]
        if keyed:
            self.minimum = (low_c, low_m, low_d, low_a)
        for keys, members, frees in zip(self.keys, self.members, self.frees, strict=True):  # keys changed: again
            keys.clear()
            members.clear()
            frees.clear()
        for group in self.entries.values():
            self.reindex(group)
        keyed.sort()
        self.left = left
        self.place(break_ties(keyed))

    def place(self, items: list[Item]) -> None:
        """Place lanes in this order; what maxNodes leaves no room for waits in ``self.waiting``."""
        left = self.left
        for _, count, family, _ in items:  # lanes retried after right-sizing may belong to new families
            left.setdefault(family, count)
        bundles = self.bundles
        for lane, wanted, family, copies in items:
            count = wanted
            runs = lane[5]
            jobs_per_lane = runs[0][1] if len(runs) == 1 else sum(map(_JOBS, runs))
            members = bundles.get(id(lane)) if bundles else None
            placed = self._fill(lane, count, copies)
            if placed:
                jobs = members.take(placed) if members else placed * jobs_per_lane
                self.filled[family] = self.filled.get(family, 0) + jobs
                left[family] -= placed
                count -= placed
            while count:
                opened, offer, nodes = self._open(lane, count, copies, left[family])
                if not opened:
                    self._wait(lane, count, family, copies)
                    break
                record = self.opened.get((family, offer))
                if record is None:
                    record = self.opened[family, offer] = [0, 0]
                record[0] += nodes
                record[1] += members.take(opened) if members else opened * jobs_per_lane
                count -= opened
                left[family] -= opened

    def _wait(self, lane: LaneType, count: int, family: Family, copies: tuple[int, ...]) -> None:
        """``count`` lanes wait for room; a bundle's unplaced members become a bundle of their own."""
        members = self.bundles.get(id(lane))
        if members is not None:
            rest = members.rest()
            lane = (*lane[:5], rest[0][0])
            self.bundles[id(lane)] = Bundle(lane, rest)
        self.waiting.append((lane, count, family, copies))

    def one_job_each(self, items: list[Item]) -> list[Item]:
        """Waiting lanes taken apart: a small job must not wait because it shared a lane with a big one."""
        out = []
        for lane, count, family, copies in items:
            members = self.bundles.get(id(lane))
            if members is not None:
                every = [run for runs, _ in members.members for run in runs]
            elif len(lane[5]) == 1 and lane[5][0][1] == 1 and reserves_its_job(lane):
                out.append((lane, count, family, copies))
                continue
            else:
                every = [(shape, n * count) for shape, n in lane[5]]
            for shape, n in every:
                r = shape.resources
                single: LaneType = (r.cores, r.memory, r.disk, r.accelerators, not shape.preemptible, (Run(shape, 1),))
                fits_on = self._offers_for(r.cores, r.memory, r.disk, r.accelerators, not shape.preemptible)[0]
                out.append((single, n, (not shape.preemptible, r.accelerators, r.cores), fits_on))
        return out

    def _fit(self, c: float, m: int, d: int, a: int, on_demand: bool) -> _Fit:
        """``_offers_for``, and the lane's share of each resource of its cheapest offer and its price key."""
        copies, best = self._offers_for(c, m, d, a, on_demand)
        if best < 0:
            return copies, best, (0.0, 0.0, 0.0, 0.0), 0.0
        cap = self.caps[best]
        shares = (
            c / cap[0],
            m / cap[1] if cap[1] else 0.0,
            d / cap[2] if cap[2] else 0.0,
            a / cap[3] if cap[3] else 0.0,
        )
        return copies, best, shares, -self.price[best] * max(shares)

    def _offers_for(self, c: float, m: int, d: int, a: int, on_demand: bool) -> tuple[tuple[int, ...], int]:
        """How many copies of a lane an empty node of each offer holds (0: it does not fit, or wrong market),
        and the offer with the lowest price per copy (ties to the lower price, then the first; -1: none)."""
        copies: list[int] = []
        best = -1
        best_each = best_price = 0.0
        for i, fc, fm, fd, fa, spot, price in self._slots:
            if (on_demand and spot) or c > fc + CORE_TOLERANCE or m > fm or d > fd or a > fa:
                copies.append(0)
                continue
            n = int(fc / c + 1e-9) if c > 0 else UNBOUNDED
            if m:
                q = fm // m
                if q < n:  # noqa: PLR1730 - once per lane and offer: no min()
                    n = q
            if d:
                q = fd // d
                if q < n:  # noqa: PLR1730
                    n = q
            if a:
                q = fa // a
                if q < n:  # noqa: PLR1730
                    n = q
            copies.append(n)
            if n:
                each = price / n
                if best < 0 or each < best_each or (each == best_each and price < best_price):
                    best, best_each, best_price = i, each, price
        return tuple(copies), best

    def _fill(self, lane: LaneType, count: int, copies: tuple[int, ...]) -> int:
        """Put up to ``count`` lanes into room on open nodes, tightest first; return how many went in."""
        c, m, d, a = lane[0], lane[1], lane[2], lane[3]
        need = (c, m, d, a)
        all_keys, all_frees, key_dim, scale = self.keys, self.frees, self.key_dim, self.scale
        placed = 0
        while count:
            best: OpenGroup | None = None
            best_slack = math.inf
            for offer_index, keys in enumerate(all_keys):
                if not keys or not copies[offer_index]:
                    continue
                dim = key_dim[offer_index]
                wanted = need[dim]
                at = bisect_left(keys, wanted - CORE_TOLERANCE)
                stop = at + _LOOK_AT
                if stop > len(keys):  # noqa: PLR1730 - once per lane and offer: no min()
                    stop = len(keys)
                frees = all_frees[offer_index]
                # Up to _LOOK_PAST distinct free vectors past the bisection point: nodes with the same room
                # left (many, once a kind of job fills them alike) fail alike, so they count once.
                budget = _LOOK_PAST
                failed: list[float] | None = None
                while at < stop:
                    free = frees[at]
                    if c <= free[0] + CORE_TOLERANCE and m <= free[1] and d <= free[2] and a <= free[3]:
                        slack = (keys[at] - wanted) * scale[offer_index][dim]
                        if slack < best_slack:
                            best, best_slack = self.members[offer_index][at], slack
                        break
                    if free != failed:
                        budget -= 1
                        if not budget:
                            break
                        failed = free
                    at += 1
            if best is None:
                return placed
            put = self._put(best, lane, count)
            placed += put
            count -= put
        return placed

    def _put(self, group: OpenGroup, lane: LaneType, count: int) -> int:
        """Add up to ``count`` lanes to a group's nodes (splitting the group); return how many were added."""
        free = group.free
        # One lane: _fill found that it fits (the copies it would count are at least one).
        per_node = 1 if count == 1 else min(count, copies_in(*lane[:4], *free))
        if count >= per_node * group.count:
            self.unindex(group)
            group.add(lane, per_node)
            self.reindex(group)
            return per_node * group.count
        full, rest = divmod(count, per_node)
        for size, copies in ((full, per_node), (1 if rest else 0, rest)):
            if not size:
                continue
            self.unindex(group)
            group.count -= size
            twin = self._new_group(size, list(free), group.offer, list(group.lanes), index=False)
            twin.on_demand_only = group.on_demand_only
            twin.add(lane, copies)
            self.reindex(twin)
            if group.count:
                self.reindex(group)
            else:
                del self.entries[group.id]
        return count

    def _open(self, lane: LaneType, count: int, copies_of: tuple[int, ...], family_left: int) -> tuple[int, int, int]:
        """Buy nodes for up to ``count`` lanes; return how many lanes they took (0: maxNodes everywhere), the
        offer and how many nodes."""
        best = -1
        best_each = best_price = 0.0
        price, room, offers = self.price, self.room, self.offers
        wanted = family_left if family_left > count else count
        for i, copies in enumerate(copies_of):
            if not copies or room[i] <= 0:
                continue
            # A node's price over the jobs it will really hold (its copies, or what is left of this kind), and its tail.
            held = copies if copies < wanted else wanted
            each = price[i] / held * tail_factor(held)
            if (
                best < 0
                or each < best_each
                or (each == best_each and (price[i], offers[i].key) < (best_price, offers[best].key))
            ):
                best, best_each, best_price = i, each, price[i]
        if best < 0:
            return 0, -1, 0
        i, copies = best, copies_of[best]
        nodes = min(count // copies, self.room[i])
        taken = nodes * copies if nodes else count
        nodes = nodes or 1
        self.room[i] -= nodes
        group = OpenGroup(nodes, list(self.caps[i]), i, [], self._next_id)
        self._next_id += 1
        self.entries[group.id] = group
        group.add(lane, taken // nodes)
        self.reindex(group)
        return taken, i, nodes

    def _cheapest(self, c: float, m: int, d: int, a: int, *, on_demand: bool) -> int | None:
        """The offer with the lowest price per copy of this lane on an otherwise empty node."""
        best = self._offers_for(c, m, d, a, on_demand)[1]
        return None if best < 0 else best

    def _new_group(
        self, count: int, free: list[float], offer: int, lanes: list[tuple[LaneType, int]], *, index: bool = True
    ) -> OpenGroup:
        group = OpenGroup(count, free, offer, lanes, self._next_id)
        self._next_id += 1
        self.entries[group.id] = group
        if index:
            self.reindex(group)
        return group

    def reindex(self, group: OpenGroup) -> None:
        free, low = group.free, self.minimum
        if free[0] < low[0] - CORE_TOLERANCE or free[1] < low[1] or free[2] < low[2] or free[3] < low[3]:
            return  # nothing left to place fits in what is free: leave it out of the search
        key = free[self.key_dim[group.offer]]
        keys = self.keys[group.offer]
        at = bisect_right(keys, key)
        keys.insert(at, key)
        self.members[group.offer].insert(at, group)
        self.frees[group.offer].insert(at, free)

    def unindex(self, group: OpenGroup) -> None:
        keys, members = self.keys[group.offer], self.members[group.offer]
        key = group.free[self.key_dim[group.offer]]
        # Thousands of full nodes can share one key: list.index scans their run in C (no __eq__: identity).
        try:
            at = members.index(group, bisect_left(keys, key), bisect_right(keys, key))
        except ValueError:  # not indexed: nothing left to place fitted in what it had free
            return
        del keys[at]
        del members[at]
        del self.frees[group.offer][at]
