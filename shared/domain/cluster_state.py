"""What the control plane knows about a cluster: job records, demand counters and nodes.

Plain frozen records; the DynamoDB adapter stores them and the scaler's pure ``decide`` reads them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources


class JobStatus(enum.StrEnum):
    QUEUED = "QUEUED"  # in the queue, waiting for a worker (also after an interruption or a retryable failure)
    RUNNING = "RUNNING"  # a worker holds its message and runs it
    SUCCEEDED = "SUCCEEDED"  # done; its message is deleted
    FAILED = "FAILED"  # attempts exhausted; its message went to the dead-letter queue with the reason
    # Its submitter withdrew it (Toil's killBatchJobs): never started again, never reported done; an agent
    # running it ends it, then clears ``node`` on the record to say it has stopped.
    CANCELLED = "CANCELLED"


class NodeState(enum.StrEnum):
    PENDING = "PENDING"  # launched, agent not heard from yet
    ACTIVE = "ACTIVE"  # agent heartbeating, taking work
    DRAINING = "DRAINING"  # takes no new work; terminated (or stopped) once idle
    INTERRUPTED = "INTERRUPTED"  # spot interruption or rebalance notice: its jobs went back to the queue
    STOPPED = "STOPPED"  # in the warm pool
    GONE = "GONE"  # terminated


class ClusterStatus(enum.StrEnum):
    """Where a cluster is in its life; the launch and teardown state machines move it along."""

    LAUNCHING = "LAUNCHING"
    ACTIVE = "ACTIVE"
    # The budget is spent: nothing new launches, nodes drain (set by the scaling round, shared.services.guardrails).
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    TEARING_DOWN = "TEARING_DOWN"
    DESTROYED = "DESTROYED"
    FAILED = "FAILED"


class Market(enum.StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


def shape_key(shape: Shape) -> str:
    """A stable text key for a shape: the demand counter's sort key."""
    r = shape.resources
    wall, spot = float(shape.wall_time), int(shape.preemptible)
    return f"c{float(r.cores)!r}:m{r.memory}:d{r.disk}:a{r.accelerators}:w{wall!r}:p{spot}"


def shape_from_key(key: str) -> Shape:
    parts = {part[0]: part[1:] for part in key.split(":")}
    return Shape(
        resources=Resources(
            cores=float(parts["c"]), memory=int(parts["m"]), disk=int(parts["d"]), accelerators=int(parts["a"])
        ),
        wall_time=float(parts["w"]),
        preemptible=parts["p"] == "1",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    job: Job
    status: JobStatus
    attempts: int = 0  # attempts charged against max_attempts: starts, less those given back (requeue_job)
    starts: int = 0  # every start by a worker, also those given back; SHOAL_JOB_ATTEMPT is this number
    node: str | None = None  # instance id while RUNNING
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    output_tail: str | None = None
    reason: str | None = None  # why it failed or was requeued, last time
    cancelled_at: float | None = None
    on_demand_only: bool = False  # past its preemption budget: starts only on on-demand nodes
    preemptions: int = 0  # spot reclaims that returned it to the queue (no attempt used); see domain.preemption


@dataclass(frozen=True, slots=True, kw_only=True)
class DemandCount:
    queued: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    instance_id: str
    offer_key: str  # which offer it was launched for ("c5.4xlarge" or "c5.4xlarge/c5a.4xlarge:spot")
    instance_type: str
    market: Market
    state: NodeState
    zone: str | None = None
    static: bool = False
    launched_at: float = 0.0
    heartbeat_at: float | None = None
    draining_since: float | None = None
    free: Resources | None = None  # as last reported by its agent
    running_jobs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # job id -> receipt handle
    # The last report came from an agent that knew of the drain (it starts nothing more); only such a
    # report can say a draining node is idle. A drain, and taking work again, reset it.
    drain_acknowledged: bool = False
    node_storage: int | None = None  # bytes of root volume it was launched with; None: the cluster's node_storage

    @property
    def busy(self) -> bool:
        return bool(self.running_jobs)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStatusRecord:
    status: ClusterStatus
    reason: str | None = None  # why it is in this status (a failure, who asked for the teardown)
    updated_at: float = 0.0
