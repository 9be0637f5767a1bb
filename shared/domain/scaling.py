"""One scaling decision: what the fleet should become, from what was observed, and why.

``decide`` is pure: the round observes (demand, node records, EC2 instances, the capacity-failure
cache), calls it, and acts on the actions it returns. The steps:

1. Reconcile the records with EC2: adopt tagged instances that have no record, forget records whose
   instance is gone (their jobs go back to the queue), follow EC2 where it stopped or started a node.
2. Plan: demand for the engine is queued + running jobs per shape (running ones occupy nodes). An
   offer whose every instance type (in every usable zone) is in the capacity-failure cache cannot
   grow this round: it is capped at its live nodes and the engine re-plans, so its jobs go to the
   next-cheapest offer that fits. Jobs displaced from unavailable *spot* offers go to on-demand only
   in the proportion ``preemptibleCompensation`` allows (Toil's knob); other spot offers take them freely.
3. ``policy.smooth`` (decay at most once per ``scale_interval``, so a storm of triggers cannot shrink
   the fleet faster than the schedule would), ``policy.compensate``, ``policy.clamp``.
4. Compare with the live nodes (PENDING/ACTIVE) per offer. To grow: un-drain draining on-demand nodes first,
   then start stopped warm-pool nodes, then launch. To shrink: drain idle, non-static nodes, most
   expensive first; never a busy one (fewer are drained if not enough are idle). Draining nodes that
   are confirmed idle are stopped (on-demand, while the warm pool is below its size) or terminated.

Applying the actions and deciding again with the same inputs yields no actions.

One module for now (over 400 lines): ``decide``'s steps share the private ``_Fleet``, ``_Target`` and
``_Changes`` state; splitting target from changes needs those types in a module of their own first (issue 11).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from shared.domain import placement, policy, preemption, quotas
from shared.domain.budget import budget_drains, guard_spend
from shared.domain.catalog import UnknownInstanceTypeError, UnknownRegionError, instance_type
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import (
    Action,
    Adopt,
    Decision,
    Drain,
    Evict,
    Forget,
    Instance,
    InstanceState,
    Launch,
    LaunchOption,
    SetState,
    Snapshot,
    StartStopped,
    Stop,
    Terminate,
    Unavailable,
    Undrain,
)
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer, build_offers, parse_node_types
from shared.domain.packing import Plan, plan
from shared.domain.policy import ScalerState, clamp, compensate, remaining_target, round_half_up, smooth
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings

ANY_ZONE = "*"  # a capacity failure recorded without a zone (the launch template chose it) blocks every zone
LAUNCH_VISIBILITY_GRACE = (
    300.0  # seconds a launched instance may be missing from DescribeInstances (eventual consistency)
)
# An agent heartbeats every 30 s (shared/worker): twenty silent intervals mean it is dead, not slow. A new
# node boots, pulls the appliance image and reports within minutes; twenty minutes means it never will.
AGENT_SILENCE_LIMIT = 600.0
AGENT_BOOT_LIMIT = 1200.0
# A surplus node still running jobs is drained when they are expected to end within this (and kept otherwise):
# short enough that its capacity is not missed, long enough to catch the jobs that keep a node alive.
CONSOLIDATE_WITHIN = 600.0

_LIVE = (NodeState.PENDING, NodeState.ACTIVE)
_REPORTING = (NodeState.ACTIVE, NodeState.DRAINING, NodeState.INTERRUPTED)  # silence means a dead agent
_LEAVING = (InstanceState.STOPPING, InstanceState.SHUTTING_DOWN)


# ---- the decision ------------------------------------------------------------------------------


def decide(
    snapshot: Snapshot,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    state: ScalerState,
    unavailable: Collection[Unavailable],
    *,
    now: float,
    smoothed_at: float | None = None,
) -> Decision:
    """The actions that move the observed fleet toward the cheapest fleet for the observed demand.

    ``smoothed_at`` is when the smoothed estimates in ``state`` last decayed (the previous decision's
    ``smoothed_at``); None decays now.
    """
    actions: list[Action] = []
    fleet = _Fleet(_reconcile_records(snapshot, now, actions), snapshot.instances)
    blocked = _Blocked(unavailable, snapshot.zones)
    target = _target(snapshot, settings, offers, state, fleet=fleet, blocked=blocked, now=now, smoothed_at=smoothed_at)
    wanted, spend_reasons = guard_spend(
        target.wanted, fleet.live, target.plan, target.offers, settings, spent=snapshot.spent
    )  # maxHourlyCost and the budget
    target = replace(target, wanted=wanted, reasons=target.reasons + spend_reasons)
    changes = _Changes(fleet, blocked, target, settings, actions)
    # Consolidate only with nothing queued: a queued job would rather start on a busy node than wait for a new one.
    if not any(c.queued for c in snapshot.demand.values()):
        changes.empties_at = snapshot.empties_at
    changes.now = now
    changes.waiting = policy.queued_needs(snapshot.demand)
    for key in sorted(set(target.wanted) | set(fleet.live) | set(fleet.draining)):
        changes.resize(key)
    actions.extend(budget_drains(fleet.live, actions, settings, spent=snapshot.spent))
    changes.retire(now)
    return Decision(
        actions=tuple(actions),
        estimates=MappingProxyType(target.estimates),
        wanted=MappingProxyType(target.wanted),
        live=MappingProxyType(fleet.live_counts),
        unavailable_offers=target.unavailable_offers,
        plan=target.plan,
        reasons=tuple(target.reasons + changes.reasons),
        state=target.state,
        smoothed_at=target.smoothed_at,
        queued_jobs=sum(c.queued for c in snapshot.demand.values()),
        running_jobs=sum(c.running for c in snapshot.demand.values()),
    )


class _Fleet:
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
class _Target:
    offers: Mapping[str, Offer]
    options: Mapping[str, tuple[LaunchOption, ...]]
    unavailable_offers: tuple[str, ...]
    plan: Plan
    estimates: dict[str, int]
    wanted: dict[str, int]
    state: ScalerState
    smoothed_at: float | None
    reasons: list[str]


def _target(
    snapshot: Snapshot,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    state: ScalerState,
    *,
    fleet: _Fleet,
    blocked: _Blocked,
    now: float,
    smoothed_at: float | None,
) -> _Target:
    """Nodes wanted per offer key: plan → smooth → compensate → clamp, around unavailable offers."""
    reasons: list[str] = []
    live = fleet.live_counts
    options = {o.key: blocked.options(o) for o in offers}
    unavailable_offers = tuple(o.key for o in offers if not options[o.key])
    capped = {
        o.key: replace(
            o, min_nodes=min(o.min_nodes, live.get(o.key, 0)), max_nodes=min(o.max_nodes, live.get(o.key, 0))
        )
        for o in offers
        if not options[o.key]
    }
    reasons.extend(
        f"{key}: every instance type is in the capacity-failure cache; held at its {live.get(key, 0)} live nodes "
        "and its jobs re-planned onto the next-cheapest offer that fits"
        for key in unavailable_offers
    )

    options = placement.rank(options, snapshot.placement_scores, reasons)
    observed = preemption.demote(snapshot.demand, snapshot.on_demand_only, settings.max_preemptions, reasons)
    planning_offers = [capped.get(o.key, o) for o in offers]
    if observed is not snapshot.demand:
        snapshot = replace(snapshot, demand=observed)
    demand = _urgent(snapshot, settings, now, reasons)
    target_time = settings.target_time
    result, planning_offers = quotas.plan_within(
        demand,
        planning_offers,
        snapshot.quotas,
        live=live,
        plan_fn=lambda d, o: _plan(d, o, target_time=target_time),
        reasons=reasons,
    )
    estimates = result.node_counts()
    if any(o.spot for o in offers if o.key in capped):
        estimates = _limit_on_demand_stand_ins(
            demand, offers, capped, estimates, target_time=target_time, settings=settings, reasons=reasons
        )
    reasons.extend(result.reasons)
    reasons.extend(f"{u.count} jobs cannot run: {u.reason}" for u in result.unplaceable)
    reasons.extend(f"{u.count} jobs wait: {u.reason}" for u in result.deferred)

    advance = smoothed_at is None or now - smoothed_at >= settings.scale_interval
    counts, new_state = _smooth(estimates, state, settings.beta_inertia, advance=advance)
    for key in unavailable_offers:  # smoothing must not ask an unavailable offer for more than it has
        counts[key] = min(counts.get(key, 0), live.get(key, 0))
    reasons.extend(
        f"{key}: {estimates.get(key, 0)} estimated, {count} kept by betaInertia smoothing"
        for key, count in counts.items()
        if count > estimates.get(key, 0)
    )
    # Clamp before compensating too: spot wanted beyond maxNodes is a limit, not missing capacity.
    counts, bounds = clamp(counts, planning_offers)
    spot_live = {o.key: live.get(o.key, 0) for o in offers if o.spot}
    counts, new_state, compensation = compensate(
        counts, offers, spot_live, new_state, settings.preemptible_compensation
    )
    reasons.extend(compensation)
    wanted, more_bounds = clamp(counts, planning_offers)
    reasons.extend(dict.fromkeys(bounds + more_bounds))
    return _Target(
        offers={o.key: o for o in offers},
        options=options,
        unavailable_offers=unavailable_offers,
        plan=result,
        estimates=estimates,
        wanted=wanted,
        state=new_state,
        smoothed_at=now if advance else smoothed_at,
        reasons=reasons,
    )


def _reconcile_records(snapshot: Snapshot, now: float, actions: list[Action]) -> list[NodeRecord]:
    """The nodes as they are, records and EC2 merged; adds the actions that make the records agree."""
    present = [i for i in snapshot.instances if i.state is not InstanceState.SHUTTING_DOWN]
    instances = {i.instance_id: i for i in present}
    records = {n.instance_id: n for n in snapshot.nodes}
    adopted = [i for i in present if i.instance_id not in records]
    # Stopping or shutting down: EC2 is ending it, but its jobs' processes may still run (their agent
    # evacuates them). Such a node takes no work; its jobs go back once it is stopped or gone, or silent.
    leaving = {i.instance_id for i in snapshot.instances if i.state in _LEAVING}
    gone: list[NodeRecord] = []
    stopped: list[NodeRecord] = []
    started: list[NodeRecord] = []
    silent: list[NodeRecord] = []
    interrupted: list[NodeRecord] = []
    nodes: list[NodeRecord] = []
    for record in snapshot.nodes:
        instance = instances.get(record.instance_id)
        if record.instance_id in leaving and not _agent_is_dead(record, now):
            ending = record.state not in (NodeState.INTERRUPTED, NodeState.STOPPED, NodeState.GONE)
            if ending:
                interrupted.append(record)
            nodes.append(replace(record, state=NodeState.INTERRUPTED) if ending else record)
        elif record.state is NodeState.GONE or instance is None:
            if (
                instance is None
                and record.state is NodeState.PENDING
                and now - record.launched_at < LAUNCH_VISIBILITY_GRACE
            ):
                nodes.append(record)  # launched moments ago: DescribeInstances may not show it yet
            else:
                gone.append(record)
        elif (
            not instance.running
            and record.state is not NodeState.STOPPED
            and (record.busy or record.state is not NodeState.INTERRUPTED)
        ):
            stopped.append(record)
            nodes.append(replace(record, state=NodeState.STOPPED, running_jobs=MappingProxyType({})))
        elif instance.running and record.state is NodeState.STOPPED:
            started.append(record)
            nodes.append(replace(record, state=NodeState.PENDING))
        elif instance.running and _agent_is_dead(record, now):
            silent.append(record)
            if record.static:  # kept (never scaled in), but its jobs must not wait for it
                nodes.append(replace(record, running_jobs=MappingProxyType({})))
        else:
            nodes.append(record)
    for instance in adopted:
        nodes.append(adopted_record(instance))
    if adopted:
        actions.append(
            Adopt(
                instances=tuple(adopted),
                reason=f"{len(adopted)} cluster instances on EC2 have no node record (a round ended before recording)",
            )
        )
    if gone:
        actions.append(
            Forget(
                nodes=tuple(gone),
                reason=f"{len(gone)} nodes are gone from EC2; their running jobs go back to the queue",
            )
        )
    if silent:
        actions.append(
            Evict(
                nodes=tuple(silent),
                reason=f"{len(silent)} nodes run on EC2 but their agents are silent (no heartbeat for "
                f"{AGENT_SILENCE_LIMIT:.0f} s, or none {AGENT_BOOT_LIMIT:.0f} s after launch): their jobs go back "
                "to the queue and the nodes are replaced (static ones are kept)",
            )
        )
    if stopped:
        actions.append(SetState(nodes=tuple(stopped), state=NodeState.STOPPED, reason="EC2 shows these nodes stopped"))
    if started:
        actions.append(
            SetState(nodes=tuple(started), state=NodeState.PENDING, reason="EC2 shows these nodes running again")
        )
    if interrupted:
        actions.append(
            SetState(
                nodes=tuple(interrupted),
                state=NodeState.INTERRUPTED,
                reason="EC2 is stopping or terminating these nodes: no new work; their jobs go back once they are gone",
            )
        )
    return nodes


def _agent_is_dead(record: NodeRecord, now: float) -> bool:
    """A running node whose agent stopped reporting (or never started) cannot run or finish jobs."""
    if record.state in _REPORTING and record.heartbeat_at is not None:
        dead = now - record.heartbeat_at > AGENT_SILENCE_LIMIT
    elif record.state is NodeState.PENDING and record.heartbeat_at is None:
        dead = now - record.launched_at > AGENT_BOOT_LIMIT
    else:
        return False
    # A silent static node is only worth acting on while jobs wait on it; acting empties it, so once is enough.
    return dead and (record.busy or not record.static)


def _urgent(snapshot: Snapshot, settings: ClusterSettings, now: float, reasons: list[str]) -> dict[Shape, int]:
    """What the plan packs: queued jobs of each late shape with their wall time stretched by target / what is
    left of it (``policy.remaining_target``), so the plan gives them lanes that start them all within what is
    left for the longest-waiting one; shapes on time as they are; running jobs as ``policy.running_shape``
    (each in a lane of its own: they run side by side now, never one after another)."""
    target = settings.target_time
    out: dict[Shape, int] = {}
    late = 0
    for shape, count in snapshot.demand.items():
        if count.running > 0:
            running = policy.running_shape(shape, target)
            out[running] = out.get(running, 0) + count.running
        if count.queued <= 0:
            continue
        since = snapshot.queued_since.get(shape)
        left = target if since is None else remaining_target(target, now - since)
        planned = shape
        if left < target and left > 0:
            planned = replace(shape, wall_time=shape.wall_time * target / left)
            late += count.queued
        out[planned] = out.get(planned, 0) + count.queued
    if late:
        reasons.append(
            f"{late} queued jobs are of shapes whose oldest has waited beyond {policy.WAIT_GRACE_FRACTION:.0%} of the "
            "target time: planned as if longer, so that all start within what is left of it"
        )
    return out


def _plan(demand: Mapping[Shape, int], offers: Sequence[Offer], *, target_time: float) -> Plan:
    """``packing.plan``, remembered: demand (queued + running per shape) changes only when jobs arrive or
    end, so most rounds (and every round's pass after acting) plan what an earlier one already planned."""
    return _remembered_plan(tuple(sorted(demand.items())), tuple(offers), target_time)


@functools.lru_cache(maxsize=64)
def _remembered_plan(demand: tuple[tuple[Shape, int], ...], offers: tuple[Offer, ...], target_time: float) -> Plan:
    return plan(dict(demand), offers, target_time=target_time)


def offers_for(settings: ClusterSettings, spot_prices: Mapping[str, float] | None = None) -> list[Offer]:
    """The offers a cluster's settings allow, priced in its region (live spot prices where known)."""
    return build_offers(
        parse_node_types(settings.node_types),
        region=settings.region,
        node_storage=settings.node_storage,
        min_nodes=settings.min_nodes,
        max_nodes=settings.max_nodes,
        spot_prices=spot_prices,
    )


def adopted_record(instance: Instance) -> NodeRecord:
    """The node record for a cluster instance found on EC2 without one."""
    if instance.offer_key:
        offer_key = instance.offer_key
    else:
        offer_key = f"{instance.instance_type}:spot" if instance.market is Market.SPOT else instance.instance_type
    return NodeRecord(
        instance_id=instance.instance_id,
        offer_key=offer_key,
        instance_type=instance.instance_type,
        market=instance.market,
        state=NodeState.PENDING if instance.running else NodeState.STOPPED,
        zone=instance.zone,
        static=instance.static,
        launched_at=instance.launched_at,
    )


def launch_options(
    offer: Offer, unavailable: Collection[Unavailable], zones: Sequence[str] = ()
) -> tuple[LaunchOption, ...]:
    """Where ``offer`` may be launched now, in the order to try: cheapest type first, then the zones in order."""
    return _Blocked(unavailable, tuple(zones)).options(offer)


class _Blocked:
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


def _limit_on_demand_stand_ins(
    demand: Mapping[Shape, int],
    offers: Sequence[Offer],
    capped: Mapping[str, Offer],
    estimates: dict[str, int],
    *,
    target_time: float,
    settings: ClusterSettings,
    reasons: list[str],
) -> dict[str, int]:
    """On-demand nodes standing in for unavailable spot offers, scaled by ``preemptibleCompensation``.

    ``estimates`` come from the plan with every unavailable offer capped; the baseline caps only the
    unavailable on-demand offers, as if spot capacity were there. The difference on each on-demand
    offer is what the missing spot capacity pushed onto on-demand nodes.
    """
    baseline_offers = [capped[o.key] if o.key in capped and not o.spot else o for o in offers]
    baseline = _plan(demand, baseline_offers, target_time=target_time).node_counts()
    factor = settings.preemptible_compensation
    out = dict(estimates)
    for offer in offers:
        if offer.spot:
            continue
        extra = estimates.get(offer.key, 0) - baseline.get(offer.key, 0)
        if extra <= 0:
            out[offer.key] = max(estimates.get(offer.key, 0), baseline.get(offer.key, 0))
            continue
        kept = round_half_up(extra * factor)
        out[offer.key] = baseline.get(offer.key, 0) + kept
        reasons.append(
            f"{offer.key}: {extra} on-demand nodes would stand in for unavailable spot capacity; "
            f"preemptibleCompensation {factor:g} keeps {kept}"
        )
    return out


def _smooth(
    estimates: Mapping[str, int], state: ScalerState, beta_inertia: float, *, advance: bool
) -> tuple[dict[str, int], ScalerState]:
    """``policy.smooth``, except that between two decay steps the smoothed values only grow."""
    if advance:
        return smooth(estimates, state, beta_inertia)
    counts: dict[str, int] = {}
    smoothed: dict[str, float] = {}
    for key, estimate in estimates.items():
        previous = state.smoothed.get(key)
        if previous is None or estimate >= previous:
            smoothed[key], counts[key] = float(estimate), estimate
        else:
            smoothed[key], counts[key] = previous, max(estimate, round_half_up(previous))
    return counts, ScalerState(smoothed=MappingProxyType(smoothed), spot_deficit=state.spot_deficit)


class _Changes:
    """Turns wanted counts into actions, remembering what this decision already reuses."""

    def __init__(
        self, fleet: _Fleet, blocked: _Blocked, target: _Target, settings: ClusterSettings, actions: list[Action]
    ) -> None:
        self.fleet, self.blocked, self.target, self.settings, self.actions = fleet, blocked, target, settings, actions
        self.reasons: list[str] = []
        self.starting: set[str] = set()
        self.undrained: set[str] = set()
        self.empties_at: Mapping[str, float] = {}
        self.now = 0.0
        self.waiting: Sequence[tuple[Resources, bool]] = ()  # what queued jobs need (and may they run on spot)

    def resize(self, key: str) -> None:
        offer = self.target.offers.get(key)
        want = self.target.wanted.get(key, 0)
        have = self.fleet.live.get(key, [])
        if want > len(have) and offer is not None:
            self._grow(offer, want, have)
        elif want < len(have):
            self._shrink(key, offer, want, have)

    def _grow(self, offer: Offer, want: int, have: Sequence[NodeRecord]) -> None:
        need = want - len(have)
        market = Market.SPOT if offer.spot else Market.ON_DEMAND
        # Busy draining nodes first: they are surely up and already paid for. Spot nodes stay drained: a
        # spot node may be draining because EC2 recommended rebalancing it, which its record cannot tell.
        back = sorted(
            (n for n in self.fleet.draining.get(offer.key, []) if n.market is Market.ON_DEMAND),
            key=lambda n: (not n.busy, n.instance_id),
        )[:need]
        if back:
            ids = tuple(n.instance_id for n in back)
            self.undrained.update(ids)
            need -= len(ids)
            self.actions.append(
                Undrain(
                    offer_key=offer.key,
                    instance_ids=ids,
                    reason=f"{offer.key}: want {want}, have {len(have)}; {len(ids)} draining nodes are wanted again",
                )
            )
        warm = sorted(
            (
                n
                for n in self.fleet.pool
                if n.offer_key == offer.key
                and self.fleet.ec2_state.get(n.instance_id) is InstanceState.STOPPED
                and not self.blocked.blocks(n.instance_type, n.zone, market)
            ),
            key=lambda n: n.instance_id,
        )[:need]
        if warm:
            ids = tuple(n.instance_id for n in warm)
            self.starting.update(ids)
            need -= len(ids)
            self.actions.append(
                StartStopped(
                    offer_key=offer.key,
                    instance_ids=ids,
                    reason=f"{offer.key}: {len(ids)} stopped warm-pool nodes start faster than new ones launch",
                )
            )
        options = self.target.options.get(offer.key, ())
        if need and options:
            reused = want - len(have) - need
            self.actions.append(
                Launch(
                    offer_key=offer.key,
                    count=need,
                    market=market,
                    bid=offer.bid,
                    options=options,
                    reason=f"{offer.key}: want {want}, have {len(have)} live"
                    + (f", {reused} reused" if reused else "")
                    + f"; launch {need} at ${offer.hourly_price:.4f}/h each",
                )
            )

    def _shrink(self, key: str, offer: Offer | None, want: int, have: Sequence[NodeRecord]) -> None:
        surplus = len(have) - want
        idle = [n for n in have if not n.static and not n.busy]
        if offer is not None and policy.could_start_queued(offer, self.waiting):
            # A queued job would start on it now (or once it has booted): draining it only to launch again
            # when the estimate moves back is the churn a burst of learned runtimes causes.
            if idle:
                self.reasons.append(f"{key}: {len(idle)} idle nodes kept: queued jobs fit them")
            idle = []
        # Most expensive first; on a tie the newest (least likely to hold warm caches).
        idle.sort(key=lambda n: (-node_hourly_price(n, offer, self.settings.region), -n.launched_at, n.instance_id))
        chosen = idle[:surplus]
        why = "no longer offered" if offer is None else f"want {want}, have {len(have)} live"
        if chosen:
            self.actions.append(
                Drain(
                    offer_key=key,
                    instance_ids=tuple(n.instance_id for n in chosen),
                    reason=f"{key}: {why}; drain {len(chosen)} idle nodes, most expensive first",
                )
            )
        stragglers = self._stragglers(have, offer, surplus - len(chosen))
        if stragglers:
            self.actions.append(
                Drain(
                    offer_key=key,
                    instance_ids=tuple(n.instance_id for n in stragglers),
                    reason=f"{key}: {why}; drain {len(stragglers)} busy nodes whose jobs are expected to end within "
                    f"{CONSOLIDATE_WITHIN:.0f} s: they take no new work, finish what they run and leave",
                )
            )
        kept = surplus - len(chosen) - len(stragglers)
        if kept > 0:
            self.reasons.append(f"{key}: {kept} surplus nodes keep running: they are busy or static")

    def _stragglers(self, have: Sequence[NodeRecord], offer: Offer | None, count: int) -> list[NodeRecord]:
        """Busy surplus nodes to drain (consolidate) while nothing is queued: the jobs left on them end soon by
        their expected runtimes, so new work goes to the nodes that stay and these empty instead of being
        kept by a trickle of new jobs. Nothing is moved or killed: a drained node runs its jobs to their end."""
        if count <= 0 or not self.empties_at:
            return []
        soon = [
            n
            for n in have
            if n.busy and not n.static and self.empties_at.get(n.instance_id, math.inf) - self.now <= CONSOLIDATE_WITHIN
        ]
        price = {n.instance_id: node_hourly_price(n, offer, self.settings.region) for n in soon}
        soon.sort(key=lambda n: (-price[n.instance_id], self.empties_at[n.instance_id], n.instance_id))
        return soon[:count]

    def retire(self, now: float) -> None:
        """Draining nodes that are idle leave: into the warm pool while it has room, else terminated."""
        offers, region, size = self.target.offers, self.settings.region, self.settings.warm_pool_size
        done = [
            n
            for group in self.fleet.draining.values()
            for n in group
            if n.instance_id not in self.undrained and not n.static and _confirmed_idle(n)
        ]
        kept_pool = [n for n in self.fleet.pool if n.instance_id not in self.starting and not n.static]
        unusable = [n for n in kept_pool if n.offer_key not in offers and not n.busy]
        kept_pool = [n for n in kept_pool if n.offer_key in offers]
        room = size - len(kept_pool)
        # Only on-demand nodes can be stopped (a one-time spot instance cannot); the cheapest are kept warm.
        stoppable = sorted(
            (n for n in done if n.market is Market.ON_DEMAND and n.offer_key in offers),
            key=lambda n: (node_hourly_price(n, offers.get(n.offer_key), region), n.instance_id),
        )
        to_stop = stoppable[: max(0, room)]
        stop_ids = {n.instance_id for n in to_stop}
        to_terminate = [n for n in done if n.instance_id not in stop_ids]
        if to_stop:
            self.actions.append(
                Stop(
                    instance_ids=tuple(n.instance_id for n in to_stop),
                    reason=f"{len(to_stop)} drained idle nodes join the warm pool ({len(kept_pool)} of {size} stopped)",
                )
            )
        if to_terminate:
            self.actions.append(
                Terminate(
                    instance_ids=tuple(n.instance_id for n in to_terminate),
                    reason=f"{len(to_terminate)} drained nodes are idle"
                    + (" and the warm pool is full" if size else ""),
                )
            )
        excess = sorted(
            (n for n in kept_pool if not n.busy),
            key=lambda n: (-node_hourly_price(n, offers.get(n.offer_key), region), n.instance_id),
        )
        retired = [*unusable, *excess[: max(0, -room)]]
        if retired:
            self.actions.append(
                Terminate(
                    instance_ids=tuple(n.instance_id for n in retired),
                    reason=f"warm pool above its size {size}, or holding node types no longer offered",
                )
            )


def _confirmed_idle(node: NodeRecord) -> bool:
    """No jobs, as reported by an agent that already knew of the drain.

    Only such a report counts. An agent that knows starts nothing more (it learns under the same lock that
    guards its starts), so its empty report stays true. A report merely *timed* after the drain is not
    enough: a round stamps the drain with the time it started, and a report written before the drain
    may carry a later time and miss jobs started since (a busy node was terminated that way). A draining
    node whose agent never reports is left to the dead-agent rule, which returns its jobs first.
    """
    return node.drain_acknowledged and not node.busy


def node_hourly_price(node: NodeRecord, offer: Offer | None, region: str) -> float:
    """What ``node`` costs an hour: its offer's price for spot, its instance type's on-demand price otherwise."""
    if offer is not None and (offer.spot or node.instance_type not in offer.instance_types):
        return offer.hourly_price
    try:
        return instance_type(node.instance_type).price(region)
    except (UnknownInstanceTypeError, UnknownRegionError):
        return offer.hourly_price if offer is not None else 0.0
