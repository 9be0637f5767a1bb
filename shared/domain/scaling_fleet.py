"""What a scaling decision looks at and aims for: the fleet grouped by offer, the target per offer, and the
capacity-failure cache as launch options (``shared.domain.scaling`` computes them; ``scaling_changes`` acts)."""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from shared.domain.budget import node_volume_price
from shared.domain.catalog import UnknownInstanceTypeError, UnknownRegionError, instance_type
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import (
    Instance,
    LaunchOption,
    Unavailable,
)
from shared.domain.node_types import Offer
from shared.domain.packing import Plan
from shared.domain.policy import ScalerState

ANY_ZONE = "*"  # a capacity failure recorded without a zone (the launch template chose it) blocks every zone
_LIVE = (NodeState.PENDING, NodeState.ACTIVE)


class Fleet:
    """The merged nodes, grouped the way the decision looks at them."""

    def __init__(self, nodes: Sequence[NodeRecord], instances: Sequence[Instance]) -> None:
        self.live: dict[str, list[NodeRecord]] = {}
        self.draining: dict[str, list[NodeRecord]] = {}
        self.pool: list[NodeRecord] = []  # stopped (warm) nodes
        for node in nodes:
            if node.state in _LIVE:
                self.live.setdefault(node.offer_key, []).append(node)
            elif node.state is NodeState.DRAINING:
                self.draining.setdefault(node.offer_key, []).append(node)
            elif node.state is NodeState.STOPPED:
                self.pool.append(node)
        self.live_counts = {key: len(group) for key, group in self.live.items()}
        self.ec2_state = {i.instance_id: i.state for i in instances}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    offers: Mapping[str, Offer]
    options: Mapping[str, tuple[LaunchOption, ...]]
    unavailable_offers: tuple[str, ...]
    plan: Plan
    estimates: dict[str, int]
    wanted: dict[str, int]
    state: ScalerState
    smoothed_at: float | None
    reasons: list[str]


def launch_options(
    offer: Offer, unavailable: Collection[Unavailable], zones: Sequence[str] = ()
) -> tuple[LaunchOption, ...]:
    """Where ``offer`` may be launched now, in the order to try: cheapest type first, then the zones in order."""
    return Blocked(unavailable, tuple(zones)).options(offer)


class Blocked:
    """The capacity-failure cache as (type, market) → zones, with ``ANY_ZONE`` meaning all of them."""

    def __init__(self, unavailable: Collection[Unavailable], zones: tuple[str, ...]) -> None:
        self.zones: tuple[str | None, ...] = zones or (None,)
        self._zones_of: dict[tuple[str, Market], set[str]] = {}
        for item in unavailable:
            self._zones_of.setdefault((item.instance_type, Market(item.market)), set()).add(item.zone)

    def blocks(self, instance_type: str, zone: str | None, market: Market) -> bool:
        zones = self._zones_of.get((instance_type, market))
        if not zones:
            return False
        return zone is None or ANY_ZONE in zones or zone in zones

    def options(self, offer: Offer) -> tuple[LaunchOption, ...]:
        market = Market.SPOT if offer.spot else Market.ON_DEMAND
        return tuple(
            LaunchOption(instance_type=name, zone=zone)
            for name in offer.instance_types
            for zone in self.zones
            if not self.blocks(name, zone, market)
        )


def node_hourly_price(node: NodeRecord, offer: Offer | None, region: str) -> float:
    """What ``node`` costs an hour running: its offer's price for spot, its instance type's on-demand price
    otherwise, with its root volume (``budget.node_volume_price``)."""
    volume = node_volume_price(node, offer, region)
    if offer is not None and (offer.spot or node.instance_type not in offer.instance_types):
        # The offer's price holds the volume it launches with; a node launched with another pays for that one.
        return offer.hourly_price - offer.volume_price + volume
    try:
        return instance_type(node.instance_type).price(region) + volume
    except (UnknownInstanceTypeError, UnknownRegionError):
        return offer.hourly_price if offer is not None else 0.0
