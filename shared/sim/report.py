"""The report of a simulated run: waits, cost, node-hours, and the lower bound it is measured against."""

from __future__ import annotations

import math
from collections.abc import Sequence

from shared.domain.catalog import instance_type, root_volume_price
from shared.domain.cluster_state import NodeState
from shared.domain.node_types import Offer
from shared.domain.resources import RESOURCE_NAMES, Resources
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB
from shared.sim.state import SimState
from shared.sim.trace import TraceJob


def build_report(sim: SimState, elapsed: float) -> dict[str, object]:
    """Every key of ``shoal simulate --json`` but ``cpu_seconds``, for a finished run."""
    waits = sorted(j.wait for j in sim.jobs if j.done)
    lower_by = lower_bound_by([j.trace for j in sim.jobs], sim.offers, sim.settings)
    lower = sum(lower_by.values())
    lost = sum(1 for j in sim.jobs if not j.done)
    return {
        "jobs": len(sim.jobs),
        "completed": sim.completed,
        "lost": lost,
        "run_twice": sim.run_twice,
        "killed_by_scale_in": sim.killed_by_scale_in,
        "requeued": sim.requeued,
        "wait_p50_seconds": round(percentile(waits, 0.50), 3),
        "wait_p95_seconds": round(percentile(waits, 0.95), 3),
        "wait_max_seconds": round(waits[-1] if waits else 0.0, 3),
        "node_hours": {k: round(v / 3600, 4) for k, v in sorted(sim.node_seconds.items())},
        "idle_node_hours": round(sim.idle_seconds / 3600, 4),
        "cost": round(sim.cost, 4),
        "lower_bound_cost": round(lower, 4),
        "cost_over_lower_bound": round(sim.cost / lower, 4) if lower > 0 else None,
        "peak_nodes": sim.peak_nodes,
        "decisions": sim.rounds,
        "simulated_seconds": round(sim.now, 3),
        "elapsed_seconds": round(elapsed, 3),
        "peak_volume_gib": round(sim.peak_volume_storage / GiB),  # after the keys, which keep their order
        "nodes_at_end": sum(1 for n in sim.nodes.values() if n.state is not NodeState.STOPPED),
        "decide_calls": sim.decide_calls,
        "target_time_seconds": sim.settings.target_time,
        "declared_runtimes": sim.options.declared_runtimes,
        "preemptions": sim.preemptions,
        "most_preemptions_of_a_job": max((j.preemptions for j in sim.jobs), default=0),
        "quota_refusals": sim.quota_refusals,
        "waste": {key: round(dollars, 2) for key, dollars in sim.waste.items()},
        "lower_bound_by": {key: round(dollars, 4) for key, dollars in lower_by.items()},
    }


def lower_bound_cost(trace: Sequence[TraceJob], offers: Sequence[Offer], settings: ClusterSettings) -> float:
    """Each job's wall time × the cheapest admissible offer's hourly price × the largest share of that node's
    raw capacity (vCPUs, memory, disk, GPUs) the job needs, summed over jobs. Jobs no offer admits add 0. Where
    a round may grow the root volume (``shared.domain.volumes``), the node's disk and price are those of the
    volume, from ``node_storage`` to ``max_node_storage``, that makes the job's part the least."""
    return sum(lower_bound_by(trace, offers, settings).values())


def lower_bound_by(trace: Sequence[TraceJob], offers: Sequence[Offer], settings: ClusterSettings) -> dict[str, float]:
    """``lower_bound_cost`` split by the resource each job takes the largest share of (ties to the first of
    ``RESOURCE_NAMES``): what would have to grow on the nodes, or shrink in the jobs, for the bound to fall."""
    by_price = sorted(offers, key=lambda o: (o.hourly_price, o.key))
    per_shape: dict[tuple[Resources, bool], tuple[float, str]] = {}
    total = dict.fromkeys(RESOURCE_NAMES, 0.0)
    for item in trace:
        shape = item.job.shape
        key = (shape.resources, shape.preemptible)
        rate = per_shape.get(key)
        if rate is None:
            rate = (0.0, RESOURCE_NAMES[0])
            for offer in by_price:
                if (shape.preemptible or not offer.spot) and shape.resources.fits_in(offer.usable):
                    rate = _job_rate(shape.resources, offer, settings)
                    break
            per_shape[key] = rate
        total[rate[1]] += rate[0] * shape.wall_time / 3600
    return total


def _job_rate(wants: Resources, offer: Offer, settings: ClusterSettings) -> tuple[float, str]:
    """$/h of ``wants``' share of a node of ``offer`` at its cheapest root volume, and the resource that sets it."""
    kind = instance_type(offer.instance_types[0])
    instance = offer.hourly_price - offer.volume_price

    def at(volume: int) -> tuple[float, str]:
        raw = Resources(cores=float(kind.vcpus), memory=kind.memory, disk=kind.instance_storage or volume,
                        accelerators=kind.gpus)  # fmt: skip
        price = instance + (0.0 if kind.instance_storage else root_volume_price(volume, settings.region))
        return price * min(1.0, wants.share_of(raw)), wants.scarcest_in(raw)

    volumes = {settings.node_storage}
    if not kind.instance_storage and wants.disk > 0:
        # The part falls while the disk's share is the largest, then rises with the volume's price: the least is
        # where the disk's share meets the next largest, at whole GiB either side of it.
        other = wants.share_of(Resources(cores=float(kind.vcpus), memory=kind.memory, disk=1 << 62,
                                         accelerators=kind.gpus))  # fmt: skip
        if other > 0:
            meet = wants.disk / other / GiB
            volumes |= {
                min(settings.largest_node_storage, max(settings.node_storage, gib * GiB))
                for gib in (math.floor(meet), math.ceil(meet))
            }
    return min(at(volume) for volume in sorted(volumes))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(values)))
    return float(values[min(rank, len(values)) - 1])
