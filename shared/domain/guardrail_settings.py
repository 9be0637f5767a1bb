"""The guardrail settings' text and checks: ``max_hourly_cost`` and ``budget`` in dollars, ``lease`` and
``idle_lease`` as durations (``shared.domain.units``). Each error is one line naming the setting.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from shared.domain.catalog import UnknownInstanceTypeError, UnknownRegionError, instance_type, root_volume_price
from shared.domain.node_types import NodeTypeSpecError, parse_node_types
from shared.domain.units import UnitError

if TYPE_CHECKING:
    from shared.domain.settings import ClusterSettings

_DOLLAR_TEXT = re.compile(r"\$?\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:/h|/hour|usd)?", re.IGNORECASE)
MIN_LEASE = 60.0  # a scaling round runs every minute at best: a shorter lease could not be kept


def parse_dollars(value: object) -> float:
    """A positive amount of US dollars: ``40``, ``40.5``, ``"$40"``, ``"40/h"``."""
    if isinstance(value, bool):
        raise UnitError(f"expected dollars, got {value!r}")
    if isinstance(value, int | float):
        amount = float(value)
    elif isinstance(value, str):
        match = _DOLLAR_TEXT.fullmatch(value.strip())
        if not match:
            raise UnitError(f"{value[:40]!r} is not an amount of dollars; write a positive number such as 40 or $40")
        amount = float(match.group(1))
    else:
        raise UnitError(f"expected dollars, got {value!r}")
    if not math.isfinite(amount) or amount <= 0:
        raise UnitError(f"{value!r} is not a positive amount of dollars; write a positive number such as 40")
    return amount


def guardrail_problem(settings: ClusterSettings) -> str | None:
    """What makes a guardrail setting unusable, in one line naming it (``ClusterSettings.validate`` raises it)."""
    dollars = (("max_hourly_cost", "maxHourlyCost", settings.max_hourly_cost), ("budget", "budget", settings.budget))
    for name, flag, value in dollars:
        if value is not None and (not math.isfinite(value) or value <= 0):
            return f"{name} (-c {flag}) must be a positive number of dollars, got {value:g}"
    for name, flag, seconds in (("lease", "lease", settings.lease), ("idle_lease", "idleLease", settings.idle_lease)):
        if seconds is not None and not (math.isfinite(seconds) and seconds >= max(MIN_LEASE, settings.scale_interval)):
            return (
                f"{name} (-c {flag}) must be at least the scale interval ({settings.scale_interval:g} s), "
                f"e.g. 12h, got {seconds:g} s"
            )
    if settings.max_hourly_cost is not None:
        floor = _floor_cost(settings)
        if floor > settings.max_hourly_cost:
            return (
                f"max_hourly_cost (-c maxHourlyCost) ${settings.max_hourly_cost:g}/h is below what min_nodes and "
                f"static_nodes alone cost (${floor:.2f}/h); raise it or lower them"
            )
    return None


def _floor_cost(settings: ClusterSettings) -> float:
    """What the nodes that are never scaled in cost per hour, at the guardrail's prices."""
    try:
        classes = parse_node_types(settings.node_types)
    except NodeTypeSpecError:
        return 0.0  # validate reported it already
    total, nodes = 0.0, 0
    for index, node_class in enumerate(classes):
        low = settings.min_nodes[index] if index < len(settings.min_nodes) else 0
        static = settings.static_nodes[index] if index < len(settings.static_nodes) else 0
        count = max(low, static)
        if not count:
            continue
        if node_class.bid is not None:
            price = node_class.bid
        else:
            try:
                price = max(instance_type(name).price(settings.region) for name in node_class.instance_types)
            except (UnknownInstanceTypeError, UnknownRegionError):
                return 0.0
        total += count * price
        nodes += count
    try:
        return total + nodes * root_volume_price(settings.node_storage, settings.region)  # each node's root volume
    except UnknownRegionError:
        return 0.0
