"""The round's dollar and time guardrails around the pure decision (``shared.domain.budget``).

Before deciding, the round reads the spend ledger and accrues it to now (``before_round``): the decision
sees what was spent. After acting it saves the ledger with the rate of the fleet it leaves running
(``after_round``), marks the cluster BUDGET_EXHAUSTED once the budget is spent, and starts TeardownCluster
when the lease or the idle lease has run out. Beside the ledger it saves what ``shoal status`` and the dashboard
show of every guardrail (``GuardView``): spend and leases, the vCPU quotas the round read with the cluster's use
of each, and the jobs reclaimed from spot (those past their preemption budget run on on-demand nodes only).
``renew_lease`` is ``shoal launch-cluster --lease``.

Nothing here imports boto3: the ports below are served by ``shared.adapters.spend_ledger``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.budget import (
    LeaseClock,
    Spend,
    accrue,
    budget_exhausted,
    fleet_rate,
    lease_clock,
    lease_expired,
)
from shared.domain.budget import (
    after_round as ledger_after_round,
)
from shared.domain.cluster_state import ClusterStatus, DemandCount, JobRecord, NodeRecord, NodeState
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.preemption import on_demand_only
from shared.domain.quotas import QuotaUse, QuotaView, usage
from shared.domain.settings import ClusterSettings

_RUNNING = (NodeState.PENDING, NodeState.ACTIVE, NodeState.DRAINING, NodeState.INTERRUPTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardView:
    """What ``shoal status`` shows of the guardrails (the round writes it with the ledger)."""

    spent: float
    budget: float | None = None
    max_hourly_cost: float | None = None
    rate: float = 0.0
    lease_expires_at: float | None = None
    idle_expires_at: float | None = None
    quotas: tuple[QuotaUse, ...] | None = None  # the known vCPU quotas; (): none readable; None: not recorded
    preempted_jobs: int = 0  # queued or running jobs reclaimed from spot at least once
    on_demand_only_jobs: int = 0  # of those, the ones past their preemption budget (on-demand nodes only)
    max_preemptions: int | None = None  # the cluster default; None: not recorded
    # Spot Placement Scores (1-10) per spot offer key and zone, as the round used them; {}: none known (spot
    # launches in price order); None: not recorded
    placement_scores: Mapping[str, Mapping[str, int]] | None = None
    at: float | None = None  # when the round saved it (the ledger's accrual time)

    def lease_hours_left(self) -> float | None:
        """Hours until the first lease runs out, as of ``at``; None without a lease."""
        ends = [t for t in (self.lease_expires_at, self.idle_expires_at) if t is not None]
        if not ends or self.at is None:
            return None
        return max(0.0, min(ends) - self.at) / 3600.0


class SpendLedger(Protocol):
    def load(self) -> Spend: ...

    def save(self, spend: Spend, *, previous: Spend, view: GuardView) -> bool:
        """Write ``spend`` if the ledger is still ``previous`` (no other round saved since); False otherwise."""
        ...

    def renew_lease(self, expires_at: float, *, now: float) -> None:
        """Set the lease's end (``launch-cluster --lease``); the idle clock restarts too."""
        ...

    def view(self) -> GuardView | None: ...


class StatusWriter(Protocol):
    def set_status(
        self,
        status: ClusterStatus,
        *,
        reason: str | None,
        now: float,
        expected: Collection[ClusterStatus] | None = None,
    ) -> bool: ...


class TeardownStartError(RuntimeError):
    """TeardownCluster could not be started; the message names the machine and the cause."""


class TeardownStarter(Protocol):
    def start_teardown(self, *, reason: str, key: float) -> bool:
        """Start TeardownCluster once per ``key`` (the expiry time): a repeat with the same key starts nothing.
        False when this key's execution already ended (the teardown ran; a new one needs a renewal first)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Guardrails:
    """The ports a round needs for its guardrails (``ControlPlane.guardrails``)."""

    ledger: SpendLedger
    status: StatusWriter
    teardown: TeardownStarter | None = None  # None: the stack gave the scaler no teardown to start


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundGuard:
    """What ``after_round`` did: the errors, and the view it saved (None without guardrails)."""

    errors: list[str]
    view: GuardView | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Before:
    spend: Spend
    spent: float  # accrued to now: what the decision sees


def before_round(guardrails: Guardrails | None, now: float) -> Before:
    if guardrails is None:
        return Before(spend=Spend(), spent=0.0)
    spend = guardrails.ledger.load()
    return Before(spend=spend, spent=accrue(spend, now))


def after_round(
    guardrails: Guardrails | None,
    settings: ClusterSettings,
    before: Before,
    *,
    nodes: Sequence[NodeRecord],
    offers: Sequence[Offer],
    demand: Mapping[Shape, DemandCount],
    now: float,
    quotas: QuotaView | None = None,
    preempted: Sequence[JobRecord] = (),
    placement_scores: Mapping[str, Mapping[str, int]] | None = None,
) -> RoundGuard:
    """Save the ledger and the view, report an exhausted budget, start the teardown of an expired lease.

    ``quotas``: what the round read of the vCPU quotas (None: none known); ``preempted``: the queued and
    running jobs reclaimed from spot at least once (``JobStore.preempted_jobs``)."""
    if guardrails is None:
        return RoundGuard(errors=[])
    by_key = {o.key: o for o in offers}
    running = [n for n in nodes if n.state in _RUNNING]
    stopped = [n for n in nodes if n.state is NodeState.STOPPED]  # their root volumes are still billed
    rate = fleet_rate([*running, *stopped], by_key, settings.region)
    busy = any(c.queued or c.running for c in demand.values())
    spend = ledger_after_round(before.spend, now=now, rate=rate, busy=busy)
    clock = lease_clock(settings, spend)
    view = GuardView(
        spent=spend.spent,
        budget=settings.budget,
        max_hourly_cost=settings.max_hourly_cost,
        rate=rate,
        lease_expires_at=clock.expires_at,
        idle_expires_at=clock.idle_expires_at,
        quotas=usage(quotas, [(n.instance_type, n.market) for n in running]),
        preempted_jobs=len(preempted),
        on_demand_only_jobs=sum(on_demand_only(r.job, r.preemptions, settings.max_preemptions) for r in preempted),
        max_preemptions=settings.max_preemptions,
        placement_scores={k: dict(v) for k, v in (placement_scores or {}).items()},
        at=spend.at,
    )
    errors: list[str] = []
    if not guardrails.ledger.save(spend, previous=before.spend, view=view):
        errors.append("the spend ledger changed during the round; this round's spend is left to the next")
    if budget_exhausted(settings, spend.spent):
        guardrails.status.set_status(
            ClusterStatus.BUDGET_EXHAUSTED,
            reason=f"spent ${spend.spent:.2f} of the ${settings.budget:g} budget",
            now=now,
            expected=(ClusterStatus.ACTIVE,),
        )
    errors += _end_an_expired_lease(guardrails, settings, spend, clock, now)
    return RoundGuard(errors=errors, view=view)


def _end_an_expired_lease(
    guardrails: Guardrails, settings: ClusterSettings, spend: Spend, clock: LeaseClock, now: float
) -> list[str]:
    reason = lease_expired(settings, spend, now)
    if reason is None:
        return []
    if guardrails.teardown is None:
        return [f"{reason}, but this stack gives the scaler no TeardownCluster to start; run shoal destroy-cluster"]
    try:
        guardrails.teardown.start_teardown(reason=reason, key=clock.first() or now)
    except TeardownStartError as error:
        return [f"{reason}, but TeardownCluster did not start: {error}"]
    return []


def renew_lease(ledger: SpendLedger, lease: float, *, now: float) -> float:
    """``launch-cluster --lease``: the lease now ends ``lease`` seconds from ``now``; returns when."""
    expires_at = now + lease
    ledger.renew_lease(expires_at, now=now)
    return expires_at
