"""A completion feed's announcement: a job's start or end, as the job store writes it and the Toil plugin reads it
(``shared.adapters.job_feed`` stores it; ``shared.toil.tracker`` handles it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.domain.cluster_state import JobStatus


class FeedEventKind(enum.StrEnum):
    START = "START"
    END = "END"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedEvent:
    job_id: str
    kind: FeedEventKind
    at: float  # when it started (START) or ended (END), by the agent's clock
    node: str | None = None
    attempt: int | None = None
    status: JobStatus | None = None  # END only: SUCCEEDED or FAILED
    exit_code: int | None = None  # END only; None: the job never ran (it could not start)
    reason: str | None = None  # END of a failed job: why

    @property
    def sort_key(self) -> str:
        return f"{self.job_id}#{self.kind}"
