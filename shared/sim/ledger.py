"""The simulated scaler's spend ledger: the same pure accrual the deployed round keeps (``shared.domain.budget``),
so a simulated budget runs out when a deployed one would, and the report says when and what was spent.

Leases too: when the time to live or the idle lease runs out (``budget.lease_expired``, the deployed round's
rule), the simulation tears the cluster down as TeardownCluster does: nothing new starts or launches, every
node drains and goes once empty. (The deployed teardown gives busy nodes an hour, then terminates them; the
simulation lets them finish.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from shared.domain.budget import Spend, accrue, after_round, budget_exhausted, lease_expired, offer_ceiling
from shared.domain.cluster_state import Market, NodeState
from shared.domain.node_types import Offer
from shared.domain.settings import ClusterSettings


class PricedNode(Protocol):
    @property
    def offer_key(self) -> str: ...

    @property
    def market(self) -> Market: ...

    @property
    def price(self) -> float: ...

    @property
    def state(self) -> NodeState: ...

    @property
    def volume_price(self) -> float: ...


class SimLedger:
    """Keeps nothing, and changes nothing the scaler sees, when the settings have no budget."""

    def __init__(self, settings: ClusterSettings, offers: Mapping[str, Offer]) -> None:
        self.settings, self.offers = settings, offers
        self.spend = Spend()
        self.exhausted_at: float | None = None
        self.lease_ended_at: float | None = None
        self.lease_reason: str | None = None

    @property
    def on(self) -> bool:
        s = self.settings
        return s.budget is not None or s.lease is not None or s.idle_lease is not None

    @property
    def ended(self) -> bool:
        """The budget or a lease ran out: the cluster only winds down from here."""
        return self.exhausted_at is not None or self.lease_ended_at is not None

    def spent(self, now: float) -> float:
        return accrue(self.spend, now) if self.on else 0.0

    def crossing(self, now: float, *, busy: bool) -> bool:
        """The budget or a lease ran out since the last round: the round must decide, even with nothing else
        changed. (The idle lease cannot run out while a job is queued or running.)"""
        if not self.on:
            return False
        if self.exhausted_at is None and budget_exhausted(self.settings, self.spent(now)):
            return True
        if self.lease_ended_at is not None:
            return False
        return lease_expired(self.settings, self.spend, now) is not None and (
            self.settings.lease is not None or not busy
        )

    def record(self, now: float, nodes: Iterable[PricedNode], *, busy: bool) -> None:
        if not self.on:
            return
        rate = sum(self._price(n) for n in nodes)
        self.spend = after_round(self.spend, now=now, rate=rate, busy=busy)
        if self.exhausted_at is None and budget_exhausted(self.settings, self.spend.spent):
            self.exhausted_at = now
        if self.lease_ended_at is None:
            self.lease_reason = lease_expired(self.settings, self.spend, now)
            self.lease_ended_at = None if self.lease_reason is None else now

    def _price(self, node: PricedNode) -> float:
        """At the deployed ledger's ceilings (``budget.fleet_rate``): spot at its bid, with the node's own volume."""
        if node.state is NodeState.STOPPED:
            return node.volume_price  # EBS bills a stopped node's root volume
        offer = self.offers.get(node.offer_key)
        if node.market is Market.SPOT and offer:
            return offer_ceiling(offer, self.settings.region) - offer.volume_price + node.volume_price
        return node.price

    def report(self, now: float) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.settings.budget is not None:
            out.update(
                status="BUDGET_EXHAUSTED" if self.exhausted_at is not None else "ACTIVE",
                budget=self.settings.budget,
                spent=round(self.spent(now), 4),
                budget_exhausted_at_seconds=None if self.exhausted_at is None else round(self.exhausted_at, 3),
            )
        if self.settings.lease is not None or self.settings.idle_lease is not None:
            out.update(
                lease_ended_at_seconds=None if self.lease_ended_at is None else round(self.lease_ended_at, 3),
                lease_reason=self.lease_reason,
            )
        return out
