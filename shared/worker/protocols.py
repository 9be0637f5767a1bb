"""What the agent needs from the queue and the runtime table, as Protocols; adapters implement them.

The job and node stores are the shared ports of ``shared.services.ports``; these two are the agent's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.domain.jobs import Job
from shared.services.ports import ReceivedMessage

__all__ = ["ReceivedMessage", "RuntimeRecorder", "WorkerQueue"]


class WorkerQueue(Protocol):
    """The job queue as a worker uses it. Batch operations return the receipt handles that failed."""

    def receive(self, *, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[ReceivedMessage]: ...

    def change_visibility(self, receipt_handles: Sequence[str], seconds: int) -> list[str]:
        """Hide the messages for ``seconds`` more from now (0: visible to every worker at once)."""
        ...

    def delete(self, receipt_handles: Sequence[str]) -> list[str]: ...

    def send_jobs(self, jobs: Sequence[Job]) -> None:
        """Enqueue fresh messages for these jobs (raises if any could not be sent)."""
        ...

    def dead_letter(self, body: str, *, reason: str, job_id: str | None) -> None:
        """Put ``body`` on the dead-letter queue with why it is there; the caller then deletes the original."""
        ...


class RuntimeRecorder(Protocol):
    def record_runtime(self, name: str, seconds: float, count: int = 1) -> None:
        """``count`` more finished jobs named ``name`` took ``seconds`` in all: the scaler's average improves."""
        ...
