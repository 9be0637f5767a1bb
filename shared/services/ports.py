"""The ports the use cases need; ``shared/adapters`` implements them against AWS, tests against moto.

Everything here is a ``Protocol``: services depend on these, never on boto3. Times are epoch seconds
passed in by the caller (``now``), so tests drive a simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from shared.domain.cluster_state import (
    ClusterStatus,
    ClusterStatusRecord,
    DemandCount,
    JobRecord,
    JobStatus,
    Market,
    NodeRecord,
)
from shared.domain.decision import Instance, Launch
from shared.domain.jobs import Job, Shape
from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.domain.quotas import QuotaView
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings

# ---- time: the one clock, in two shapes -----------------------------------------------------------------

Now: TypeAlias = Callable[[], float]  # reads the clock: epoch seconds (time.time, or a simulated clock's now)


class Clock(Protocol):
    """A clock a use case may also wait on (the CLI waiting for a state machine); tests pass a fake one."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class JobStore(Protocol):
    """Job records and the per-shape demand counters, changed together in one transaction."""

    def put_jobs(self, jobs: Sequence[Job], now: float) -> list[str]:
        """Record new jobs as QUEUED and count them; returns the ids that were new (resubmits are no-ops)."""
        ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def start_job(self, job: Job, node_id: str, now: float) -> int | None:
        """QUEUED → RUNNING on ``node_id``; returns the number of this start (1 for the first, one more for every
        start after, also after a ``requeue_job``): finish and fail name the run by it.

        None if the job is not QUEUED (taken or settled), has no record, its record holds a different job,
        or the node is draining.
        """
        ...

    def finish_job(self, job: Job, node_id: str, *, attempt: int, exit_code: int, output_tail: str, now: float) -> bool:
        """RUNNING on ``node_id`` in ``attempt`` → SUCCEEDED. False if that attempt is not running there."""
        ...

    def fail_job(
        self,
        job: Job,
        node_id: str,
        *,
        attempt: int,
        reason: str,
        exit_code: int | None,
        output_tail: str,
        now: float,
    ) -> JobStatus | None:
        """RUNNING (start ``attempt``) → QUEUED if attempts remain, else FAILED. The new status; None if that
        start is not running there."""
        ...

    def requeue_job(
        self,
        job_id: str,
        node_id: str,
        *,
        reason: str,
        now: float,
        preempted: bool = False,
        max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    ) -> bool:
        """RUNNING on ``node_id`` → QUEUED without using up an attempt (interruption, drain, lost node); the start
        still counts in ``starts``. ``preempted``: a spot reclaim, counted in ``preemptions``; once that reaches
        the job's budget (its ``max_preemptions``, else ``max_preemptions``) it starts only on on-demand nodes."""
        ...

    def preempted_jobs(self) -> list[JobRecord]:
        """The QUEUED and RUNNING jobs preempted at least once (few: O(preempted), never O(jobs))."""
        ...

    def demand(self) -> dict[Shape, DemandCount]:
        """Queued and running jobs per shape: O(shapes) reads, never O(jobs)."""
        ...

    def running_on(self, node_id: str) -> list[str]:
        """The ids of the jobs whose records say RUNNING on ``node_id``, also those started after the node's
        last heartbeat (a lost node's jobs are found here, not only in its record). Read when a node is gone."""
        ...

    def cancel_jobs(self, job_ids: Sequence[str], *, reason: str, now: float) -> dict[str, JobStatus]:
        """QUEUED or RUNNING → CANCELLED (never started again, never reported done); each cancelled id with the
        status it had. Settled and unknown ids are left alone. A RUNNING one keeps its node until released."""
        ...

    def statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """Status and node of each id that has a record, in batched reads."""
        ...

    def release_cancelled(self, job_id: str, node_id: str, *, now: float) -> bool:
        """The agent on ``node_id`` has ended this CANCELLED job: clear its node. False if not cancelled there."""
        ...


class NodeStore(Protocol):
    def put_node(self, node: NodeRecord) -> None:
        """Create or replace a node record (launch, warm-pool start)."""
        ...

    def put_nodes(self, nodes: Sequence[NodeRecord]) -> None:
        """``put_node`` for many at once (a scale-up): a few batched writes, not one per node."""
        ...

    def get_node(self, instance_id: str) -> NodeRecord | None: ...

    def list_nodes(self) -> list[NodeRecord]: ...

    def heartbeat(
        self,
        instance_id: str,
        *,
        free: Resources,
        running_jobs: Mapping[str, str],
        now: float,
        draining: bool = False,
    ) -> NodeRecord | None:
        """The agent's report: free capacity and running jobs (id → SQS receipt handle), and whether it was
        taking no new jobs because it knew of a drain (``draining``). Returns the record as it is now."""
        ...

    def mark_draining(self, instance_id: str, now: float) -> bool:
        """ACTIVE/PENDING → DRAINING; refused (False) for a static node."""
        ...

    def mark_state(self, instance_id: str, state: str, now: float) -> bool: ...  # False: missing, or retiring

    def claim_idle(self, instance_ids: Sequence[str], now: float) -> list[str]:
        """Those still idle (drained, reported idle knowing of it; or stopped), now retiring: never given work again."""
        ...

    def remove_node(self, instance_id: str) -> None: ...

    def remove_nodes(self, instance_ids: Sequence[str]) -> None: ...


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


# Not an offering EC2 sells: the region's EBS storage quota refused a root volume larger than the launch
# template's. While it is in the capacity cache, rounds launch every node with the template's volume (a node that
# holds fewer jobs runs them; a launch refused again and again runs none). It backs off as an offering does.
LARGER_ROOT_VOLUMES = Offering(instance_type="ebs:larger-root-volume", zone="*", market=Market.ON_DEMAND)


class CapacityCache(Protocol):
    def unavailable(self, now: float) -> set[Offering]: ...

    def record_failure(self, offering: Offering, reason: str, now: float, base_ttl: float) -> float:
        """Mark ``offering`` unavailable; repeated failures back off. Returns when it may be tried again."""
        ...


class DecisionLog(Protocol):
    def record(self, round_id: str, now: float, entry: Mapping[str, object]) -> None: ...

    def recent(self, limit: int) -> list[dict[str, object]]: ...


# Submission (``shoal submit`` and the Python API) and cluster bookkeeping. Adapters raise the errors
# below (or subclasses), so services and the CLI handle failures without knowing about boto3.


class StoreError(RuntimeError):
    """A state-store call failed; the message names the table and what to check."""


class JobQueueError(RuntimeError):
    """A queue call failed; the message names the queue and what to check."""


class JobsNotSentError(JobQueueError):
    """Some jobs did not reach the queue; ``unsent_job_ids`` names them (the others were sent)."""

    def __init__(self, message: str, *, unsent_job_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.unsent_job_ids = tuple(unsent_job_ids)


class EventPublishError(RuntimeError):
    """An event could not be put on the event bus; the message names the bus and the reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedJobs:
    new: tuple[str, ...]  # recorded (and counted as demand) by this call
    not_enqueued: tuple[str, ...]  # recorded before, still QUEUED, never confirmed in the queue: send them again


class SubmissionStore(JobStore, Protocol):
    """The job store as the submitter uses it: record first, enqueue, then confirm."""

    def record_jobs(self, jobs: Sequence[Job], now: float) -> RecordedJobs:
        """``put_jobs``, also naming the already-known ids whose messages were never confirmed sent."""
        ...

    def mark_enqueued(self, job_ids: Sequence[str]) -> None:
        """Confirm these jobs' messages are in the queue, so a resubmit does not send them again."""
        ...

    def claim_demand_event(self, now: float, debounce_seconds: float) -> bool:
        """True for the one caller that may send a "demand changed" event now (none sent in the last window)."""
        ...


class JobSender(Protocol):
    def send_jobs(self, jobs: Sequence[Job]) -> None:
        """Put one message per job on the queue; ``JobsNotSentError`` names the ids that did not get there."""
        ...


class DemandEvents(Protocol):
    def publish_demand_changed(self, *, cluster: str, queued: int, now: float) -> None: ...


class ClusterStore(Protocol):
    """The cluster's settings, its lifecycle status, and the runtimes learned per job name."""

    def put_settings(self, settings: ClusterSettings) -> None: ...

    def get_settings(self) -> ClusterSettings | None: ...

    def set_status(
        self,
        status: ClusterStatus,
        *,
        reason: str | None,
        now: float,
        expected: Collection[ClusterStatus] | None = None,
    ) -> bool:
        """Move to ``status``; with ``expected``, only from one of those statuses (False otherwise)."""
        ...

    def get_status(self) -> ClusterStatusRecord | None: ...

    def record_runtime(self, name: str, seconds: float) -> None: ...

    def average_runtimes(self) -> dict[str, float]: ...


# The scaling round's EC2 side (``shared/adapters/ec2_fleet.py``) and how it returns a lost node's jobs.


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchFailure:
    instance_type: str
    zone: str | None
    code: str  # EC2's error code, e.g. InsufficientInstanceCapacity
    message: str
    offering_error: bool  # capacity, price, quota or an unsupported type: skip this offering for a while
    volume_quota: bool = False  # the region's EBS storage quota refused a root volume larger than the template's


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchResult:
    instances: tuple[Instance, ...]  # empty if every option failed
    failures: tuple[LaunchFailure, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceFailure:
    instance_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    done: tuple[str, ...]
    failed: tuple[InstanceFailure, ...] = ()


class Fleet(Protocol):
    """The cluster's EC2 instances, found by the cluster tag. Calls never raise for one bad offering or id."""

    def describe(self) -> list[Instance]:
        """The cluster's instances that are not terminated (shutting-down ones included)."""
        ...

    def zones(self) -> tuple[str, ...]:
        """The zones launches can be placed in, in order; () when the launch template decides."""
        ...

    def launch(self, launch: Launch, *, idempotency_key: str) -> LaunchResult:
        """``launch.count`` instances from the first of ``launch.options`` that EC2 accepts.

        The same ``idempotency_key`` (and option) never launches twice: a retried round gets the same instances.
        """
        ...

    def start(self, instance_ids: Sequence[str]) -> BatchResult: ...

    def stop(self, instance_ids: Sequence[str]) -> BatchResult: ...

    def terminate(self, instance_ids: Sequence[str]) -> BatchResult: ...

    def refused_root_volume(self, instance_id: str) -> bool:
        """Whether EC2 ended this instance as it started because the region's EBS storage quota refused its root
        volume (a refusal RunInstances did not raise). False when it cannot tell."""
        ...


class QuotaSource(Protocol):
    """The account's EC2 vCPU quotas and what runs outside the cluster (cached by the adapter); None when
    nothing could be read ("no limit known")."""

    def read(self, now: float) -> QuotaView | None: ...


class PlacementScores(Protocol):
    """Spot Placement Scores per spot offer key and zone (cached by the adapter); {} when not allowed."""

    def scores(self, offers: Sequence[Offer], zones: Sequence[str], now: float) -> dict[str, dict[str, int]]: ...


class JobReturns(Protocol):
    """The queue side of returning a job: make its in-flight message visible to every worker now."""

    def put_back(self, receipt_handles: Sequence[str]) -> list[str]:
        """Returns the receipt handles that failed (stale: the message was already back or done)."""
        ...
