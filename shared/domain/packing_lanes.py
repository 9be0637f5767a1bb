"""Pass 1 of the packing: jobs into lanes (see ``shared.domain.packing`` for the whole algorithm).

A lane reserves a resource vector and runs its jobs back to back, each starting by the target time. Many
jobs of one shape fill whole lanes of that shape; the rest are ordered so that neighbours are alike and
mixed in windows, each job joining the open lane whose reservation grows least.

``_time_lanes`` is the innermost loop of a 100,000-shape plan: one function, so its locals stay locals
(``_time_pack`` turns its lanes into lane types).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from shared.domain.jobs import Shape
from shared.domain.packing_bundles import ROUND_FROM, Bundle, Member, Runs, bundle, bundled_lanes, lane_end, rounder
from shared.domain.packing_plan import CORE_TOLERANCE, MIN_WALL_TIME, Run

_EXACT_DEPTH = 16  # lane depths up to this are exact; deeper ones keep four significant bits
_WINDOW = 128  # jobs mixed into lanes together: alike in size, any wall time
_LANE_CHOICES = 8  # open lanes of a window a job may join

# Plain tuples inside (the hot path: 100,000 distinct shapes); frozen dataclasses at the boundary.
# A lane type: (cores, memory, disk, accelerators, on_demand_only, runs), where runs is a tuple of
# (shape, jobs) run back to back: ``Run``s, made here once, so the plan's lanes take the tuple as it is.
LaneType = tuple[float, int, int, int, bool, tuple[tuple[Shape, int], ...]]
Family = tuple[bool, int, float]  # on-demand only, accelerators, cores: the kind of job a reason names
Capacity = tuple[float, int, int, int]  # cores, memory, disk, accelerators
Cheapest = Callable[..., "int | None"]  # (cores, memory, disk, accelerators, on_demand=) → offer index
_Row = tuple[float, int, int, float, Shape]  # a job in a window: cores, memory, disk, wall time, shape
# (cores, memory, disk) → its job as a row, or its jobs
_Alike = dict[tuple[float, int, int], "_Row | list[Shape]"]


class FamilySpans(NamedTuple):
    """What the reasons say of a family's shapes: the first, how many, and the span of each need."""

    first: Shape
    shapes: int
    memory: tuple[int, int]
    disk: tuple[int, int]
    walls: tuple[float, float]


def lane_depth(wall_time: float, target_time: float) -> int:
    """How many jobs of ``wall_time`` one lane holds: back to back, each starting by the target time.

    Exact up to 16 further starts; beyond that rounded down to four significant bits, so very short
    jobs of nearby lengths share lanes (at most 6 % fewer starts than the exact count).
    """
    wall = max(wall_time, MIN_WALL_TIME)
    if wall > target_time:
        return 1
    further = math.floor(target_time / wall + 1e-9)
    if further > _EXACT_DEPTH:
        shift = further.bit_length() - 4
        further = (further >> shift) << shift
    return further + 1


def lane_types(
    placeable: Sequence[tuple[Shape, int]],
    *,
    target_time: float,
    caps: Sequence[Capacity],
    caps_of: dict[bool, list[Capacity]],
    cheapest: Cheapest,
    registry: dict[int, Bundle],
) -> tuple[list[tuple[LaneType, int, Family]], dict[Family, FamilySpans]]:
    """Lane types with their multiplicity, and the spans of each family's shapes (for the reasons); the bundles
    among them go into ``registry`` (by the id of their lane type)."""
    markets, spans = _gather(placeable, target_time)
    families = {
        family: FamilySpans(first=span[0], shapes=span[1], memory=(span[2], span[3]), disk=(span[4], span[5]),
                            walls=(span[6], span[7]))
        for family, span in spans.items()
    }  # fmt: skip
    items: list[tuple[LaneType, int, Family]] = []
    for (on_demand, acc), (full, alike) in sorted(markets.items(), key=_MARKET):
        items.extend([(lane, n, (on_demand, acc, lane[0])) for lane, n in full])
        _cut(items, on_demand, acc, alike, target=target_time, caps=caps, caps_of=caps_of, cheapest=cheapest,
             registry=registry)  # fmt: skip
    return items, families


_Market = tuple[list[tuple[LaneType, int]], _Alike]  # full lanes of one shape; the rest by (cores, memory, disk)


def _gather(
    placeable: Sequence[tuple[Shape, int]], target_time: float
) -> tuple[dict[tuple[bool, int], _Market], dict[Family, list[Any]]]:
    """The jobs by market (on-demand only, accelerators), and the spans of each family's shapes."""
    # One pass over the shapes (100,000 in a continuous queue). A lone job of its (cores, memory, disk) is kept
    # as its row, not a list of one. A family's spans are updated in place: [first shape, shapes, memory low,
    # high, disk low, high, wall low, high] (its shapes read back for their spans cost five times as much).
    markets: dict[tuple[bool, int], _Market] = {}
    by_family: dict[Family, tuple[list[Any], list[tuple[LaneType, int]], _Alike]] = {}
    depth_of: dict[float, int] = {}
    for shape, count in placeable:
        r = shape.resources
        on_demand, acc, c = not shape.preemptible, r.accelerators, r.cores
        m, d, wall = r.memory, r.disk, shape.wall_time
        entry = by_family.get((on_demand, acc, c))
        if entry is None:
            market = markets.get((on_demand, acc))
            if market is None:
                market = markets[on_demand, acc] = ([], {})
            entry = by_family[on_demand, acc, c] = ([shape, 0, m, m, d, d, wall, wall], *market)
        span = entry[0]
        span[1] += 1
        if m < span[2]:
            span[2] = m
        elif m > span[3]:
            span[3] = m
        if d < span[4]:
            span[4] = d
        elif d > span[5]:
            span[5] = d
        if wall < span[6]:
            span[6] = wall
        elif wall > span[7]:
            span[7] = wall
        if count == 1:  # one job: it is mixed (whatever its lane depth)
            keep = 1
        else:
            depth = depth_of.get(wall)
            if depth is None:
                depth = depth_of[wall] = lane_depth(wall, target_time)
            # Full lanes of one shape; the rest (and a few jobs longer than the target, which may end a
            # lane of shorter ones) are mixed in _cut.
            keep = count % depth if depth > 1 else min(count, _WINDOW)
            if count > keep:
                entry[1].append(((c, m, d, acc, on_demand, (_run(Run, (shape, depth)),)), (count - keep) // depth))
        if keep:
            key = (c, m, d)
            alike = entry[2]
            same = alike.get(key)
            if same is None:  # a lone job is kept as its row for the windows (see _cut), not a list of one
                alike[key] = (c, m, d, wall, shape) if keep == 1 else [shape] * keep
            elif type(same) is list:
                same.extend([shape] * keep)
            else:
                alike[key] = [same[4], *([shape] * keep)]
    return markets, {family: entry[0] for family, entry in by_family.items()}


def _cut(
    out: list[tuple[LaneType, int, Family]],
    on_demand: bool,
    acc: int,
    alike: _Alike,
    *,
    target: float,
    caps: Sequence[Capacity],
    caps_of: dict[bool, list[Capacity]],
    cheapest: Cheapest,
    registry: dict[int, Bundle],
) -> None:
    """Lanes for the rest of the jobs of one market (``alike``: by cores, memory, disk), added to ``out``: jobs
    that differ only in wall time by best fit on time, then windows of alike jobs mixed; bundled when the
    market has ``ROUND_FROM`` such resource vectors or more (``shared.domain.packing_bundles``)."""
    # Only keys with several jobs need an order here: the rest are sorted below by keys that tell every
    # (cores, memory, disk) apart, so the order they are gathered in cannot matter.
    rest: list[tuple[float, int, int, float, Shape]] = []  # (cores, memory, disk, wall, shape)
    several: list[tuple[float, int, int]] = []
    for key, same in alike.items():
        if type(same) is list:
            several.append(key)
        else:
            rest.append(same)  # type: ignore[arg-type]  # a row
    several.sort()
    nodes = [node for node in caps_of[not on_demand] if node[3] >= acc]  # largest first
    bundles: dict[tuple[float, int, int], list[Member]] | None = None
    steps: list[tuple[float, int, int, int, int]] | None = None
    if len(rest) + len(several) >= ROUND_FROM:
        bundles, steps = {}, rounder(nodes)
    for key in several:
        several_jobs = alike[key]
        assert isinstance(several_jobs, list)
        _time_fill(out, several_jobs, key, target, acc, on_demand=on_demand, bundles=bundles, steps=steps)
    if rest:
        # Neighbours in this order are alike: by cores, then coarse cells of the less scarce of memory and
        # disk (on the cheapest node type for an average job), then the scarcer one.
        jobs = len(rest)
        # One pass over the rows for the whole numbers (three cost twice as much: each row is a fetch from
        # memory); the cores, floats, are summed by sum() as before, so the mean is the same to the last bit.
        total_memory = total_disk = 0
        for _, m, d, _, _ in rest:
            total_memory += m
            total_disk += d
        mean_memory, mean_disk = total_memory / jobs, total_disk / jobs
        mean_cores = sum(map(_CORES, rest)) / jobs
        best = cheapest(mean_cores, math.ceil(mean_memory), math.ceil(mean_disk), acc, on_demand=on_demand)
        cap = caps[best] if best is not None else (1.0, 1, 1, 1)
        by_memory = (mean_memory / cap[1] if cap[1] else 0.0) >= (mean_disk / cap[2] if cap[2] else 0.0)
        cells = max(1, min(64, math.isqrt(jobs // _WINDOW)))
        scale = cells / ((cap[2] if by_memory else cap[1]) or 1)
        rows = _neighbours(rest, cells, scale, by_memory=by_memory)
        for begin in range(0, jobs, _WINDOW):
            window = rows[begin : begin + _WINDOW]
            _time_pack(out, window, target, acc, cap, nodes, on_demand=on_demand, bundles=bundles, steps=steps)
    if bundles is not None:
        bundled_lanes(out, bundles, registry, acc, on_demand=on_demand)


def _neighbours(
    rest: list[tuple[float, int, int, float, Shape]], cells: int, scale: float, *, by_memory: bool
) -> list[tuple[float, int, int, float, Shape]]:
    """``rest`` largest first by (cores, cell of the less scarce resource, the scarcer, the less scarce).

    No two rows share (cores, memory, disk), so this order has no ties. Rows are gathered by (cores, cell),
    a few hundred buckets, and each bucket sorted by plain numbers: twice as fast as one key per row.
    """
    top = cells - 1
    buckets: dict[tuple[float, int], list[tuple[float, int, int, float, Shape]]] = {}
    less = 2 if by_memory else 1  # the less scarce resource: its cell orders the rows first
    for row in rest:
        cell = int(row[less] * scale)  # type: ignore[operator]  # row[1] or row[2]: a size
        key = (row[0], cell if cell < top else top)
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = [row]
        else:
            bucket.append(row)
    # By the scarcer resource, then the less scarce: two stable sorts on one plain integer each, a third
    # faster than one sort on a tuple of both (reverse=True keeps equal rows in their order, so the first
    # sort decides among rows equal in the second).
    first, then = (_DISK, _MEMORY) if by_memory else (_MEMORY, _DISK)
    rows: list[tuple[float, int, int, float, Shape]] = []
    for key in sorted(buckets, reverse=True):
        bucket = buckets[key]
        bucket.sort(key=first, reverse=True)
        bucket.sort(key=then, reverse=True)
        rows.extend(bucket)
    return rows


def _time_fill(
    out: list[tuple[LaneType, int, Family]],
    jobs: list[Shape],
    need: tuple[float, int, int],
    target: float,
    acc: int,
    *,
    on_demand: bool,
    bundles: dict[tuple[float, int, int], list[Member]] | None,
    steps: list[tuple[float, int, int, int, int]] | None,
) -> None:
    """Lanes for jobs of one resource vector: longest first, each into the lane with the least time left
    that still holds it (best fit decreasing); a lane's first job is its longest, which runs last. Added to
    ``out``, or to ``bundles`` as ``_time_pack`` does."""
    jobs.sort(key=_WALL_TIME, reverse=True)
    room: list[float] = []  # time left for further jobs in each open lane, ascending
    lane_of: list[int] = []  # the lane each entry of ``room`` belongs to
    members: list[list[Shape]] = []
    for shape in jobs:
        wall = shape.wall_time
        if wall < MIN_WALL_TIME:  # noqa: PLR1730 - once per job: no max()
            wall = MIN_WALL_TIME
        at = bisect_left(room, wall)
        if at < len(room):
            lane = lane_of.pop(at)
            left = room.pop(at) - wall
            members[lane].append(shape)
        else:  # a new lane: this job runs last, so the others have the whole target time before it
            lane = len(members)
            left = target + 1e-9
            members.append([shape])
        at = bisect_left(room, left)
        room.insert(at, left)
        lane_of.insert(at, lane)
    c, m, d = need
    family = (on_demand, acc, c)
    first = len(out)  # lanes alike (many jobs longer than the target, each its own lane) are one item
    for lane_jobs in members:
        runs: list[tuple[Shape, int]] = []
        last, jobs_of_last = lane_jobs[-1], 0
        for shape in reversed(lane_jobs):  # shortest first, the longest last; one Run per run of one shape
            if shape is last:
                jobs_of_last += 1
            else:
                runs.append(_run(Run, (last, jobs_of_last)))
                last, jobs_of_last = shape, 1
        runs.append(_run(Run, (last, jobs_of_last)))
        made = tuple(runs)
        if bundles is None:
            if len(out) > first and out[-1][0][5] == made:
                out[-1] = (out[-1][0], out[-1][1] + 1, family)
            else:
                out.append(((c, m, d, acc, on_demand, made), 1, family))
        else:
            bundle(bundles, steps, c, m, d, (made, lane_end(made)))  # type: ignore[arg-type]  # steps come with bundles


def _time_pack(  # noqa: PLR0917
    out: list[tuple[LaneType, int, Family]],
    window: list[_Row],
    target: float,
    acc: int,
    cap: tuple[float, int, int, int],
    nodes: Sequence[tuple[float, int, int, int]],
    *,
    on_demand: bool,
    bundles: dict[tuple[float, int, int], list[Member]] | None,
    steps: list[tuple[float, int, int, int, int]] | None,
) -> None:
    """Lanes for a window of alike jobs, largest first, each joining the lane its reservation grows least.

    A lane can take a job while all its jobs but the longest fit within the target time back to back:
    the longest runs last, so every job starts by the target (the last one may run past it). A lane
    grows only while some node type of its market (``nodes``) can still hold it. ``window`` holds
    (cores, memory, disk, wall time, shape) rows, one per shape (``_cut`` gives each (cores, memory, disk) of
    one job a row), so each lane lists its jobs shortest first, one ``Run`` each. The lanes are added to
    ``out``, or to ``bundles`` by their rounded reservation (``shared.domain.packing_bundles``).
    """
    for c, m, d, end, _, jobs in _time_lanes(window, target, cap, nodes):
        if len(jobs) == 1:
            runs: Runs = (_run(Run, (jobs[0][4], 1)),)
        elif len(jobs) == 2:
            one, two = jobs
            if one[3] > two[3]:
                one, two = two, one
            runs = (_run(Run, (one[4], 1)), _run(Run, (two[4], 1)))
        else:
            jobs.sort(key=_WALL)
            runs = tuple([_run(Run, (row[4], 1)) for row in jobs])
        if bundles is None:
            out.append(((c, m, d, acc, on_demand, runs), 1, (on_demand, acc, c)))
        else:
            bundle(bundles, steps, c, m, d, (runs, end))  # type: ignore[arg-type]  # steps come with bundles


def _time_lanes(
    window: list[_Row], target: float, cap: tuple[float, int, int, int], nodes: Sequence[tuple[float, int, int, int]]
) -> list[list[Any]]:
    """``_time_pack``'s lanes, each [reserved cores, memory, disk, total wall, longest wall, its jobs] (one list
    per lane, unpacked at once; one function, so its locals stay locals)."""
    unit_c, unit_m, unit_d = 1.0 / (cap[0] or 1), 1.0 / (cap[1] or 1), 1.0 / (cap[2] or 1)
    lanes: list[list[Any]] = []
    limit = target + 1e-9
    for row in window:
        c, m, d, wall, _ = row
        if wall < MIN_WALL_TIME:  # noqa: PLR1730 - the innermost loop: no max()
            wall = MIN_WALL_TIME
        best: list[Any] | None = None
        best_growth = c * unit_c + m * unit_m + d * unit_d  # what a lane of its own costs
        for lane in lanes[-_LANE_CHOICES:]:
            lane_c, lane_m, lane_d, total, longest, _ = lane
            # Everything but the longest job must fit before the target time.
            if total + wall - (longest if longest > wall else wall) > limit:
                continue
            if c <= lane_c and m <= lane_m and d <= lane_d:  # it grows nothing: no lane can do better
                best = lane
                break
            growth = 0.0
            if c > lane_c:
                growth += (c - lane_c) * unit_c
            if m > lane_m:
                growth += (m - lane_m) * unit_m
            if d > lane_d:
                growth += (d - lane_d) * unit_d
            if growth < best_growth:
                # Only while some node type still holds the grown lane.
                top_c = c if c > lane_c else lane_c
                top_m = m if m > lane_m else lane_m
                top_d = d if d > lane_d else lane_d
                for fc, fm, fd, _ in nodes:  # largest first
                    if top_c <= fc + CORE_TOLERANCE and top_m <= fm and top_d <= fd:
                        best, best_growth = lane, growth
                        break
        if best is None:
            lanes.append([c, m, d, wall, wall, [row]])
            continue
        if c > best[0]:  # noqa: PLR1730 - conditionals, not max(): the innermost loop of a 100,000-shape plan
            best[0] = c
        if m > best[1]:  # noqa: PLR1730
            best[1] = m
        if d > best[2]:  # noqa: PLR1730
            best[2] = d
        best[3] += wall
        if wall > best[4]:  # noqa: PLR1730
            best[4] = wall
        best[5].append(row)
    return lanes


_WALL = itemgetter(3)
_run = tuple.__new__  # _run(Run, (shape, jobs)): a Run without a Python-level __new__ call
_CORES = itemgetter(0)
_MEMORY = itemgetter(1)
_DISK = itemgetter(2)
_MARKET = itemgetter(0)
_WALL_TIME = attrgetter("wall_time")
