"""Dollar guardrails on the scaler's decision: ``maxHourlyCost``, ``budget``, and the spend ledger behind them.

- ``maxHourlyCost``: the fleet's price per hour never exceeds it. Prices are ceilings: an on-demand class at
  its dearest member (the launcher may fall back to it), a spot class at its bid (the most it can cost), each
  with the node's root volume (``Offer.volume_price``). The
  nodes a round cannot remove (busy, static, minNodes) stay; the other wanted nodes are kept cheapest per
  planned job first while they fit under the cap, and the jobs planned on the others wait (the reason
  says how many).
- ``budget``: total spend over the cluster's life. The scaler accrues it itself (``accrue``): each round adds
  the hourly price of the fleet the previous round left running times the time since, so it needs no
  billing data and a duplicate round at the same instant adds nothing. At 100 % nothing new is launched,
  every node drains (running jobs finish, then the node goes) and the cluster reports BUDGET_EXHAUSTED.
- ``lease``/``idle_lease``: when the cluster's time to live, or its time without a queued or running job,
  runs out, the round starts TeardownCluster (``lease_expired``).

Pure: the round passes what it observed and ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from shared.domain.catalog import UnknownInstanceTypeError, UnknownRegionError, instance_type, root_volume_price
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Action, Drain
from shared.domain.node_types import Offer
from shared.domain.packing import Plan
from shared.domain.settings import ClusterSettings

_SLACK = 1e-9  # dollars: float sums of prices that meet the cap exactly


@dataclass(frozen=True, slots=True, kw_only=True)
class Spend:
    """The scaler's ledger (one state-table item): what the cluster spent, and the clocks of its leases."""

    spent: float = 0.0  # USD accrued up to ``at``
    at: float | None = None  # when it was last accrued; None: never (the cluster's first round)
    rate: float = 0.0  # USD/h of the fleet the last round left running
    started_at: float | None = None  # the first round: the lease counts from here unless renewed
    busy_at: float | None = None  # the last round that saw a job queued or running (or a renewal)
    lease_expires_at: float | None = None  # set by ``launch-cluster --lease`` (a renewal); wins over the setting


def accrue(spend: Spend, now: float) -> float:
    """Dollars spent by ``now``: the ledger plus the last fleet's rate since it was accrued."""
    if spend.at is None:
        return spend.spent
    return spend.spent + spend.rate * max(0.0, now - spend.at) / 3600.0


def after_round(spend: Spend, *, now: float, rate: float, busy: bool) -> Spend:
    """The ledger a round leaves: accrued to ``now``, with the rate of the fleet it leaves running."""
    return Spend(
        spent=round(accrue(spend, now), 6),
        at=now if spend.at is None else max(now, spend.at),  # a clock behind the ledger must not re-count time
        rate=round(rate, 6),
        started_at=spend.started_at if spend.started_at is not None else now,
        busy_at=now if busy else spend.busy_at if spend.busy_at is not None else now,
        lease_expires_at=spend.lease_expires_at,
    )


def budget_exhausted(settings: ClusterSettings, spent: float) -> bool:
    return settings.budget is not None and spent >= settings.budget - _SLACK


def exhausted_reason(settings: ClusterSettings, spent: float) -> str:
    return f"budget ${settings.budget:g} exhausted: ${spent:.2f} spent; no new nodes, running jobs finish, nodes drain"


# ---- leases ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseClock:
    expires_at: float | None  # the time to live; None: no lease
    idle_expires_at: float | None  # when the idle lease runs out if no job comes; None: no idle lease

    def first(self) -> float | None:
        ends = [t for t in (self.expires_at, self.idle_expires_at) if t is not None]
        return min(ends) if ends else None


def lease_clock(settings: ClusterSettings, spend: Spend) -> LeaseClock:
    expires = spend.lease_expires_at
    if expires is None and settings.lease is not None and spend.started_at is not None:
        expires = spend.started_at + settings.lease
    idle = None
    if settings.idle_lease is not None and spend.busy_at is not None:
        idle = spend.busy_at + settings.idle_lease
    return LeaseClock(expires_at=expires, idle_expires_at=idle)


def lease_expired(settings: ClusterSettings, spend: Spend, now: float) -> str | None:
    """Why the cluster's lease ran out by ``now`` (a reason for the teardown), or None."""
    clock = lease_clock(settings, spend)
    if clock.expires_at is not None and now >= clock.expires_at:
        return "lease expired"
    if clock.idle_expires_at is not None and now >= clock.idle_expires_at:
        return f"idle lease expired: no job queued or running for {_hours(settings.idle_lease or 0.0)}"
    return None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"


# ---- prices ------------------------------------------------------------------------------------


def offer_ceiling(offer: Offer, region: str) -> float:
    """The most one node of ``offer`` can cost per hour: its bid on spot, its dearest member on demand, with its root
    volume."""
    if offer.spot:
        return offer.bid + offer.volume_price if offer.bid is not None else offer.hourly_price
    prices = [offer.hourly_price]
    for name in offer.instance_types:
        try:
            prices.append(instance_type(name).price(region) + offer.volume_price)
        except (UnknownInstanceTypeError, UnknownRegionError):
            continue
    return max(prices)


def node_volume_price(node: NodeRecord, offer: Offer | None, region: str) -> float:
    """What ``node``'s root volume costs an hour, running or stopped: the size it was launched with
    (``node_storage``), else its offer's."""
    if node.node_storage is not None:
        with suppress(UnknownRegionError):  # no gp3 price there: the offer's volume stands in
            return root_volume_price(node.node_storage, region)
    return offer.volume_price if offer is not None else 0.0


def node_ceiling(node: NodeRecord, offer: Offer | None, region: str) -> float:
    """What a running node can cost per hour: spot at its offer's bid, on-demand at its own type's price, each with
    its own root volume (a grown one costs more than its offer's)."""
    volume = node_volume_price(node, offer, region)
    if node.market is Market.SPOT and offer is not None:
        return offer_ceiling(offer, region) - offer.volume_price + volume
    try:
        return instance_type(node.instance_type).price(region) + volume
    except (UnknownInstanceTypeError, UnknownRegionError):
        return offer_ceiling(offer, region) - offer.volume_price + volume if offer is not None else 0.0


def fleet_rate(nodes: Sequence[NodeRecord], offers: Mapping[str, Offer], region: str) -> float:
    """The hourly price (at ceilings) of ``nodes``; a stopped one's is its root volume's, which EBS bills on."""
    return sum(
        node_volume_price(n, offers.get(n.offer_key), region)
        if n.state is NodeState.STOPPED
        else node_ceiling(n, offers.get(n.offer_key), region)
        for n in nodes
    )


# ---- the decision's guard ----------------------------------------------------------------------


def guard_spend(
    wanted: Mapping[str, int],
    live: Mapping[str, Sequence[NodeRecord]],
    plan: Plan,
    offers: Mapping[str, Offer],
    settings: ClusterSettings,
    *,
    spent: float,
    stopped: Sequence[NodeRecord] = (),
) -> tuple[dict[str, int], list[str]]:
    """The wanted counts within the budget and ``maxHourlyCost``, with the reasons for any cut."""
    if budget_exhausted(settings, spent):
        return dict.fromkeys(wanted, 0), [exhausted_reason(settings, spent)]
    if settings.max_hourly_cost is None:
        return dict(wanted), []
    cap = settings.max_hourly_cost
    return cap_hourly_cost(wanted, live, plan, offers, region=settings.region, cap=cap, stopped=stopped)


@dataclass(frozen=True, slots=True)
class _Unit:
    """One wanted node the cap may cut: its offer, its price and the jobs the plan put on it."""

    key: str
    price: float
    jobs: int

    def order(self) -> tuple[float, float, str]:
        per_job = self.price / self.jobs if self.jobs else math.inf
        return (per_job, self.price, self.key)


def cap_hourly_cost(
    wanted: Mapping[str, int],
    live: Mapping[str, Sequence[NodeRecord]],
    plan: Plan,
    offers: Mapping[str, Offer],
    *,
    region: str,
    cap: float,
    stopped: Sequence[NodeRecord] = (),
) -> tuple[dict[str, int], list[str]]:
    """``wanted`` cut to fit ``cap`` dollars an hour, cheapest per planned job first. The root volumes of ``stopped``
    (warm-pool) nodes are billed too; one the round starts again counts its volume twice, so the cap errs low."""
    jobs_per_node = _jobs_per_node(plan)
    out: dict[str, int] = {}
    fixed = sum(node_volume_price(n, offers.get(n.offer_key), region) for n in stopped)
    units: list[_Unit] = []
    for key, want in wanted.items():
        offer = offers.get(key)
        nodes = live.get(key, ())
        kept = [n for n in nodes if n.busy or n.static]  # a round cannot remove these
        floor = max(len(kept), offer.min_nodes if offer is not None else 0)
        price = offer_ceiling(offer, region) if offer is not None else 0.0
        fixed += sum(node_ceiling(n, offer, region) for n in kept) + max(0, floor - len(kept)) * price
        out[key] = min(want, floor)
        loads = jobs_per_node.get(key, [])
        units += [_Unit(key, price, loads[i] if i < len(loads) else 0) for i in range(floor, want)]
    if fixed + sum(u.price for u in units) <= cap + _SLACK:
        return dict(wanted), []
    cost = fixed
    dropped: list[_Unit] = []
    for unit in sorted(units, key=_Unit.order):
        if cost + unit.price <= cap + _SLACK:
            cost += unit.price
            out[unit.key] += 1
        else:
            dropped.append(unit)
    waiting = sum(u.jobs for u in dropped)
    if fixed > cap + _SLACK:
        reason = (
            f"capped at ${cap:g}/h: {waiting} jobs wait; the nodes that cannot be removed (busy, static, minNodes, "
            f"stopped ones' root volumes) already cost ${fixed:.2f}/h, so nothing launches and idle nodes drain"
        )
    else:
        reason = (
            f"capped at ${cap:g}/h: {waiting} jobs wait; {len(dropped)} wanted nodes left out "
            f"(cheapest per job kept, fleet ${cost:.2f}/h)"
        )
    return out, [reason]


def _jobs_per_node(plan: Plan) -> dict[str, list[int]]:
    """The jobs the plan put on each node, per offer key, fullest first."""
    out: dict[str, list[int]] = {}
    for group in plan.groups:
        out.setdefault(group.offer.key, []).extend([group.load.jobs] * group.count)
    for loads in out.values():
        loads.sort(reverse=True)
    return out


def budget_drains(
    live: Mapping[str, Sequence[NodeRecord]], actions: Sequence[Action], settings: ClusterSettings, *, spent: float
) -> list[Drain]:
    """With the budget spent, every live non-static node drains, busy ones too: they take no new job, finish
    what they run, and leave (the decision's usual retire step terminates them once idle)."""
    if not budget_exhausted(settings, spent):
        return []
    draining = {i for a in actions if isinstance(a, Drain) for i in a.instance_ids}
    out = []
    for key, nodes in sorted(live.items()):
        ids = tuple(n.instance_id for n in nodes if not n.static and n.instance_id not in draining)
        if ids:
            out.append(Drain(offer_key=key, instance_ids=ids, reason=f"{key}: {exhausted_reason(settings, spent)}"))
    return out
