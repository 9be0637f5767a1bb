"""Cheaper nodes first: a node leaves a young job to the cluster's cheaper node types for a few seconds.

Nodes take queued jobs in whatever order the queue hands them out, so a one-core job lands in a big on-demand
node's spare room as readily as on the spot node the plan launched for it, and then keeps the big node alive long
after the job it was launched for has ended (the RICC week's m5.24xlarge nodes: docs/simulate.md, session 11).
Slurm's node weights and Kubernetes' scoring put work on the cheapest suitable node first. A queue cannot rank
its pollers, so each node asks itself: would the share of me this job takes cost more than ``SLACK`` over its
share of the cheapest node type that can run it? Then it gives the job back for the job's first ``HOLD_OFF``
seconds in the queue: a cheaper node with room takes it meanwhile, and if none has room, it starts here after
all, a few seconds late.

A job's cost on a node type is the type's hourly price times the largest share of its usable capacity the job
needs (``Resources.share_of``: the simulator's lower bound prices a job the same way, on raw capacity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.domain.node_types import Offer
from shared.domain.resources import Resources

HOLD_OFF = 5.0  # seconds a job is left to cheaper nodes (0, 10 and 30 s measured no better: docs/simulate.md)
SLACK = 0.25  # a node this much dearer per job still takes it at once (near-equal types need no detour)


@dataclass(slots=True)
class CheaperFirst:
    """The cluster's offers, as a node asks them whether a job would rather run elsewhere."""

    offers: Sequence[Offer]
    _cheapest: dict[tuple[Resources, bool], float | None] = field(default_factory=dict)

    def cheapest(self, need: Resources, preemptible: bool) -> float | None:
        """$/h of ``need``'s share of the cheapest offer that runs it (spot only if ``preemptible``); None: none."""
        key = (need, preemptible)
        if key not in self._cheapest:
            self._cheapest[key] = min(
                (
                    o.hourly_price * need.share_of(o.usable)
                    for o in self.offers
                    if need.fits_in(o.usable) and (preemptible or not o.spot)
                ),
                default=None,
            )
        return self._cheapest[key]

    def leave(
        self, need: Resources, preemptible: bool, *, waited: float, price: float, usable: Resources
    ) -> str | None:
        """Why a node of ``usable`` capacity at ``price`` $/h leaves this job to cheaper ones now (None: it may
        take it). ``waited``: seconds the job has been in the queue."""
        if waited >= HOLD_OFF:
            return None
        cheapest = self.cheapest(need, preemptible)
        if cheapest is None:
            return None
        here = price * need.share_of(usable)
        if here <= cheapest * (1.0 + SLACK):
            return None
        return (
            f"a cheaper node type runs it for ${cheapest:.4f}/h against ${here:.4f}/h here; "
            f"left to one for its first {HOLD_OFF:g} s in the queue"
        )


@dataclass(frozen=True, slots=True)
class NodeCost:
    """One node's side of the rule, as its agent holds it: what the node costs, what it gives jobs, the cluster's
    offers. ``of`` finds the node's own offer by its instance type and market."""

    rule: CheaperFirst
    price: float
    usable: Resources

    @classmethod
    def of(cls, offers: Sequence[Offer], instance_type: str, *, spot: bool) -> NodeCost | None:
        """None: no offer of the cluster has this type on this market (the node then takes any job)."""
        own = next((o for o in offers if o.spot == spot and instance_type in o.instance_types), None)
        if own is None:
            return None
        return cls(rule=CheaperFirst(offers), price=own.hourly_price, usable=own.usable)

    def leave(self, need: Resources, preemptible: bool, *, waited: float) -> str | None:
        return self.rule.leave(need, preemptible, waited=waited, price=self.price, usable=self.usable)
