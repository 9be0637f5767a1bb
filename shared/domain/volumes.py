"""Root volumes sized from the queue, so that disk is not what fills a node first.

Jobs keep their files on the node's EBS root volume (``catalog``), one size for the cluster in Toil (``--nodeStorage``,
50 GiB by default). Jobs that each ask 10 GiB then fill a 16-core node at four, whatever their cores: on nf-chipseq that
is most of the bill. A volume costs little beside its instance ($0.08 per GiB-month, $0.019/h for 170 GiB beside a
c5.4xlarge's $0.68/h), so each round offers every node type with the volume its queued and running jobs need to fill it
by cores, memory and accelerators: for each kind of job it holds at no more than twice the cheapest price per job
(``HOME_FACTOR``), as many of them as one node holds (at most as many as there are) times their disk, plus the most disk
other jobs could ask of the room those leave. The cluster's ``node_storage`` is the smallest volume,
``max_node_storage`` the largest. A launch names the size (``Launch.node_storage``) and the launcher asks EC2 for it;
an agent sees its disk as the filesystem's free space, so it admits what the volume holds. Instance-store types keep
their own disks, and so does a node type with a ``maxNodes``: there the user has sized the fleet by hand, and on
``shoal demo``'s capped cluster grown volumes made its p95 wait 32.0 min against 27.0 (docs/simulate.md, session 20).
Every volume counts against the region's gp3 storage quota: ``past_gp3_quota`` says when grown ones would pass it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from shared.domain.catalog import OVERHEAD_ROOT_DISK, instance_type, root_volume_price, volume_gib
from shared.domain.cluster_state import DemandCount, NodeRecord, NodeState
from shared.domain.jobs import Shape
from shared.domain.node_types import UNLIMITED, Offer, usable_by_all
from shared.domain.quotas import GP3_QUOTA_CODE, QuotaView
from shared.domain.resources import Resources
from shared.domain.units import GiB

STEP = 10 * GiB  # sizes go in steps, so that a queue that changes a little keeps its volumes (and its plans)
# A node type grows its volume for the jobs it holds at no more than this many times the cheapest price per job among
# the types that can launch: a 96-core on-demand node running one large job is not given 970 GiB for one-core jobs a
# spot 16-core node holds for less than half the price. On the RICC week such volumes cost 0.9 %; 1.5 gave the same,
# 3 a third of the saving (docs/simulate.md, session 23).
HOME_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class _Kind:
    """Jobs that ask the same resources (wall times aside, which a volume does not depend on)."""

    wants: Resources
    count: int  # queued or running
    preemptible: bool


def sized_offers(
    offers: Sequence[Offer],
    demand: Mapping[Shape, DemandCount],
    *,
    largest: int,
    region: str,
    homes: Collection[str] | None = None,
) -> list[Offer]:
    """``offers`` with each root volume grown to what ``demand`` needs, up to ``largest`` bytes. ``homes``: the keys
    of the offers that can take jobs now (None: all); only those set the cheapest price per job."""
    kinds = _kinds(demand)
    prices = {o.key: [_per_job(o, k, largest) for k in kinds] for o in offers}
    cheapest = _cheapest([o for o in offers if homes is None or o.key in homes], prices, len(kinds))
    return [_sized(o, _need(o, kinds, prices[o.key], cheapest, largest), region) for o in offers]


def volume_needed(
    offer: Offer, demand: Mapping[Shape, DemandCount], largest: int, *, among: Sequence[Offer] = ()
) -> int:
    """Bytes of root volume a node of ``offer`` needs (at least its own ``node_storage``, at most ``largest``; its own
    for an instance-store type or one with a maximum): for each kind of job it can hold at no more than
    ``HOME_FACTOR`` times the cheapest price per job of ``offer`` and ``among``, as many as one node holds (no more
    than there are), and then the most disk the jobs left can ask of the cores and memory those leave free."""
    kinds = _kinds(demand)
    prices = {o.key: [_per_job(o, k, largest) for k in kinds] for o in (offer, *among)}
    return _need(offer, kinds, prices[offer.key], _cheapest([offer, *among], prices, len(kinds)), largest)


def past_gp3_quota(
    view: QuotaView | None,
    node_storage: int,
    nodes: Sequence[NodeRecord],
    offers: Mapping[str, Offer],
    wanted: Mapping[str, int],
    *,
    live: Mapping[str, int],
) -> str | None:
    """Why the volumes this round would launch grown take the cluster past the region's gp3 storage quota (None:
    they fit, none is grown, or the quota is unknown). The nodes it has keep theirs, stopped ones too."""
    room = view.gp3_room_gib() if view is not None else None
    launches = [(max(0, n - live.get(key, 0)), offers[key]) for key, n in wanted.items() if key in offers]
    if room is None or not any(n and o.node_storage > node_storage for n, o in launches):
        return None
    kept = [n for n in nodes if n.state is not NodeState.GONE]
    total = sum(volume_gib(n.node_storage or node_storage) for n in kept)
    total += sum(n * volume_gib(o.node_storage) for n, o in launches)
    if total <= room:
        return None
    return (
        f"root volumes kept at {volume_gib(node_storage)} GiB: grown ones would take the cluster to "
        f"{total:,} GiB of gp3, past the {room:,.0f} GiB the region's gp3 storage quota "
        f"({GP3_QUOTA_CODE}) leaves it"
    )


def _kinds(demand: Mapping[Shape, DemandCount]) -> list[_Kind]:
    counts: dict[tuple[Resources, bool], int] = {}
    for shape, count in demand.items():
        jobs = count.queued + count.running
        if jobs > 0 and shape.resources.disk > 0:
            key = (shape.resources, shape.preemptible)
            counts[key] = counts.get(key, 0) + jobs
    return [_Kind(wants, count, preemptible) for (wants, preemptible), count in counts.items()]


@functools.cache
def _usable(names: tuple[str, ...], storage: int) -> Resources:
    """``usable_by_all`` of a class at a volume (a round asks it for every offer and kind of job)."""
    return usable_by_all([instance_type(name) for name in names], storage)


@functools.cache
def _stores(names: tuple[str, ...]) -> bool:
    return any(instance_type(name).instance_storage for name in names)


def _grows(offer: Offer, largest: int) -> bool:
    return not _stores(offer.instance_types) and largest > offer.node_storage and offer.max_nodes >= UNLIMITED


def _most(offer: Offer, largest: int) -> Resources:
    """What one node of ``offer`` gives jobs at the largest volume it may have."""
    return _usable(offer.instance_types, largest if _grows(offer, largest) else offer.node_storage)


def _held(kind: _Kind, room: Resources, *, disk: bool) -> int:
    """How many of ``kind``'s jobs fit in ``room`` (by disk too if ``disk``), no more than there are."""
    wants = kind.wants
    pairs = [(wants.cores, room.cores), (wants.memory, room.memory), (wants.accelerators, room.accelerators)]
    if disk:
        pairs.append((wants.disk, room.disk))
    return max(0, min([kind.count, *(math.floor(have / want + 1e-9) for want, have in pairs if want > 0)]))


def _runs(offer: Offer, kind: _Kind) -> bool:
    return kind.preemptible or not offer.spot


def _stepped(offer: Offer, disk: int, largest: int) -> int:
    stepped = math.ceil((disk + OVERHEAD_ROOT_DISK) / STEP) * STEP
    return min(largest, max(offer.node_storage, stepped))


def _per_job(offer: Offer, kind: _Kind, largest: int) -> float | None:
    """Dollars an hour per job of ``kind`` on a node of ``offer`` that holds as many as it can (None: none fit)."""
    most = _most(offer, largest)
    if not _runs(offer, kind) or not kind.wants.fits_in(most):
        return None
    held = _held(kind, most, disk=True)
    if held == 0:
        return None
    storage = _stepped(offer, held * kind.wants.disk, largest) if _grows(offer, largest) else offer.node_storage
    per_byte = offer.volume_price / offer.node_storage if offer.node_storage else 0.0
    return (offer.hourly_price + per_byte * (storage - offer.node_storage)) / held


def _cheapest(offers: Sequence[Offer], prices: Mapping[str, Sequence[float | None]], kinds: int) -> list[float | None]:
    """Per kind of job, the least price per job among ``offers`` that can keep launching (no ``maxNodes``)."""
    out: list[float | None] = []
    for j in range(kinds):
        known = [p for o in offers if o.max_nodes >= UNLIMITED and (p := prices[o.key][j]) is not None]
        out.append(min(known) if known else None)
    return out


def _need(
    offer: Offer, kinds: Sequence[_Kind], own: Sequence[float | None], cheapest: Sequence[float | None], largest: int
) -> int:
    if not _grows(offer, largest):
        return offer.node_storage
    most = _most(offer, largest)
    need = 0
    for kind, price, least in zip(kinds, own, cheapest, strict=True):
        if price is None or (least is not None and price > HOME_FACTOR * least + 1e-12):
            continue
        held = _held(kind, most, disk=False)
        left = most - kind.wants.scaled(held)
        rest = [replace(k, count=k.count - held) if k == kind else k for k in kinds if _runs(offer, k)]
        others = [_held(k, left, disk=False) * k.wants.disk for k in rest]
        need = max(need, held * kind.wants.disk + max(others, default=0))
    return _stepped(offer, need, largest)


def _sized(offer: Offer, storage: int, region: str) -> Offer:
    if storage == offer.node_storage:
        return offer
    volume = root_volume_price(storage, region)
    return replace(
        offer,
        usable=_usable(offer.instance_types, storage),
        hourly_price=offer.hourly_price - offer.volume_price + volume,
        volume_price=volume,
        node_storage=storage,
    )
