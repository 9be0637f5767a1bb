"""The simulation's state and the bookkeeping every part shares: the event heap, charging, counters, samples."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from shared.domain.cheaper_first import CheaperFirst
from shared.domain.cluster_state import DemandCount, NodeState
from shared.domain.decision import Decision
from shared.domain.demand import Checkpoints, DemandKey, Enqueued
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes
from shared.domain.scaling import decide, offers_for
from shared.sim.ledger import SimLedger
from shared.sim.model import Outage, Sample, SimJob, SimNode, SimOptions
from shared.sim.trace import TraceJob

# Where the money went, as the report's ``waste`` gives it: the jobs' share of busy nodes, the room they leave
# (nodes taking work, with and without jobs waiting; draining nodes), idle and booting nodes.
WASTE_KEYS = (
    "jobs", "room_while_queued", "room_nothing_queued", "draining_room", "idle_while_queued", "idle_nothing_queued",
    "booting",
)  # fmt: skip


def _used_share(capacity: Resources, free: Resources) -> float:
    """The largest share of a node's usable capacity its jobs take (every node type has cores, memory and disk)."""
    used = 1.0 - min(free.cores / capacity.cores, free.memory / capacity.memory, free.disk / capacity.disk)
    if capacity.accelerators:
        used = max(used, 1.0 - free.accelerators / capacity.accelerators)
    return used


class SimState:
    """What a run holds; the parts (jobs, fleet, rounds) are its subclasses, one module each."""

    def __init__(self, trace: Sequence[TraceJob], options: SimOptions, *, decide_fn: Callable[..., Decision] = decide):
        self.options = options
        self.settings = options.settings
        self.offers: list[Offer] = offers_for(self.settings)
        self.by_key = {o.key: o for o in self.offers}
        self.cheaper = CheaperFirst(self.offers)  # the agents' rule: a job's first seconds are for cheaper nodes
        self.wakes: set[float] = set()  # when jobs left to cheaper nodes may start anywhere (one event each)
        self.rng = random.Random(options.seed)
        self.decide = decide_fn
        self.jobs = [SimJob(i, t, declared=options.declared_runtimes) for i, t in enumerate(trace)]
        self.now = 0.0
        self.events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        # the queue: per demand key (requested shape, name), FIFO of job indices (the head is the longest queued)
        self.queues: dict[DemandKey, deque[int]] = {}
        self.queued = self.running = self.completed = 0  # jobs now queued and running, and ever completed
        self.nodes: dict[str, SimNode] = {}
        self._node_ids = 0
        self.runtimes = Runtimes()
        # the scaler's stored state (DynamoDB in the stack)
        self.scaler_state = ScalerState()
        self.smoothed_at: float | None = None
        self.outages: dict[Outage, float] = {}  # until when
        self.last_demand_event = -math.inf
        # demand counters per demand key: [queued, running]
        self.counters: dict[DemandKey, list[int]] = {}
        # running jobs per name: [how many, sum of their start times] (what the job records' started_at say)
        self.started: dict[str | None, list[float]] = {}
        self.learn_from_running = options.learn_from_running
        self.wait_aware = options.wait_aware
        self.consolidate = options.consolidate
        self.plan_remaining = options.plan_remaining
        self._shapes_version = 0  # moves when the expected runtimes the scaler sees move
        self._shape_of: dict[DemandKey, Shape] = {}
        self.queued_since: dict[Shape, float] = {}  # the last round's, per shape it planned
        self.enqueued: dict[DemandKey, Enqueued] = {}  # per key (how many, the last when), the rounds' checkpoints:
        self.marks: dict[DemandKey, Checkpoints] = {}  # when its oldest queued job was queued (demand.queue_marks)
        # what the report counts
        self.rounds = 0
        self.decide_calls = 0
        self.changed = True  # anything a round could see changed since the last round
        self.settled: Decision | None = None  # the last round's decision, if it asked for nothing
        self.last_demand: Mapping[Shape, DemandCount] = {}
        self.requeued = 0
        self.killed_by_scale_in = 0
        self.run_twice = 0
        self.peak_nodes = self.peak_volume_storage = 0  # nodes, and bytes of root volumes, at once at most
        self.node_seconds: dict[str, float] = {}
        self.cost = 0.0
        self.idle_seconds = 0.0
        self.samples: list[Sample] = []
        self.waste = dict.fromkeys(WASTE_KEYS, 0.0)  # dollars by where they went, sampled with the timeline
        self.ledger = SimLedger(self.settings, self.by_key)  # the budget's spend ledger (inert without a budget)
        self.last_end = 0.0
        self.preemptions = 0  # spot reclaims counted against jobs' preemption budgets
        self.demoted: set[int] = set()  # jobs past their budget, not finished
        self.quota_refusals = 0
        self.capacity_refusals = 0  # launches EC2 refused for capacity
        self.launches_by_zone: dict[str, int] = {}  # nodes launched per zone (only when zones are simulated)
        self.placement_reason: str | None = None  # the first reason a round gave for a Spot Placement Score order

    # ---- the event loop --------------------------------------------------------------------------

    def _round(self, trigger: str) -> None:
        """One round of the scaler (``engine.Simulation``; a benchmark may put another scaler here)."""
        raise NotImplementedError

    def _push(self, t: float, kind: int, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t, kind, self._seq, payload))

    def _advance(self, t: float) -> None:
        self.now = max(self.now, t)

    def _charge(self, node: SimNode) -> None:
        """Charge ``node`` from when it was last charged until now (and its idle time, if idle); a stopped node its
        root volume, which EBS bills while the instance is stopped."""
        if node.state is NodeState.STOPPED:
            self.cost += (self.now - node.charged_from) * node.volume_price / 3600
        else:
            dt = self.now - node.charged_from
            key = f"{node.instance_type}|{node.market}"
            self.node_seconds[key] = self.node_seconds.get(key, 0.0) + dt
            self.cost += dt * node.price / 3600
            if node.idle_since is not None:
                self.idle_seconds += self.now - max(node.idle_since, node.charged_from)
        node.charged_from = self.now

    def _counter(self, job: SimJob) -> list[int]:
        key = job.key
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = [0, 0]
        return counter

    def _sample(self, t: float) -> None:
        """One point of the timeline, and where that minute's money went (``waste`` in the report): the share of
        each busy node its jobs use (the largest of cores, memory, disk, accelerators), the rest as room, split by
        what the node was doing and whether jobs were waiting. One pass, plain locals: it visits every node."""
        by_type: dict[str, int] = {}
        booting = 0
        jobs = room = draining = idle = pending = 0.0
        for node in self.nodes.values():
            state = node.state
            if state is NodeState.STOPPED:
                continue
            by_type[node.instance_type] = by_type.get(node.instance_type, 0) + 1
            price = node.price
            if state is NodeState.PENDING:
                pending += price
                booting += 1
            elif not node.running:
                idle += price
            else:
                used = _used_share(node.capacity, node.free)
                jobs += price * used
                if state is NodeState.DRAINING:
                    draining += price * (1.0 - used)
                else:
                    room += price * (1.0 - used)
        hours, waste, queued = self.options.sample_interval / 3600, self.waste, self.queued > 0
        waste["jobs"] += jobs * hours
        waste["room_while_queued" if queued else "room_nothing_queued"] += room * hours
        waste["draining_room"] += draining * hours
        waste["idle_while_queued" if queued else "idle_nothing_queued"] += idle * hours
        waste["booting"] += pending * hours
        self.samples.append(
            Sample(t=t, waiting=self.queued, running=self.running, done=self.completed, nodes=by_type, booting=booting)
        )
