"""EC2 vCPU quotas: which quota an instance type counts against, and a plan capped at what they leave.

EC2 limits running vCPUs per *quota class* and market (Service Quotas, service code ``ec2``): on-demand
standard (A, C, D, H, I, M, R, T, Z), G and VT, P; and the spot equivalents (running or requested spot
vCPUs). The round observes each quota's value and the vCPUs already used by instances outside the
cluster (``QuotaView``); what is left is the most the cluster's whole fleet (live nodes included) may
use in that class. ``plan_within`` plans, and where a class is over, caps that class's offers (``maxNodes``)
at what fits and plans again, so jobs move to other classes or markets or wait, and the reason names the
binding quota. Capping happens around ``packing.plan``, never inside it.

A quota the round could not read is not in the view: "no limit known", nothing is capped for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from shared.domain.catalog import UnknownInstanceTypeError, instance_type
from shared.domain.cluster_state import Market
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.packing import Plan

STANDARD = "standard"
G_AND_VT = "G and VT"
P = "P"
# Instance family prefixes (the letters before the generation digit) and the quota class they count against.
_CLASS_OF_PREFIX = {
    **dict.fromkeys(("a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"), STANDARD),
    **dict.fromkeys(("g", "gr", "vt"), G_AND_VT),
    "p": P,
}
# The quota codes AWS documents for these classes (Service Quotas, service code "ec2"; values in vCPUs).
QUOTA_CODES: Mapping[tuple[Market, str], str] = MappingProxyType(
    {
        (Market.ON_DEMAND, STANDARD): "L-1216C47A",  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
        (Market.ON_DEMAND, G_AND_VT): "L-DB2E81BA",  # Running On-Demand G and VT instances
        (Market.ON_DEMAND, P): "L-417A185B",  # Running On-Demand P instances
        (Market.SPOT, STANDARD): "L-34B43A08",  # All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests
        (Market.SPOT, G_AND_VT): "L-3819A6DF",  # All G and VT Spot Instance Requests
        (Market.SPOT, P): "L-7212CCBC",  # All P Spot Instance Requests
    }
)
# The region's storage quota for gp3 volumes (Service Quotas, service code "ebs", in TiB): every node's root volume
# counts against it, and a round that grows volumes can reach it (docs/deploy.md).
GP3_QUOTA_CODE = "L-7A658B76"
QUOTA_NAMES: Mapping[str, str] = MappingProxyType(
    {code: f"{market} {cls} vCPU quota" for (market, cls), code in QUOTA_CODES.items()}
)
_FAMILY = re.compile(r"([a-z]+)\d")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaView:
    """What a round knows of the account's vCPU quotas: per quota code, its value and the vCPUs running
    outside this cluster. Codes left out are unknown (not limited)."""

    limits: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    used_elsewhere: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    gp3_gib: float | None = None  # the gp3 storage quota (``GP3_QUOTA_CODE``) in GiB; None: unknown
    gp3_elsewhere_gib: float = 0.0  # GiB of gp3 volumes outside this cluster

    def gp3_room_gib(self) -> float | None:
        """GiB of gp3 the cluster's root volumes may hold in all (None: no limit known)."""
        return None if self.gp3_gib is None else max(0.0, self.gp3_gib - self.gp3_elsewhere_gib)

    def room(self) -> dict[str, float]:
        """vCPUs the cluster's whole fleet may use, per known quota code."""
        return {code: max(0.0, limit - self.used_elsewhere.get(code, 0.0)) for code, limit in self.limits.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaUse:
    """One known quota as ``shoal status`` and the dashboard show it: its value and the vCPUs held against it."""

    code: str
    limit: float
    elsewhere: float  # vCPUs of instances outside the cluster
    cluster: float  # vCPUs of the cluster's running nodes

    @property
    def name(self) -> str:
        return QUOTA_NAMES.get(self.code, self.code)

    def used_percent(self) -> float:
        used = self.elsewhere + self.cluster
        return 100.0 * used / self.limit if self.limit > 0 else (100.0 if used else 0.0)


def usage(view: QuotaView | None, nodes: Iterable[tuple[str, Market]]) -> tuple[QuotaUse, ...]:
    """Each known quota with the vCPUs of ``nodes`` (instance type, market) counted against it."""
    if view is None:
        return ()
    cluster: dict[str, float] = {}
    for name, market in nodes:
        code = quota_code(name, market)
        if code is not None:
            cluster[code] = cluster.get(code, 0.0) + vcpus(name)
    return tuple(
        QuotaUse(code=code, limit=limit, elsewhere=view.used_elsewhere.get(code, 0.0), cluster=cluster.get(code, 0.0))
        for code, limit in sorted(view.limits.items())
    )


def quota_class(name: str) -> str | None:
    """The quota class of an instance type (``m5.2xlarge`` → standard); None for classes not tracked."""
    match = _FAMILY.match(name)
    return _CLASS_OF_PREFIX.get(match.group(1)) if match else None


def quota_code(name: str, market: Market) -> str | None:
    cls = quota_class(name)
    return None if cls is None else QUOTA_CODES.get((market, cls))


def vcpus(name: str) -> int:
    try:
        return instance_type(name).vcpus
    except UnknownInstanceTypeError:
        return 0


def _codes(offer: Offer) -> dict[str, int]:
    """The quota codes an offer's nodes count against, with the most vCPUs a node of it may take."""
    market = Market.SPOT if offer.spot else Market.ON_DEMAND
    out: dict[str, int] = {}
    for name in offer.instance_types:
        code = quota_code(name, market)
        if code is not None:
            out[code] = max(out.get(code, 0), vcpus(name))
    return out


def plan_within(
    demand: Mapping[Shape, int],
    offers: Sequence[Offer],
    view: QuotaView | None,
    *,
    live: Mapping[str, int],
    plan_fn: Callable[[Mapping[Shape, int], Sequence[Offer]], Plan],
    reasons: list[str],
) -> tuple[Plan, list[Offer]]:
    """``plan_fn``'s plan with every known quota class held to its room; the offers it was planned with
    (a capped offer's ``max_nodes`` lowered, never below its live nodes). Appends a reason per binding quota."""
    result = plan_fn(demand, offers)
    room = view.room() if view is not None else {}
    if not room:
        return result, list(offers)
    first = result
    codes = {o.key: _codes(o) for o in offers}
    caps: dict[str, int] = {}
    binding: dict[str, list[str]] = {}
    current = list(offers)
    for _ in range(len(room) + 1):  # capping one class may push work into another
        counts = result.node_counts()
        over = False
        for code, allowed in sorted(room.items()):
            members = [o for o in current if code in codes[o.key]]
            used = sum(counts.get(o.key, 0) * codes[o.key][code] for o in members)
            if used <= allowed:
                continue
            share = _share(members, code, counts=counts, allowed=allowed, live=live, codes=codes)
            if all(cap >= counts.get(key, 0) for key, cap in share.items()):
                continue  # over only by live nodes, which are never drained for a quota
            over = True
            binding[code] = [o.key for o in members]
            for key, cap in share.items():
                caps[key] = min(caps.get(key, cap), cap)
        if not over:
            break
        current = [_capped(o, caps[o.key]) if o.key in caps else o for o in offers]
        result = plan_fn(demand, current)
    waiting = max(0, _deferred(result) - _deferred(first))
    counts = result.node_counts()
    for code, keys in sorted(binding.items()):
        limit = view.limits[code] if view is not None else 0.0
        elsewhere = view.used_elsewhere.get(code, 0.0) if view is not None else 0.0
        fits = ", ".join(f"{counts.get(k, 0)} {k}" for k in keys if counts.get(k, 0)) or "no new nodes"
        note = f" ({elsewhere:g} vCPUs run outside the cluster)" if elsewhere else ""
        reasons.append(
            f"{QUOTA_NAMES[code]} of {limit:g}{note} leaves room for {fits}; {waiting} jobs wait"
            + ("" if waiting else " (moved to other node types)")
        )
    return result, current


def _share(
    members: Sequence[Offer],
    code: str,
    *,
    counts: Mapping[str, int],
    allowed: float,
    live: Mapping[str, int],
    codes: Mapping[str, Mapping[str, int]],
) -> dict[str, int]:
    """``maxNodes`` per member offer so their vCPUs fit ``allowed``: live nodes first (never drained for a
    quota), then the offers the plan wanted most, in that order."""
    left = allowed - sum(live.get(o.key, 0) * codes[o.key][code] for o in members)
    caps = {o.key: live.get(o.key, 0) for o in members}
    for offer in sorted(members, key=lambda o: (-counts.get(o.key, 0), o.key)):
        size = codes[offer.key][code]
        extra = max(0, counts.get(offer.key, 0) - caps[offer.key])
        fit = min(extra, int(max(0.0, left) // size)) if size else extra
        caps[offer.key] += fit
        left -= fit * size
    return caps


def _capped(offer: Offer, cap: int) -> Offer:
    high = min(offer.max_nodes, cap)
    return replace(offer, max_nodes=high, min_nodes=min(offer.min_nodes, high))


def _deferred(result: Plan) -> int:
    return sum(u.count for u in result.deferred)
