"""One scaling decision: what the fleet should become, from what was observed, and why.

``decide`` is pure: the round observes (demand, node records, EC2 instances, the capacity-failure
cache), calls it, and acts on the actions it returns. The steps:

1. Reconcile the records with EC2: adopt tagged instances that have no record, forget records whose
   instance is gone (their jobs go back to the queue), follow EC2 where it stopped or started a node.
2. Plan: demand for the engine is queued + running jobs per shape (running ones occupy nodes). An
   offer whose every instance type (in every usable zone) is in the capacity-failure cache cannot
   grow this round: it is capped at its live nodes and the engine re-plans, so its jobs go to the
   next-cheapest offer that fits. Each offer's root volume is first grown to what the demand needs to fill its
   nodes (``volumes``). Jobs displaced from unavailable *spot* offers go to on-demand only
   in the proportion ``preemptibleCompensation`` allows (Toil's knob); other spot offers take them freely.
3. ``policy.smooth`` (decay at most once per ``scale_interval``, so a storm of triggers cannot shrink
   the fleet faster than the schedule would), ``policy.compensate``, ``policy.clamp``.
4. Compare with the live nodes (PENDING/ACTIVE) per offer. To grow: un-drain draining on-demand nodes first,
   then start stopped warm-pool nodes, then launch. To shrink: drain idle, non-static nodes, most
   expensive first; never a busy one (fewer are drained if not enough are idle). Draining nodes that
   are confirmed idle are stopped (on-demand, while the warm pool is below its size) or terminated.

Applying the actions and deciding again with the same inputs yields no actions.

Modules: here ``decide`` and the target (steps 2-3); ``scaling_records`` step 1; ``scaling_fleet`` the types the
steps share (the fleet grouped by offer, the target, the capacity-failure cache); ``scaling_changes`` step 4.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from shared.domain import placement, policy, preemption, quotas
from shared.domain.budget import budget_drains, guard_spend
from shared.domain.decision import (
    Action,
    Decision,
    LaunchOption,
    Snapshot,
    Unavailable,
)
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer, build_offers, parse_node_types
from shared.domain.packing import Plan, plan
from shared.domain.policy import ScalerState, clamp, compensate, remaining_target, round_half_up, smooth
from shared.domain.scaling_changes import CONSOLIDATE_WITHIN, Changes
from shared.domain.scaling_fleet import ANY_ZONE, Blocked, Fleet, Target, launch_options, node_hourly_price
from shared.domain.scaling_records import (
    AGENT_BOOT_LIMIT,
    AGENT_SILENCE_LIMIT,
    LAUNCH_VISIBILITY_GRACE,
    adopted_record,
    reconcile_records,
)
from shared.domain.settings import ClusterSettings
from shared.domain.volumes import past_gp3_quota, sized_offers

__all__ = [
    "AGENT_BOOT_LIMIT",
    "AGENT_SILENCE_LIMIT",
    "ANY_ZONE",
    "CONSOLIDATE_WITHIN",
    "LAUNCH_VISIBILITY_GRACE",
    "adopted_record",
    "decide",
    "launch_options",
    "node_hourly_price",
    "offers_for",
]


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
    blocked = Blocked(unavailable, snapshot.zones)
    sized = sized_offers(
        offers,
        snapshot.demand,
        largest=settings.largest_node_storage,
        region=settings.region,
        homes={o.key for o in offers if blocked.options(o)},
    )
    actions: list[Action] = []
    records = reconcile_records(snapshot, now, actions)
    fleet = Fleet(records, snapshot.instances)
    target = _target(snapshot, settings, sized, state, fleet=fleet, blocked=blocked, now=now, smoothed_at=smoothed_at)
    wanted, spend_reasons = guard_spend(
        target.wanted, fleet.live, target.plan, target.offers, settings, spent=snapshot.spent, stopped=fleet.pool
    )  # maxHourlyCost and the budget
    past = past_gp3_quota(
        snapshot.quotas, settings.node_storage, records, target.offers, wanted, live=fleet.live_counts
    )
    if past is not None:  # the round again with the launch template's volumes
        again = decide(snapshot, replace(settings, max_node_storage=settings.node_storage), offers, state, unavailable,
                       now=now, smoothed_at=smoothed_at)  # fmt: skip
        return replace(again, reasons=(past, *again.reasons))
    target = replace(target, wanted=wanted, reasons=target.reasons + spend_reasons)
    changes = Changes(fleet, blocked, target, settings, actions)
    changes.empties_at = snapshot.empties_at
    changes.queued = any(c.queued for c in snapshot.demand.values())
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


def _target(
    snapshot: Snapshot,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    state: ScalerState,
    *,
    fleet: Fleet,
    blocked: Blocked,
    now: float,
    smoothed_at: float | None,
) -> Target:
    """Nodes wanted per offer key: plan → smooth → compensate → clamp, around unavailable offers."""
    reasons: list[str] = []
    live = fleet.live_counts
    options, unavailable_offers, capped = _availability(offers, blocked, live, reasons)
    options = placement.rank(options, snapshot.placement_scores, reasons)
    result, planning_offers, estimates = _estimate(
        snapshot, settings, offers, capped=capped, live=live, now=now, reasons=reasons
    )
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
    return Target(
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


def _availability(
    offers: Sequence[Offer], blocked: Blocked, live: Mapping[str, int], reasons: list[str]
) -> tuple[dict[str, tuple[LaunchOption, ...]], tuple[str, ...], dict[str, Offer]]:
    """Each offer's launch options, the offers with none left (every type in the capacity-failure cache), and
    those offers capped at their live nodes so the plan moves their jobs elsewhere."""
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
    return options, unavailable_offers, capped


def _estimate(
    snapshot: Snapshot,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    *,
    capped: Mapping[str, Offer],
    live: Mapping[str, int],
    now: float,
    reasons: list[str],
) -> tuple[Plan, list[Offer], dict[str, int]]:
    """The plan of what runs and waits (within the quotas), the offers it planned on, and its node counts."""
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
    return result, planning_offers, estimates


def _urgent(snapshot: Snapshot, settings: ClusterSettings, now: float, reasons: list[str]) -> dict[Shape, int]:
    """What the plan packs: queued jobs of each late shape with their wall time stretched by target / what is
    left of it (``policy.remaining_target``), so the plan gives them lanes that start them all within what is
    left for the longest-waiting one; shapes on time as they are; running jobs as ``policy.running_shape``
    (each in a lane of its own: they run side by side now, never one after another); any wall time past the target
    as just past it (``policy.past_target``)."""
    target = settings.target_time
    out: dict[Shape, int] = {}
    late = long = 0
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
        if planned.wall_time > target:
            planned = policy.past_target(planned, target)
            long += count.queued
        out[planned] = out.get(planned, 0) + count.queued
    if late:
        reasons.append(
            f"{late} queued jobs are of shapes whose oldest has waited beyond {policy.WAIT_GRACE_FRACTION:.0%} of the "
            "target time: planned as if longer, so that all start within what is left of it"
        )
    if long:
        reasons.append(
            f"{long} queued jobs run past the target time: planned as running just past it (each is the last of its "
            "lane however long it runs)"
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
