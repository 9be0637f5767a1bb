"""Toil's ``--nodeTypes`` syntax, and the offers the scaler chooses from.

``c5.4xlarge/c5a.4xlarge:0.42,t3.large`` is two node types: a spot class of two interchangeable
instance types bid at $0.42/h, and on-demand t3.large. Toil keeps one member of a ``/`` class and
silently drops the rest; Shoal keeps them all: the class is planned with the capacity every member
has (so any member can be launched) and the launcher falls back across members on capacity errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.domain.catalog import (
    DEFAULT_NODE_STORAGE,
    InstanceType,
    UnknownInstanceTypeError,
    instance_type,
    root_volume_price,
)
from shared.domain.resources import Resources

UNLIMITED = 1 << 31


class NodeTypeSpecError(ValueError):
    """A ``--nodeTypes`` value (or its min/max lists) that cannot be used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTypeClass:
    """One comma-separated entry of ``--nodeTypes``."""

    instance_types: tuple[str, ...]
    bid: float | None = None  # USD/h; set means spot

    @property
    def spot(self) -> bool:
        return self.bid is not None

    @property
    def name(self) -> str:
        return "/".join(self.instance_types)

    def __str__(self) -> str:
        return self.name + (f":{self.bid:g}" if self.bid is not None else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """A node type the scaler may buy: what one node gives jobs, what it costs, how many are allowed."""

    name: str  # "c5.4xlarge" or an equivalence class "c5.4xlarge/c5a.4xlarge"
    instance_types: tuple[str, ...]  # cheapest first: the order the launcher tries them
    spot: bool
    usable: Resources
    hourly_price: float  # a node's: its instance's price plus its root volume's (``volume_price``)
    bid: float | None = None  # USD/h for the instance alone, as Toil's bid is
    volume_price: float = 0.0  # USD/h of one node's root volume, in ``hourly_price``
    min_nodes: int = 0
    max_nodes: int = UNLIMITED
    node_storage: int = DEFAULT_NODE_STORAGE  # bytes of root volume a node is launched with (``usable.disk``'s)

    @property
    def key(self) -> str:
        """Unique among offers: the same type may be offered both on spot and on demand."""
        return f"{self.name}:spot" if self.spot else self.name


def parse_node_types(spec: str) -> list[NodeTypeClass]:
    """Parse Toil's ``--nodeTypes`` string; every instance type must be in the catalog."""
    if not spec or not spec.strip():
        raise NodeTypeSpecError("--nodeTypes is empty; give at least one instance type, e.g. c5.4xlarge")
    classes: list[NodeTypeClass] = []
    seen: set[tuple[str, bool]] = set()
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            raise NodeTypeSpecError(f"--nodeTypes {spec!r} has an empty entry; remove the extra comma")
        names_part, _, bid_part = entry.partition(":")
        bid: float | None = None
        if _:
            try:
                bid = float(bid_part)
            except ValueError:
                bid = math.nan
            if not math.isfinite(bid) or bid <= 0:
                raise NodeTypeSpecError(
                    f"bid {bid_part!r} in {entry!r} is not a positive price; write e.g. {names_part}:0.42"
                )
        names = tuple(n.strip() for n in names_part.split("/"))
        if any(not n for n in names):
            raise NodeTypeSpecError(f"{entry!r} has an empty instance type; write e.g. c5.4xlarge/c5a.4xlarge")
        if len(set(names)) != len(names):
            raise NodeTypeSpecError(f"{entry!r} names the same instance type twice")
        for name in names:
            try:
                instance_type(name)
            except UnknownInstanceTypeError as error:
                raise NodeTypeSpecError(f"--nodeTypes: {error}") from None
        key = (names[0], bid is not None)
        for name in names:
            if (name, bid is not None) in seen:
                market = "spot" if bid is not None else "on-demand"
                raise NodeTypeSpecError(f"{name} is listed twice as {market} in --nodeTypes {spec!r}")
        seen.update((name, key[1]) for name in names)
        classes.append(NodeTypeClass(instance_types=names, bid=bid))
    return classes


def build_offers(
    classes: Sequence[NodeTypeClass],
    *,
    region: str,
    node_storage: int = DEFAULT_NODE_STORAGE,
    min_nodes: Sequence[int] = (),
    max_nodes: Sequence[int] = (),
    spot_prices: Mapping[str, float] | None = None,
) -> list[Offer]:
    """Offers for the scaler, one per node type class, priced in ``region``.

    ``min_nodes``/``max_nodes`` follow Toil: one number per node type, in order (missing: 0 and
    unlimited). A spot class costs its live price where ``spot_prices`` has one, else its bid, which
    is the most it can cost. A live price above the bid means the class cannot be had now. Every node
    also pays for its root volume of ``node_storage``.
    """
    if len(min_nodes) > len(classes) or len(max_nodes) > len(classes):
        raise NodeTypeSpecError(
            f"--minNodes/--maxNodes have more entries ({len(min_nodes)}/{len(max_nodes)}) than --nodeTypes "
            f"({len(classes)}); give one number per node type"
        )
    offers = []
    for index, node_class in enumerate(classes):
        members = [instance_type(name) for name in node_class.instance_types]
        low = min_nodes[index] if index < len(min_nodes) else 0
        high = max_nodes[index] if index < len(max_nodes) else UNLIMITED
        if low < 0 or high < 0 or low > high:
            shown = "unlimited" if high == UNLIMITED else str(high)
            raise NodeTypeSpecError(
                f"minNodes {low} / maxNodes {shown} for {node_class} are not a valid range; need 0 <= min <= max"
            )
        if node_class.bid is None:
            by_price = sorted(members, key=lambda m: (m.price(region), m.name))
            price = by_price[0].price(region)
        else:
            live = [spot_prices[m.name] for m in members if spot_prices and m.name in spot_prices]
            by_price = sorted(members, key=lambda m: ((spot_prices or {}).get(m.name, node_class.bid), m.name))
            price = min(live) if live else node_class.bid
            if live and price > node_class.bid:
                continue  # outbid right now: nothing of this class can be had
        volume = root_volume_price(node_storage, region)
        offers.append(
            Offer(
                name=node_class.name,
                instance_types=tuple(m.name for m in by_price),
                spot=node_class.spot,
                usable=usable_by_all(members, node_storage),
                hourly_price=price + volume,
                bid=node_class.bid,
                volume_price=volume,
                min_nodes=low,
                max_nodes=high,
                node_storage=node_storage,
            )
        )
    return offers


def usable_by_all(members: Sequence[InstanceType], node_storage: int) -> Resources:
    """What every member of a class gives jobs: the class is planned so that any member can be launched."""
    usables = [m.usable(node_storage) for m in members]
    return Resources(
        cores=min(u.cores for u in usables),
        memory=min(u.memory for u in usables),
        disk=min(u.disk for u in usables),
        accelerators=min(u.accelerators for u in usables),
    )
