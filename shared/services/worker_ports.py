"""The agent's ports (``shared/worker``): the job queue as a worker uses it, and where learned runtimes go."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.jobs import Job


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One job message as a worker received it from the queue."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    sent_at: float | None = None  # when it was sent (epoch seconds; SQS's SentTimestamp), if known


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
