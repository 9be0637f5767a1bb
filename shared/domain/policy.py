"""The steps between a packing estimate and the node counts the scaler asks for.

Each step is a pure function of the previous state: it returns the new counts *and* the new state,
which the caller stores (in DynamoDB for the control plane). Nothing is remembered in memory.

- ``smooth``: Toil's ``betaInertia`` — an exponentially weighted moving average of estimates. Toil
  smooths in both directions, which makes scale-up timid (its users' first complaint). Shoal grows to
  the estimate at once and smooths only the way down, where acting early would throw work away.
- ``compensate``: Toil's ``preemptibleCompensation`` — when spot nodes asked for in the last round did
  not arrive, ask for that fraction of the shortfall as on-demand nodes able to run the same jobs.
- ``clamp``: per-offer ``minNodes``/``maxNodes`` hold whatever the steps before said.
- ``running_remaining``: running jobs are planned for what is left of them, not their whole runtime.
- ``remaining_target``: the target time is a promise to each job from when it was queued, not from now:
  jobs that already waited get only what is left of it, so a fleet that the estimates made too small
  grows before the promise is broken (expected runtimes are averages, and the first to be learned are
  the short ones).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from shared.domain.cluster_state import DemandCount
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import Resources


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalerState:
    """What one round leaves for the next: smoothed estimates and the spot shortfall per offer key."""

    smoothed: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    spot_deficit: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


SMOOTHED_FLOOR = 1e-3


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def smooth(estimates: Mapping[str, int], state: ScalerState, beta_inertia: float) -> tuple[dict[str, int], ScalerState]:
    """Grow at once, shrink by ``beta_inertia``-weighted steps."""
    counts: dict[str, int] = {}
    smoothed: dict[str, float] = {}
    for key, estimate in estimates.items():
        previous = state.smoothed.get(key)
        if previous is None or estimate >= previous:
            weighted = float(estimate)
        else:
            weighted = (1.0 - beta_inertia) * estimate + beta_inertia * previous
        # A decay toward zero never arrives and ends in numbers no store keeps (DynamoDB: 1e-130); far below
        # half a node it means nothing, so it becomes zero.
        smoothed[key] = 0.0 if weighted < SMOOTHED_FLOOR else round(weighted, 6)
        counts[key] = max(estimate, round_half_up(weighted))
    return counts, ScalerState(smoothed=MappingProxyType(smoothed), spot_deficit=state.spot_deficit)


def compensate(
    wanted: Mapping[str, int],
    offers: Sequence[Offer],
    spot_running: Mapping[str, int],
    state: ScalerState,
    factor: float,
) -> tuple[dict[str, int], ScalerState, list[str]]:
    """Add on-demand nodes for the spot nodes that were wanted last round but are not running.

    The on-demand stand-in is the same class on demand if offered, else the cheapest on-demand offer
    whose usable capacity covers the spot class's (so it can run whatever was packed for it).
    Returns the new counts, the new state (this round's spot deficit) and the reasons.
    """
    counts = dict(wanted)
    reasons: list[str] = []
    by_key = {o.key: o for o in offers}
    for spot_key, deficit in state.spot_deficit.items():
        spot = by_key.get(spot_key)
        extra = round_half_up(deficit * factor)
        if spot is None or extra <= 0:
            continue
        stand_in = _on_demand_stand_in(spot, offers)
        if stand_in is None:
            reasons.append(f"{deficit} spot {spot_key} missing, but no on-demand node type can stand in for it")
            continue
        counts[stand_in.key] = counts.get(stand_in.key, 0) + extra
        reasons.append(f"{deficit} spot {spot_key} missing → {extra} extra on-demand {stand_in.key} (×{factor:g})")
    shortfall = {o.key: max(0, wanted.get(o.key, 0) - spot_running.get(o.key, 0)) for o in offers if o.spot}
    return counts, ScalerState(smoothed=state.smoothed, spot_deficit=MappingProxyType(shortfall)), reasons


# The running jobs of a name are planned as still needing at least this share of their expected runtime.
RUNNING_FLOOR_FRACTION = 0.5


def running_remaining(expected: float, running: tuple[int, float]) -> float:
    """How long the running jobs of one name are expected to go on: their expected runtime less the mean time
    they have run so far (``running``: how many, seconds run in all), never below ``RUNNING_FLOOR_FRACTION`` of
    it. A plan that counts running jobs at their whole runtime (as Toil does) asks for nodes to run again
    what is half done, and overshoots most when a burst's jobs are all halfway through."""
    if running[0] <= 0:
        return expected
    return max(expected - running[1] / running[0], expected * RUNNING_FLOOR_FRACTION)


MIN_TARGET_FRACTION = 0.5  # a plan never aims tighter than this share of the target time
WAIT_GRACE_FRACTION = 0.67  # waits up to this share of the target time leave the plan's target alone


def remaining_target(target_time: float, waited: float) -> float:
    """What is left of ``target_time`` for a job that waited ``waited`` seconds (beyond a grace), in whole
    minutes (so that plans repeat and can be remembered), never below ``MIN_TARGET_FRACTION`` of it."""
    late = max(0.0, waited - target_time * WAIT_GRACE_FRACTION)
    left = max(target_time * MIN_TARGET_FRACTION, target_time - late)
    if left >= target_time:
        return target_time
    return max(target_time * MIN_TARGET_FRACTION, math.floor(left / 60.0) * 60.0)


def clamp(counts: Mapping[str, int], offers: Sequence[Offer]) -> tuple[dict[str, int], list[str]]:
    out: dict[str, int] = {}
    reasons: list[str] = []
    for offer in offers:
        want = counts.get(offer.key, 0)
        held = min(max(want, offer.min_nodes), offer.max_nodes)
        if held != want:
            bound = "minNodes" if held > want else "maxNodes"
            reasons.append(f"{offer.key}: {want} → {held} by {bound}")
        out[offer.key] = held
    return out, reasons


def _on_demand_stand_in(spot: Offer, offers: Sequence[Offer]) -> Offer | None:
    same = [o for o in offers if not o.spot and o.name == spot.name]
    if same:
        return same[0]
    bigger = [o for o in offers if not o.spot and spot.usable.fits_in(o.usable)]
    return min(bigger, key=lambda o: (o.hourly_price, o.key), default=None)


def queued_needs(demand: Mapping[Shape, DemandCount]) -> tuple[tuple[Resources, bool], ...]:
    """What each queued shape needs, and whether it may run on spot: the inputs of ``could_start_queued``."""
    return tuple(sorted({(shape.resources, shape.preemptible) for shape, count in demand.items() if count.queued > 0}))


def could_start_queued(offer: Offer, needs: Sequence[tuple[Resources, bool]]) -> bool:
    """Would an idle node of ``offer`` start one of the queued jobs? Then it is not surplus, whatever the
    estimate says this round: it would be drained now and launched again when the estimate moves back."""
    return any(_runs(offer, need, preemptible) for need, preemptible in needs)


def only_type_for_queued(offer: Offer, needs: Sequence[tuple[Resources, bool]], offers: Sequence[Offer]) -> bool:
    """Is ``offer`` the only node type that runs one of the queued jobs ``needs`` describes (``queued_needs``)?"""
    return any(
        _runs(offer, need, preemptible) and not any(o.key != offer.key and _runs(o, need, preemptible) for o in offers)
        for need, preemptible in needs
    )


def _runs(offer: Offer, need: Resources, preemptible: bool) -> bool:
    """Would a node of ``offer`` run a job needing ``need`` (spot nodes only preemptible ones)?"""
    return (preemptible or not offer.spot) and need.fits_in(offer.usable)


# Running jobs with at least this share of the target time left are each planned in a lane of their own.
OWN_LANE_FRACTION = 0.5


def running_shape(shape: Shape, target_time: float) -> Shape:
    """How the plan packs a running job of ``shape`` (its wall time: what is expected to be left of it).

    A lane runs its jobs one after another, each starting by the target time (``shared.domain.packing``), so two
    running jobs in one lane are planned as if one ran after the other, when both run now, on two nodes: 27
    one-hour jobs half done looked like 14 lanes' worth, and the fleet stopped growing with 12 jobs queued. A
    wall time past the target time keeps a job alone in its lane (queued jobs may still be planned into the lane's
    time before the target). Jobs with little left keep their time: they end before the queued ones need the room,
    and planning each alone would hold nodes for work that is nearly done. Past the target, every such job gets
    the same wall time (``past_target``).
    """
    if shape.wall_time < target_time * OWN_LANE_FRACTION:
        return shape
    return past_target(shape, target_time)


def past_target(shape: Shape, target_time: float) -> Shape:
    """``shape`` running just past the target time. A lane runs its jobs back to back, each starting by the target
    time, and the last may run as long as it likes (``shared.domain.packing``): a job past the target is always the
    last of its lane, so how far past changes nothing in the plan, and one wall time for all of them makes fewer
    distinct shapes and cheaper plans (on the RICC week's first 3,000 jobs: 0.85× the CPU for running jobs alone,
    farm-bench median of 3; 9.1 → 7.1 s with queued ones too, one run; the same report to the cent)."""
    return replace(shape, wall_time=math.floor(target_time) + 1.0)
