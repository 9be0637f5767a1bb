"""The ports the use cases need; ``shared/adapters`` implements them against AWS, tests against moto.

Everything here is a ``Protocol``: services depend on these, never on boto3. Times are epoch seconds
passed in by the caller (``now``), so tests drive a simulated clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus, Market, NodeRecord
from shared.domain.jobs import Job, Shape
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources


class JobStore(Protocol):
    """Job records and the per-shape demand counters, changed together in one transaction."""

    def put_jobs(self, jobs: Sequence[Job], now: float) -> list[str]:
        """Record new jobs as QUEUED and count them; returns the ids that were new (resubmits are no-ops)."""
        ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def start_job(self, job_id: str, node_id: str, now: float) -> JobRecord | None:
        """QUEUED → RUNNING on ``node_id`` (attempts + 1). None if the job is not QUEUED (already taken or done)."""
        ...

    def finish_job(self, job_id: str, node_id: str, *, exit_code: int, output_tail: str, now: float) -> bool:
        """RUNNING on ``node_id`` → SUCCEEDED. False if the job is not running there."""
        ...

    def fail_job(
        self, job_id: str, node_id: str, *, reason: str, exit_code: int | None, output_tail: str, now: float
    ) -> JobStatus | None:
        """RUNNING → QUEUED if attempts remain, else FAILED. Returns the new status, None if not running there."""
        ...

    def requeue_job(self, job_id: str, node_id: str, *, reason: str, now: float) -> bool:
        """RUNNING on ``node_id`` → QUEUED without using up an attempt (interruption, drain, lost node)."""
        ...

    def demand(self) -> dict[Shape, DemandCount]:
        """Queued and running jobs per shape: O(shapes) reads, never O(jobs)."""
        ...


class NodeStore(Protocol):
    def put_node(self, node: NodeRecord) -> None:
        """Create or replace a node record (launch, warm-pool start)."""
        ...

    def get_node(self, instance_id: str) -> NodeRecord | None: ...

    def list_nodes(self) -> list[NodeRecord]: ...

    def heartbeat(
        self, instance_id: str, *, free: Resources, running_jobs: Mapping[str, str], now: float
    ) -> NodeRecord | None:
        """The agent's report: free capacity and running jobs (id → SQS receipt handle). Returns the record."""
        ...

    def mark_draining(self, instance_id: str, now: float) -> bool:
        """ACTIVE/PENDING → DRAINING; refused (False) for a static node."""
        ...

    def mark_state(self, instance_id: str, state: str, now: float) -> bool: ...

    def remove_node(self, instance_id: str) -> None: ...


class ScalerStateStore(Protocol):
    def load(self) -> tuple[ScalerState, int]:
        """The state the last round left, and its version for a conditional save."""
        ...

    def save(self, state: ScalerState, version: int) -> bool:
        """Save if nobody saved since ``version`` was loaded."""
        ...


class Lease(Protocol):
    def acquire(self, owner: str, now: float, ttl: float) -> bool:
        """Take the scaling lease unless someone else holds an unexpired one."""
        ...

    def release(self, owner: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Offering:
    """What EC2 can refuse: an instance type in a zone on a market."""

    instance_type: str
    zone: str
    market: Market


class CapacityCache(Protocol):
    def unavailable(self, now: float) -> set[Offering]: ...

    def record_failure(self, offering: Offering, reason: str, now: float, base_ttl: float) -> float:
        """Mark ``offering`` unavailable; repeated failures back off. Returns when it may be tried again."""
        ...


class DecisionLog(Protocol):
    def record(self, round_id: str, now: float, entry: Mapping[str, object]) -> None: ...

    def recent(self, limit: int) -> list[dict[str, object]]: ...
