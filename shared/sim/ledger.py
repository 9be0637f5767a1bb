"""The simulated scaler's spend ledger: the same pure accrual the deployed round keeps (``shared.domain.budget``),
so a simulated budget runs out when a deployed one would, and the report says when and what was spent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from shared.domain.budget import Spend, accrue, after_round, budget_exhausted, offer_ceiling
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


class SimLedger:
    """Keeps nothing, and changes nothing the scaler sees, when the settings have no budget."""

    def __init__(self, settings: ClusterSettings, offers: Mapping[str, Offer]) -> None:
        self.settings, self.offers = settings, offers
        self.spend = Spend()
        self.exhausted_at: float | None = None

    @property
    def on(self) -> bool:
        return self.settings.budget is not None

    def spent(self, now: float) -> float:
        return accrue(self.spend, now) if self.on else 0.0

    def crossing(self, now: float) -> bool:
        """The budget ran out since the last round: the round must decide, even with nothing else changed."""
        return self.on and self.exhausted_at is None and budget_exhausted(self.settings, self.spent(now))

    def record(self, now: float, nodes: Iterable[PricedNode], *, busy: bool) -> None:
        if not self.on:
            return
        rate = sum(self._price(n) for n in nodes if n.state is not NodeState.STOPPED)
        self.spend = after_round(self.spend, now=now, rate=rate, busy=busy)
        if self.exhausted_at is None and budget_exhausted(self.settings, self.spend.spent):
            self.exhausted_at = now

    def _price(self, node: PricedNode) -> float:
        offer = self.offers.get(node.offer_key)
        return offer_ceiling(offer, self.settings.region) if node.market is Market.SPOT and offer else node.price

    def report(self, now: float) -> dict[str, object]:
        if not self.on:
            return {}
        return {
            "status": "BUDGET_EXHAUSTED" if self.exhausted_at is not None else "ACTIVE",
            "budget": self.settings.budget,
            "spent": round(self.spent(now), 4),
            "budget_exhausted_at_seconds": None if self.exhausted_at is None else round(self.exhausted_at, 3),
        }
