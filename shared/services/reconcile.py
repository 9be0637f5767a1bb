"""One scaling round: observe → decide → act (``actuator``) → record (``round_report``).

A round holds the lease (a conditional write with expiry) from start to end, so overlapping triggers
cannot both scale; a trigger that finds the lease held skips, because the running round (or the next
scheduled one) sees the same level of demand. Acting may refuse launches for lack of capacity: the
offerings go into the capacity-failure cache and the round decides again at once, so the fallback
(the next type of the class, the next-cheapest offer, on-demand per preemptibleCompensation) happens
in the same round. The last pass decides after acting; its state is what the next round starts from,
and any action it still proposes (say, a terminate EC2 refused) is logged for the next round to retry.

What the round observes of demand (demand planned at learned runtimes, when each shape's oldest job was
queued, when each busy node is expected to be empty) is ``shared.services.round_demand``, by the rule the
simulator uses too. Nothing here imports boto3: the round talks to ``ports``. What an EC2 event does to a
node is ``shared.services.instance_events``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.domain import preemption
from shared.domain.budget import node_volume_price
from shared.domain.cluster_state import DemandCount, JobRecord, NodeRecord, NodeState
from shared.domain.decision import Action, Decision, Snapshot, describe_action
from shared.domain.demand import DemandKey
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState
from shared.domain.scaling import decide, node_hourly_price
from shared.domain.settings import ClusterSettings
from shared.formats.decision_record import DecisionRecord, PassSummary
from shared.services import guardrails
from shared.services.actuator import Actuator, FleetPorts
from shared.services.guardrails import Guardrails
from shared.services.ports import (
    LARGER_ROOT_VOLUMES,
    CapacityCache,
    DecisionLog,
    Fleet,
    JobReturns,
    JobStore,
    Lease,
    NodeStore,
    Offering,
    PlacementScores,
    QuotaSource,
    ScalerStateStore,
)
from shared.services.round_demand import DemandSource, ObservedDemand, observe_demand
from shared.services.round_report import RoundResult, failure_dict

LEASE_TTL = 300.0  # seconds; longer than a round may run (the Lambda timeout must not exceed it)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlane:
    """Everything a round talks to."""

    jobs: JobStore
    nodes: NodeStore
    scaler_state: ScalerStateStore
    lease: Lease
    capacity: CapacityCache
    decisions: DecisionLog
    queue: JobReturns
    fleet: Fleet
    guardrails: Guardrails | None = None  # budget, maxHourlyCost's ledger, leases (shared.services.guardrails)
    quotas: QuotaSource | None = None  # None: no quota is known, nothing is capped
    placement: PlacementScores | None = None  # None: spot launches in price order
    # None: demand per requested shape (``jobs.demand()``), no learned runtimes, queued_since or empties_at
    demand: DemandSource | None = None

    def fleet_ports(self) -> FleetPorts:
        """What the actuator acts on."""
        return FleetPorts(fleet=self.fleet, nodes=self.nodes, capacity=self.capacity, jobs=self.jobs, queue=self.queue)


def run_round(
    plane: ControlPlane,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    *,
    now: float,
    round_id: str,
    trigger: str = "schedule",
    lease_ttl: float = LEASE_TTL,
) -> RoundResult:
    """One round, unless another holds the lease. ``round_id`` also keys the launches' ClientTokens."""
    if not plane.lease.acquire(round_id, now, lease_ttl):
        return RoundResult(round_id=round_id, trigger=trigger, ran=False, skipped="another round holds the lease")
    try:
        return _Round(plane, settings, offers, now=now, round_id=round_id, trigger=trigger).run()
    finally:
        plane.lease.release(round_id)


class _Round:
    def __init__(
        self,
        plane: ControlPlane,
        settings: ClusterSettings,
        offers: Sequence[Offer],
        *,
        now: float,
        round_id: str,
        trigger: str,
    ) -> None:
        self.plane, self.settings, self.offers = plane, settings, list(offers)
        self.now, self.round_id, self.trigger = now, round_id, trigger
        self.actuator = Actuator(
            plane.fleet_ports(),
            now=now,
            capacity_failure_ttl=settings.capacity_failure_ttl,
            max_preemptions=settings.max_preemptions,
        )

    def run(self) -> RoundResult:
        started = time.perf_counter()
        seen = self._observe()
        passes = self._decide_and_act(seen)
        return self._record(seen, passes, started)

    def _observe(self) -> _Observed:
        plane = self.plane
        state, version = plane.scaler_state.load()
        smoothed_at = _last_smoothed_at(plane.decisions)
        nodes = plane.nodes.list_nodes()
        source = plane.demand
        observed = observe_demand(source, nodes, self.now) if source else ObservedDemand(demand=plane.jobs.demand())
        self.actuator.tally.errors.extend(observed.errors)
        guard = guardrails.before_round(plane.guardrails, self.now)
        self.actuator.instances = {i.instance_id: i for i in plane.fleet.describe()}
        zones = plane.fleet.zones()
        preempted = plane.jobs.preempted_jobs()
        return _Observed(
            state=state,
            version=version,
            smoothed_at=smoothed_at,
            demand=observed.demand,
            queued_since=observed.queued_since,
            empties_at=observed.empties_at,
            guard=guard,
            zones=zones,
            preempted=preempted,
            extras=_observed_extras(
                plane, self.settings, self.offers, zones, self.now, preempted=preempted, shape_of=observed.shape_of
            ),
            unavailable=set(plane.capacity.unavailable(self.now)),
            nodes=nodes,
        )

    def _decide_and_act(self, seen: _Observed) -> _Passes:
        """Decide, act, and decide again while EC2 refused offerings (the capacity fallback)."""
        plane, actuator = self.plane, self.actuator
        nodes, decide_seconds, passes, refused = seen.nodes, 0.0, 0, False
        leftover: tuple[Action, ...] = ()
        summaries: list[PassSummary] = []
        while True:
            snapshot = Snapshot(
                demand=seen.demand,
                nodes=nodes,
                instances=tuple(actuator.instances.values()),
                zones=seen.zones,
                queued_since=seen.queued_since,
                empties_at=seen.empties_at,
                spent=seen.guard.spent,
                **seen.extras,
            )
            clock = time.perf_counter()
            decision = decide(
                snapshot, _volumes_allowed(self.settings, seen.unavailable), self.offers, seen.state,
                seen.unavailable, now=self.now, smoothed_at=seen.smoothed_at,
            )  # fmt: skip
            decide_seconds += time.perf_counter() - clock
            passes += 1
            summaries.append(PassSummary.of(decision))
            if not decision.actions:
                break
            # Act on the first pass; after that only when the pass before found offerings EC2 refused
            # (the fallback), so an action that keeps failing for another reason is not hammered.
            if (passes > 1 and not refused) or passes > len(self.offers) + 2:
                leftover = decision.actions
                break
            launch_key = f"{self.round_id}:{passes - 1}"
            refused = actuator.act(decision.actions, launch_key=launch_key, unavailable=seen.unavailable)
            nodes = plane.nodes.list_nodes()
        return _Passes(
            decision=decision, count=passes, summaries=summaries, leftover=leftover, nodes=nodes,
            decide_seconds=decide_seconds,
        )  # fmt: skip

    def _record(self, seen: _Observed, passes: _Passes, started: float) -> RoundResult:
        """Save the state, apply the guardrails' after-round checks, log the decision record."""
        plane, t, nodes, decision = self.plane, self.actuator.tally, passes.nodes, passes.decision
        if not plane.scaler_state.save(decision.state, seen.version):
            t.errors.append("the scaler state changed during the round (lease lost?); not saved")
        by_key = {o.key: o for o in self.offers}
        running = [n for n in nodes if n.state in (NodeState.PENDING, NodeState.ACTIVE, NodeState.DRAINING)]
        region = self.settings.region
        hourly_cost = sum(node_hourly_price(n, by_key.get(n.offer_key), region) for n in running) + sum(
            node_volume_price(n, by_key.get(n.offer_key), region) for n in nodes if n.state is NodeState.STOPPED
        )  # a stopped node's root volume is still billed
        after = guardrails.after_round(
            plane.guardrails, self.settings, seen.guard, nodes=nodes, offers=self.offers, demand=seen.demand,
            now=self.now, quotas=seen.extras["quotas"], preempted=seen.preempted,
            placement_scores=seen.extras["placement_scores"],
        )  # fmt: skip
        t.errors += after.errors
        round_seconds = time.perf_counter() - started
        record = DecisionRecord(
            round_id=self.round_id,
            at=self.now,
            trigger=self.trigger,
            passes=passes.count,
            smoothed_at=decision.smoothed_at,
            decision=passes.summaries[0],
            later_passes=tuple(passes.summaries[1:]),
            done=tuple(t.done),
            launch_failures=tuple(failure_dict(f) for f in t.launch_failures),
            errors=tuple(t.errors),
            left_for_next_round=tuple(describe_action(a) for a in passes.leftover),
            hourly_cost=round(hourly_cost, 4),
            decide_seconds=round(passes.decide_seconds, 6),
            round_seconds=round(round_seconds, 6),
        )
        plane.decisions.record(record.round_id, record.at, record.to_json())
        return RoundResult(
            round_id=self.round_id,
            trigger=self.trigger,
            ran=True,
            decision=decision,
            passes=passes.count,
            counts=t.counts,
            launch_failures=tuple(t.launch_failures),
            errors=tuple(t.errors),
            nodes=tuple(nodes),
            hourly_cost=hourly_cost,
            decide_seconds=passes.decide_seconds,
            round_seconds=round_seconds,
            spent=None if plane.guardrails is None else seen.guard.spent,
            guard=after.view,
        )


def _volumes_allowed(settings: ClusterSettings, unavailable: set[Offering]) -> ClusterSettings:
    """While the region's EBS storage quota refuses larger root volumes, nodes launch with the template's."""
    if LARGER_ROOT_VOLUMES in unavailable:
        return replace(settings, max_node_storage=settings.node_storage)
    return settings


@dataclass(frozen=True, slots=True, kw_only=True)
class _Observed:
    """What a round read before deciding."""

    state: ScalerState
    version: int
    smoothed_at: float | None
    demand: dict[Shape, DemandCount]
    queued_since: dict[Shape, float]
    empties_at: dict[str, float]
    guard: guardrails.Before
    zones: tuple[str, ...]
    preempted: Sequence[JobRecord]
    extras: dict[str, Any]  # quotas, placement scores, on-demand-only jobs (``_observed_extras``)
    unavailable: set[Offering]
    nodes: Sequence[NodeRecord]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Passes:
    """What the round's passes of decide → act ended with."""

    decision: Decision
    count: int
    summaries: list[PassSummary]
    leftover: tuple[Action, ...]
    nodes: Sequence[NodeRecord]
    decide_seconds: float


def _observed_extras(
    plane: ControlPlane,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    zones: Sequence[str],
    now: float,
    *,
    preempted: Sequence[JobRecord],
    shape_of: Mapping[DemandKey, Shape],
) -> dict[str, Any]:
    """What a round observes beyond demand and the fleet: quotas, Spot Placement Scores, jobs past their
    preemption budget. Each source says "unknown" (None / {}) rather than fail the round."""
    return {
        "quotas": plane.quotas.read(now) if plane.quotas is not None else None,
        "placement_scores": plane.placement.scores(offers, zones, now) if plane.placement is not None else {},
        "on_demand_only": preemption.past_budget(preempted, settings.max_preemptions, shape_of),
    }


def _last_smoothed_at(decisions: DecisionLog) -> float | None:
    for entry in decisions.recent(1):
        return DecisionRecord.from_json(entry).smoothed_at
    return None
