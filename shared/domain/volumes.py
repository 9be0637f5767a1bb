"""Root volumes sized from the queue, so that disk is not what fills a node first.

Jobs keep their files on the node's EBS root volume (``catalog``), one size for the cluster in Toil
(``--nodeStorage``, 50 GiB by default). Jobs that each ask 10 GiB then fill a 16-core node at four,
whatever their cores: on nf-chipseq that is most of the bill. A volume costs little beside its
instance ($0.08 per GiB-month, $0.019/h for 170 GiB beside a c5.4xlarge's $0.68/h), so each round
offers every node type with the volume its queued and running jobs need to fill it by cores,
memory and accelerators: for each shape that fits, as many of its jobs as one node holds (at most
as many as there are) times its disk. The cluster's ``node_storage`` is the smallest volume,
``max_node_storage`` the largest. A launch names the size (``Launch.node_storage``) and the launcher
asks EC2 for it; an agent sees its disk as the filesystem's free space, so it admits what the
volume holds. Instance-store types keep their own disks, and so does a node type with a ``maxNodes``: there the user
has sized the fleet by hand, and on ``shoal demo``'s capped cluster grown volumes made its p95 wait 32.0 min against
27.0 (docs/simulate.md, session 20).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from shared.domain.catalog import OVERHEAD_ROOT_DISK, instance_type, root_volume_price
from shared.domain.cluster_state import DemandCount
from shared.domain.jobs import Shape
from shared.domain.node_types import UNLIMITED, Offer, usable_by_all
from shared.domain.units import GiB

STEP = 10 * GiB  # sizes go in steps, so that a queue that changes a little keeps its volumes (and its plans)


def sized_offers(
    offers: Sequence[Offer], demand: Mapping[Shape, DemandCount], *, largest: int, region: str
) -> list[Offer]:
    """``offers`` with each root volume grown to what ``demand`` needs, up to ``largest`` bytes."""
    return [_sized(offer, demand, largest, region) for offer in offers]


def volume_needed(offer: Offer, demand: Mapping[Shape, DemandCount], largest: int) -> int:
    """Bytes of root volume a node of ``offer`` needs to fill up with any one shape of ``demand`` (at least its own
    ``node_storage``, at most ``largest``; its own for an instance-store type or one with a maximum)."""
    members = [instance_type(name) for name in offer.instance_types]
    if any(m.instance_storage for m in members) or largest <= offer.node_storage or offer.max_nodes < UNLIMITED:
        return offer.node_storage
    most = usable_by_all(members, largest)
    need = 0
    for shape, count in demand.items():
        jobs, wants = count.queued + count.running, shape.resources
        if jobs <= 0 or wants.disk <= 0 or (offer.spot and not shape.preemptible) or not wants.fits_in(most):
            continue
        pairs = ((wants.cores, most.cores), (wants.memory, most.memory), (wants.accelerators, most.accelerators))
        limits = [math.floor(have / want + 1e-9) for want, have in pairs if want > 0]
        need = max(need, min([jobs, *limits]) * wants.disk)
    stepped = math.ceil((need + OVERHEAD_ROOT_DISK) / STEP) * STEP
    return min(largest, max(offer.node_storage, stepped))


def _sized(offer: Offer, demand: Mapping[Shape, DemandCount], largest: int, region: str) -> Offer:
    storage = volume_needed(offer, demand, largest)
    if storage == offer.node_storage:
        return offer
    volume = root_volume_price(storage, region)
    return replace(
        offer,
        usable=usable_by_all([instance_type(name) for name in offer.instance_types], storage),
        hourly_price=offer.hourly_price - offer.volume_price + volume,
        volume_price=volume,
        node_storage=storage,
    )
