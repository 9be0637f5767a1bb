"""Why a job cannot be placed, in one line, and the same reasons summed up over thousands of shapes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import attrgetter

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.packing_plan import CORE_TOLERANCE, UnplacedShape
from shared.domain.resources import RESOURCE_NAMES
from shared.domain.units import format_duration, format_size


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
        if wanted > has + (CORE_TOLERANCE if resource == "cores" else 0):
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
        lines.append(f"{jobs} jobs in {len(members)} shapes ({shape_ranges(u.shape for u in members)}): {cause}")
    return lines


def _cause(reason: str) -> str:
    """The reason without the job's own amount: ``needs 301 GiB memory; ...`` → ``needs more memory ...``."""
    if reason.startswith("needs ") and ";" in reason:
        head, tail = reason.split(";", 1)
        resource = head.rsplit(" ", 1)[-1]
        return f"needs more {resource} than{tail}"
    return reason


def shape_ranges(
    shapes: Iterator[Shape] | Sequence[Shape], *, cores: float | None = None, preemptible: bool | None = None
) -> str:
    """The spans of the shapes' needs; ``cores`` and ``preemptible``, when given, are what every shape has."""
    shapes = list(shapes)
    # map with attrgetter, not comprehensions: a family can hold 100,000 shapes
    resources = list(map(attrgetter("resources"), shapes))
    all_cores = [cores] if cores is not None else list(map(attrgetter("cores"), resources))
    memory = list(map(attrgetter("memory"), resources))
    disk = list(map(attrgetter("disk"), resources))
    walls = list(map(attrgetter("wall_time"), shapes))
    markets = {preemptible} if preemptible is not None else set(map(attrgetter("preemptible"), shapes))
    return span_text(
        (min(all_cores), max(all_cores)),
        (min(memory), max(memory)),
        (min(disk), max(disk)),
        (min(walls), max(walls)),
        markets,
    )


def span_text(
    cores: tuple[float, float],
    memory: tuple[int, int],
    disk: tuple[int, int],
    walls: tuple[float, float],
    markets: set[bool],
) -> str:
    """``shape_ranges`` from the lowest and highest of each need and the set of markets (preemptible or not)."""
    parts = [
        _span(cores, lambda v: f"{v:g}", "cores"),
        _span(memory, format_size, "memory"),
        _span(disk, format_size, "disk"),
        _span(walls, format_duration, ""),
    ]
    parts.append("preemptible" if markets == {True} else "on-demand only" if markets == {False} else "either market")
    return ", ".join(p for p in parts if p)


def _span(values: tuple[float, float], show: object, noun: str) -> str:
    assert callable(show)
    low, high = values
    text = show(low) if low == high else f"{show(low)}–{show(high)}"
    return f"{text} {noun}".rstrip()


def _amount(resource: str, value: float) -> str:
    if resource in ("memory", "disk"):
        return f"{format_size(value)} {resource}"
    noun = resource if value != 1 else resource.removesuffix("s")
    return f"{value:g} {noun}"
