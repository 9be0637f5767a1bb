"""How long a queued job is expected to run: what the scaler packs instead of the time nobody knows yet.

A submitted job's own wall time is a guess (or missing, for a workflow engine's jobs); what finished jobs
of the same name took is evidence. As Toil does (``ClusterScaler.getAverageRuntime``): the average of
the finished jobs with the job's name, else the average of all finished jobs, else the job's own estimate.
Agents record finished runtimes per name (``shared/worker/runtime_tally.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtimes:
    """Finished jobs' runtimes: (jobs, seconds in all) per name, and over every job."""

    by_name: Mapping[str, tuple[int, float]] = field(default_factory=lambda: MappingProxyType({}))
    jobs: int = 0
    seconds: float = 0.0

    def expected(self, name: str | None, submitted: float) -> float:
        """What a job called ``name`` that says it takes ``submitted`` seconds is expected to take."""
        if name is not None:
            learned = self.by_name.get(name)
            if learned is not None and learned[0] > 0:
                return learned[1] / learned[0]
        if self.jobs > 0:
            return self.seconds / self.jobs
        return submitted

    def add(self, name: str | None, seconds: float) -> Runtimes:
        by_name = dict(self.by_name)
        if name is not None:
            count, total = by_name.get(name, (0, 0.0))
            by_name[name] = (count + 1, total + seconds)
        return Runtimes(by_name=MappingProxyType(by_name), jobs=self.jobs + 1, seconds=self.seconds + seconds)
