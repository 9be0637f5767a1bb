"""The simulator's vocabulary: options, the simulated jobs and nodes, event kinds, samples and results."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Instance
from shared.domain.demand import DemandKey
from shared.domain.jobs import Shape
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.sim.trace import TraceJob

HEARTBEAT_INTERVAL = 30.0  # the agent's (shared/worker/agent.py)
SPOT_WARNING = 120.0  # EC2's two-minute notice
DEMAND_DEBOUNCE = 5.0  # shared.services.submit.DEFAULT_DEBOUNCE_SECONDS
FIRST_GUESS = 1.0  # seconds a job is expected to run before any job has finished (Toil's guess, too)
RECORD_REFRESH = 300.0  # the scaler's copy of a node record is at most this old (agents report every 30 s)
TAIL_LIMIT = 6 * 3600.0  # after the last job ends, how long the fleet may take to empty before the run stops


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    settings: ClusterSettings
    boot_delay: float = 90.0
    seed: int = 0
    spot_interruptions: float = 0.0  # per spot node-hour
    # instance type (or TYPE@ZONE) -> failure probability
    capacity_errors: Mapping[str, float] = field(default_factory=dict)
    zones: tuple[str, ...] = ()  # where launches may go (shared.sim.placement); () means no zones at all
    placement_scores: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # offer key -> zone -> 1-10
    sample_interval: float = 60.0  # seconds between the timeline's samples
    consolidate: bool = True  # tell the scaler when each busy node is expected to empty
    wait_aware: bool = True  # tell the scaler when the oldest queued job of each shape was queued
    # running jobs are demand for what is left of them (policy.running_remaining), not their whole runtime
    plan_remaining: bool = True
    learn_from_running: bool = True  # expected runtimes count the running jobs' time so far (shared.domain.runtimes)
    vcpu_quotas: Mapping[str, float] = field(default_factory=dict)  # quota code -> vCPUs (shared.sim.guardrails)
    quota_aware: bool = True  # the scaler is told the quotas (else it learns only from refused launches)
    # nodes leave a young job to cheaper node types (Shoal's agents, shared.domain.cheaper_first); off: any node
    # with room takes it, as Toil's batch systems place jobs
    cheaper_first: bool = True
    # the scaler sees each job's wall time as the estimate it was submitted with, as jobs in Shoal's own format
    # declare one (``shoal demo``'s do, exactly); off: it sees none, as with Toil's jobs and the real traces
    declared_runtimes: bool = False


@dataclass(frozen=True, slots=True)
class Outage:
    instance_type: str
    zone: str
    market: Market


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    t: float
    waiting: int
    running: int
    done: int
    nodes: Mapping[str, int]  # live instances by instance type
    booting: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    report: dict[str, object]
    samples: tuple[Sample, ...]


class SimJob:
    __slots__ = (
        "attempt",
        "done",
        "index",
        "key",
        "name",
        "node",
        "preemptions",
        "queued_at",
        "resources",
        "spot",
        "started_at",
        "starts",
        "trace",
        "wait",
        "wall",
    )  # fmt: skip

    def __init__(self, index: int, trace: TraceJob, *, declared: bool = False) -> None:
        self.index = index
        self.trace = trace
        self.resources = trace.job.shape.resources
        self.spot = trace.job.shape.preemptible
        self.name = trace.job.name
        # its demand counter's key: the trace's wall time is the true runtime, which the scaler never sees unless
        # the job declares it (``SimOptions.declared_runtimes``)
        guess = trace.wall_time if declared else FIRST_GUESS
        self.key: DemandKey = (interned_shape(self.resources, guess, self.spot), self.name)
        self.wall = trace.wall_time
        self.attempt = 0
        self.started_at = 0.0
        self.node: str | None = None
        self.queued_at = trace.submit
        self.wait = 0.0
        self.starts = 0
        self.done = 0
        self.preemptions = 0


class SimNode:
    __slots__ = (
        "acked",
        "capacity",
        "charged_from",
        "drain_gen",
        "draining_since",
        "empties",
        "free",
        "id",
        "idle_since",
        "instance",
        "instance_type",
        "launched_at",
        "market",
        "node_storage",
        "offer_key",
        "price",
        "priority",
        "ready_at",
        "record",
        "record_at",
        "running",
        "state",
        "volume_price",
        "zone",
    )  # fmt: skip

    def __init__(
        self, *, node_id: str, offer_key: str, type_name: str, market: Market, price: float, capacity: Resources,
        launched_at: float, ready_at: float, priority: float, zone: str | None = None, node_storage: int | None = None,
        volume_price: float = 0.0,
    ) -> None:  # fmt: skip
        self.id = node_id
        self.offer_key = offer_key
        self.instance_type = type_name
        self.zone = zone
        self.market = market
        self.price = price
        self.volume_price = volume_price  # of its root volume, in ``price``; all a stopped node costs
        self.capacity = capacity
        self.node_storage = node_storage  # a root volume sized at launch (None: the cluster's)
        self.free = capacity
        self.launched_at = launched_at
        self.ready_at = ready_at
        self.priority = priority
        self.state = NodeState.PENDING
        self.running: dict[int, float] = {}  # job index -> when it ends
        self.acked = False
        self.draining_since: float | None = None
        self.drain_gen = 0
        self.idle_since: float | None = launched_at  # None while it runs jobs
        self.charged_from = launched_at
        self.instance: Instance | None = None
        self.record: NodeRecord | None = None
        self.record_at = -math.inf
        # (shapes version, latest expected end, when a job becomes an outlier): a round's cache
        self.empties: tuple[int, float, float] | None = None


# Event kinds, in the order they are handled at one instant: jobs end before rounds look at the fleet. WAKE: a job
# left to cheaper nodes (``cheaper_first``) may now start on any node.
END, READY, ACK, WARN, GONE, SUBMIT, WAKE, ROUND = range(8)


SHAPES: dict[tuple[Resources, float, bool], Shape] = {}


def interned_shape(resources: Resources, wall_time: float, preemptible: bool) -> Shape:
    key = (resources, wall_time, preemptible)
    shape = SHAPES.get(key)
    if shape is None:
        shape = SHAPES[key] = Shape(resources=resources, wall_time=wall_time, preemptible=preemptible)
    return shape


def batches(jobs: Sequence[SimJob]) -> list[tuple[float, list[int]]]:
    out: list[tuple[float, list[int]]] = []
    for job in jobs:
        if out and out[-1][0] == job.trace.submit:
            out[-1][1].append(job.index)
        else:
            out.append((job.trace.submit, [job.index]))
    return out


def next_heartbeat(node: SimNode, now: float) -> float:
    if now <= node.ready_at:
        return node.ready_at
    beats = math.ceil((now - node.ready_at) / HEARTBEAT_INTERVAL)
    return node.ready_at + beats * HEARTBEAT_INTERVAL
