"""How long a queued job is expected to run: what the scaler packs instead of the time nobody knows yet.

A submitted job's own wall time is a guess (or missing, for a workflow engine's jobs); what finished jobs
of the same name took is evidence. As Toil does (``ClusterScaler.getAverageRuntime``): the average of
the finished jobs with the job's name, else the average of all finished jobs, else the job's own estimate.
Agents record finished runtimes per name (``shared/worker/runtime_tally.py``).

Unlike Toil, jobs still running count too: the first jobs of a name to finish are its shortest, so an
average of finished jobs alone starts low and stays low while the long ones run (on nf-core/chipseq,
PHANTOMPEAKQUALTOOLS looked like 155 s while 21 of its jobs had run for minutes; they take 27 min).
A running job has run at least as long as it has been running: the expectation is at least the mean
time the running jobs of that name have run so far, and while none of that name has ended, twice that
(``RUNNING_FACTOR``: a job that has run for a time is expected to run about as long again), but no less than
what it would be expected to take were none running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# A job of a name none of which has ended yet is expected to run as long again as they have run so far (a lower
# bound alone made a burst of hour-long jobs look a minute long, and the fleet grew a node at a time).
RUNNING_FACTOR = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtimes:
    """Finished jobs' runtimes: (jobs, seconds in all) per name, and over every job."""

    by_name: Mapping[str, tuple[int, float]] = field(default_factory=lambda: MappingProxyType({}))
    jobs: int = 0
    seconds: float = 0.0

    def expected(self, name: str | None, submitted: float, running: tuple[int, float] = (0, 0.0)) -> float:
        """What a job called ``name`` that says it takes ``submitted`` seconds is expected to take.

        ``running``: how many jobs of that name run now, and how long they have run in all (seconds).
        """
        so_far = running[1] / running[0] if running[0] > 0 else 0.0
        if name is not None:
            learned = self.by_name.get(name)
            if learned is not None and learned[0] > 0:
                return max(learned[1] / learned[0], so_far)
        if so_far > 0:  # none of this name has ended: they are expected to run as long again (RUNNING_FACTOR)
            so_far *= RUNNING_FACTOR
            return max(so_far, self.seconds / self.jobs if self.jobs > 0 else submitted)
        if self.jobs > 0:
            return self.seconds / self.jobs
        return submitted

    @staticmethod
    def of_names(by_name: Mapping[str, tuple[int, float]]) -> Runtimes:
        """What stores keep (jobs, seconds in all, per name), with the totals over every named job."""
        return Runtimes(
            by_name=MappingProxyType(dict(by_name)),
            jobs=sum(count for count, _ in by_name.values()),
            seconds=sum(seconds for _, seconds in by_name.values()),
        )

    def add(self, name: str | None, seconds: float) -> Runtimes:
        by_name = dict(self.by_name)
        if name is not None:
            count, total = by_name.get(name, (0, 0.0))
            by_name[name] = (count + 1, total + seconds)
        return Runtimes(by_name=MappingProxyType(by_name), jobs=self.jobs + 1, seconds=self.seconds + seconds)
