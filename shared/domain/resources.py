"""A resource vector: what a job needs, or what a node offers to jobs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.domain.units import format_size

RESOURCE_NAMES = ("cores", "memory", "disk", "accelerators")


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Resources:
    cores: float = 0.0
    memory: int = 0  # bytes
    disk: int = 0  # bytes
    accelerators: int = 0

    def fits_in(self, other: Resources) -> bool:
        return (
            self.cores <= other.cores + 1e-9
            and self.memory <= other.memory
            and self.disk <= other.disk
            and self.accelerators <= other.accelerators
        )

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cores=self.cores + other.cores,
            memory=self.memory + other.memory,
            disk=self.disk + other.disk,
            accelerators=self.accelerators + other.accelerators,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            cores=self.cores - other.cores,
            memory=self.memory - other.memory,
            disk=self.disk - other.disk,
            accelerators=self.accelerators - other.accelerators,
        )

    def scaled(self, factor: int) -> Resources:
        return Resources(
            cores=self.cores * factor,
            memory=self.memory * factor,
            disk=self.disk * factor,
            accelerators=self.accelerators * factor,
        )

    def share_of(self, capacity: Resources) -> float:
        """The largest share of ``capacity`` that ``self`` takes (cores, memory, disk, accelerators); a resource
        needed that ``capacity`` lacks counts as infinite."""
        return max(self.shares_of(capacity))

    def scarcest_in(self, capacity: Resources) -> str:
        """The name (``RESOURCE_NAMES``) of the resource ``self`` takes the largest share of; ties to the first."""
        shares = self.shares_of(capacity)
        return RESOURCE_NAMES[shares.index(max(shares))]

    def shares_of(self, capacity: Resources) -> tuple[float, float, float, float]:
        """The share of ``capacity`` that ``self`` takes of each resource, in ``RESOURCE_NAMES`` order."""
        return (
            _share(self.cores, capacity.cores),
            _share(self.memory, capacity.memory),
            _share(self.disk, capacity.disk),
            _share(self.accelerators, capacity.accelerators),
        )

    def copies_in(self, capacity: Resources) -> int:
        """How many of ``self`` fit side by side in ``capacity`` (a very large number for a zero vector)."""
        limits = [
            _ratio(capacity.cores, self.cores),
            _ratio(capacity.memory, self.memory),
            _ratio(capacity.disk, self.disk),
            _ratio(capacity.accelerators, self.accelerators),
        ]
        return max(0, min(limits))

    def describe(self) -> str:
        parts = [f"{self.cores:g} cores", f"{format_size(self.memory)} memory", f"{format_size(self.disk)} disk"]
        if self.accelerators:
            parts.append(f"{self.accelerators} accelerators")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, float | int]:
        return {"cores": self.cores, "memory": self.memory, "disk": self.disk, "accelerators": self.accelerators}


_UNBOUNDED = 1 << 30


def _ratio(capacity: float, need: float) -> int:
    if need <= 0:
        return _UNBOUNDED if capacity >= 0 else 0
    # A tiny tolerance so 0.1 + 0.2 cores counts as 0.3.
    return math.floor(capacity / need + 1e-9)


def _share(need: float, have: float) -> float:
    return need / have if have else (math.inf if need else 0.0)
