"""What a node has free for jobs: pure accounting of the resources its running jobs hold.

The agent asks one question per message: does this job fit now, later (once something finishes), or
never on this node? Only "now" starts it; the other two give the message straight back to the queue.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.domain.resources import RESOURCE_NAMES, Resources


class Fit(enum.Enum):
    NOW = "now"  # fits in what is free
    LATER = "later"  # fits this node, but not beside what runs now
    NEVER = "never"  # larger than the whole node


@dataclass(slots=True)
class CapacityLedger:
    """The node's total capacity and which job holds how much of it. Not thread-safe: the agent locks it."""

    total: Resources
    _held: dict[str, Resources] = field(default_factory=dict)

    @property
    def held(self) -> Mapping[str, Resources]:
        return dict(self._held)

    def free(self) -> Resources:
        used = Resources()
        for need in self._held.values():
            used = used + need
        return self.total - used

    def fit(self, need: Resources) -> Fit:
        if need.fits_in(self.free()):
            return Fit.NOW
        return Fit.LATER if need.fits_in(self.total) else Fit.NEVER

    def is_full(self) -> bool:
        """No job can start now: every job needs some cores, and none are free."""
        return self.free().cores <= 1e-9

    def reserve(self, job_id: str, need: Resources) -> bool:
        """Hold ``need`` for ``job_id`` if it fits now; False (and nothing held) otherwise."""
        if job_id in self._held or self.fit(need) is not Fit.NOW:
            return False
        self._held[job_id] = need
        return True

    def release(self, job_id: str) -> None:
        self._held.pop(job_id, None)


def shortfall(need: Resources, available: Resources) -> str:
    """Which resources ``available`` lacks for ``need``, for a log line ("memory: needs 8GiB, 2GiB free")."""
    short = [
        f"{name}: needs {getattr(need, name):g}, has {getattr(available, name):g}"
        for name in RESOURCE_NAMES
        if getattr(need, name) > getattr(available, name) + (1e-9 if name == "cores" else 0)
    ]
    return "; ".join(short) or "nothing short"
