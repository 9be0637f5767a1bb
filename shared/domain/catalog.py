"""EC2 instance facts and what a node of each type offers to jobs.

Usable capacity is what is left for jobs once the appliance runs (the *appliance overhead*):

- memory: 512 MiB plus 4% of the instance's memory stay with the OS, the container runtime and the
  Shoal agent. Toil trims 0.1 GiB and lets the kernel sort out the rest; a job that is killed for
  memory costs far more than a slightly larger node.
- disk: with an instance store, jobs get all of it (the OS lives on the EBS root volume). Without one,
  jobs share the EBS root volume of ``node_storage`` bytes (Toil's ``--nodeStorage``, default 50 GiB),
  less 8 GiB for the OS and the appliance image.
- cores and accelerators: all of them; the agent is idle while jobs run.

What a node costs is its instance's price plus its root volume's (``root_volume_price``): every node has one,
gp3 as the launch template makes it, ``node_storage`` in size.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared.domain.catalog_data import INSTANCE_ROWS, PRICE_REGIONS
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB, UnitError, parse_gib

DEFAULT_NODE_STORAGE = 50 * GiB
DEFAULT_MAX_NODE_STORAGE = 1024 * GiB  # the largest root volume a round gives a node (shared.domain.volumes)
MAX_GP3_SIZE = 16384 * GiB  # gp3's largest volume
MIN_NODE_STORAGE = 10 * GiB  # the root volume holds the OS and the appliance too


def parse_node_storage(text: str) -> int:
    """Bytes from Toil's ``--nodeStorage`` as written (a bare number is GiB), or ``UnitError`` saying what to write."""
    size = parse_gib(text)
    if size < MIN_NODE_STORAGE:
        raise UnitError(f"{text!r} is too small; the root volume needs at least 10 GiB, e.g. 50")
    return size


OVERHEAD_MEMORY_FIXED = 512 * MiB
OVERHEAD_MEMORY_FRACTION = 0.04
OVERHEAD_ROOT_DISK = 8 * GiB


class UnknownInstanceTypeError(ValueError):
    """An instance type the catalog does not know; the message lists close matches."""


class UnknownRegionError(ValueError):
    """A region the catalog has no prices for."""


# gp3 storage, USD per GiB-month, in the regions priced here (AWS's price list; IOPS and throughput at the gp3
# baseline are included). AWS turns monthly prices into hourly ones at 730 hours a month.
GP3_PRICE_PER_GIB_MONTH: Mapping[str, float] = MappingProxyType({"us-east-1": 0.08, "us-west-2": 0.08})
HOURS_PER_MONTH = 730


def volume_gib(node_storage: int) -> int:
    """The whole GiB a root volume of ``node_storage`` bytes is launched (and billed) with: rounded up."""
    return math.ceil(node_storage / GiB)


def root_volume_price(node_storage: int, region: str) -> float:
    """USD per hour of one node's gp3 root volume of ``node_storage`` bytes (rounded up to GiB, as launched)."""
    try:
        per_gib_month = GP3_PRICE_PER_GIB_MONTH[region]
    except KeyError:
        known = ", ".join(sorted(GP3_PRICE_PER_GIB_MONTH))
        raise UnknownRegionError(f"no gp3 volume price in region {region!r}; known regions: {known}") from None
    return volume_gib(node_storage) * per_gib_month / HOURS_PER_MONTH


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceType:
    name: str
    vcpus: int
    memory: int  # bytes
    gpus: int
    instance_storage: int  # bytes (decimal GB as AWS lists them); 0 for EBS-only types
    on_demand_price: Mapping[str, float]  # USD per hour by region, Linux

    def price(self, region: str) -> float:
        try:
            return self.on_demand_price[region]
        except KeyError:
            known = ", ".join(sorted(self.on_demand_price))
            raise UnknownRegionError(
                f"no on-demand price for {self.name} in region {region!r}; known regions: {known}"
            ) from None

    def usable(self, node_storage: int = DEFAULT_NODE_STORAGE) -> Resources:
        memory = self.memory - OVERHEAD_MEMORY_FIXED - int(self.memory * OVERHEAD_MEMORY_FRACTION)
        disk = self.instance_storage if self.instance_storage else node_storage - OVERHEAD_ROOT_DISK
        return Resources(cores=float(self.vcpus), memory=max(0, memory), disk=max(0, disk), accelerators=self.gpus)


def _build() -> Mapping[str, InstanceType]:
    types: dict[str, InstanceType] = {}
    for name, (vcpus, memory_gib, gpus, storage_gb, *prices) in INSTANCE_ROWS.items():
        types[name] = InstanceType(
            name=name,
            vcpus=vcpus,
            memory=int(memory_gib * GiB),
            gpus=gpus,
            instance_storage=int(storage_gb * 10**9),
            on_demand_price=MappingProxyType(dict(zip(PRICE_REGIONS, prices, strict=True))),
        )
    return MappingProxyType(types)


CATALOG: Mapping[str, InstanceType] = _build()
REGIONS: tuple[str, ...] = PRICE_REGIONS


def instance_type(name: str) -> InstanceType:
    try:
        return CATALOG[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(CATALOG), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `shoal node-types` for the catalog"
        raise UnknownInstanceTypeError(f"unknown instance type {name!r}{hint}") from None
