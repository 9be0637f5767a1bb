"""What a plan is: node groups, their lanes and runs of jobs, what could not be placed and why.

The types ``shared.domain.packing.plan`` returns (and the constants of the lane model they share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import Resources

MIN_WALL_TIME = 1e-3  # seconds; a job that claims to take no time still occupies its lane
CORE_TOLERANCE = 1e-9  # so 0.1 + 0.2 cores counts as 0.3


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
        # Summed by offer first: a plan has hundreds of groups and a handful of offers (the scaler asks often).
        nodes: dict[int, list[Any]] = {}  # id(offer) → [offer, nodes]
        for group in self.groups:
            seen = nodes.get(id(group.offer))
            if seen is None:
                nodes[id(group.offer)] = [group.offer, group.count]
            else:
                seen[1] += group.count
        for offer, count in nodes.values():
            counts[offer.key] = counts.get(offer.key, 0) + count
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
