"""A discrete-event replay of a trace through a scaling policy, on a virtual clock.

No sleeping, no threads, no wall clock: events come off a heap in (time, sequence) order and every
random draw comes from one ``random.Random(seed)``, so a run gives the same answer on any machine.

What is modelled, and how it maps to the deployed stack:

- Triggers: a round every ``scale_interval`` (the EventBridge schedule); a round on submit ("demand
  changed", debounced as ``shared.services.submit`` does); a round on an instance event that changed a
  node (spot interruption warning, a spot instance gone), as ``reconcile.handle_instance_event`` does.
- A round is ``reconcile``'s loop: decide, act, decide again after acting (falling back when EC2 refused
  an offering), and keep the last pass's scaler state and ``smoothed_at`` for the next round.
- The scaler sees what a real one sees: demand per shape (requests, queued and running), the node
  records (free capacity, running jobs, drain acknowledgement) and EC2's instances. A shape's wall time
  is the expected runtime (``shared.domain.runtimes``: learned per job name from finished jobs), never
  the job's real runtime, which only the simulated node knows.
- EC2: a launch tries the offer's options in order; each try fails with probability ``capacity_errors``
  of its instance type (InsufficientInstanceCapacity: the offering is skipped for ``capacity_failure_ttl``).
  A node's agent is ready ``boot_delay`` after launch. A spot node is interrupted after an exponential
  time with rate ``spot_interruptions`` per node-hour: the two-minute warning returns its jobs to the
  queue at once (the agent evacuates), and the instance is gone two minutes later.
- Nodes admit queued jobs by the agent's rule (``shared.domain.admission.admit``), oldest job first;
  a draining node starts nothing and acknowledges the drain at its next heartbeat (every 30 s), after
  which a round may terminate it once idle. Cost is charged per second from launch to termination.

Not modelled: network and API latency (a round takes no time), SQS visibility timeouts and receive
order beyond "oldest first", job failures and retries, zones, the warm pool's stop/start latency.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from shared.domain.admission import admit
from shared.domain.catalog import instance_type
from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus, Market, NodeRecord, NodeState
from shared.domain.decision import (
    Action,
    Adopt,
    Decision,
    Drain,
    Evict,
    Forget,
    Instance,
    InstanceState,
    Launch,
    SetState,
    Snapshot,
    StartStopped,
    Stop,
    Terminate,
    Undrain,
)
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes
from shared.domain.scaling import ANY_ZONE, decide, offers_for
from shared.domain.settings import ClusterSettings
from shared.sim.guardrails import count_preemptions, over_quota, past_budget, quota_view
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
    capacity_errors: Mapping[str, float] = field(default_factory=dict)  # instance type -> failure probability
    sample_interval: float = 60.0  # seconds between the timeline's samples
    consolidate: bool = True  # tell the scaler when each busy node is expected to empty
    wait_aware: bool = True  # tell the scaler when the oldest queued job of each shape was queued
    learn_from_running: bool = True  # expected runtimes count the running jobs' time so far (shared.domain.runtimes)
    vcpu_quotas: Mapping[str, float] = field(default_factory=dict)  # quota code -> vCPUs (shared.sim.guardrails)
    quota_aware: bool = True  # the scaler is told the quotas (else it learns only from refused launches)


@dataclass(frozen=True, slots=True)
class _Outage:
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


class _Job:
    __slots__ = (
        "attempt",
        "done",
        "index",
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

    def __init__(self, index: int, trace: TraceJob) -> None:
        self.index = index
        self.trace = trace
        self.resources = trace.job.shape.resources
        self.spot = trace.job.shape.preemptible
        self.name = trace.job.name
        self.wall = trace.wall_time
        self.attempt = 0
        self.started_at = 0.0
        self.node: str | None = None
        self.queued_at = trace.submit
        self.wait = 0.0
        self.starts = 0
        self.done = 0
        self.preemptions = 0


class _Node:
    __slots__ = (
        "acked",
        "capacity",
        "charged_from",
        "drain_gen",
        "draining_since",
        "free",
        "id",
        "idle_since",
        "instance",
        "instance_type",
        "launched_at",
        "market",
        "offer_key",
        "price",
        "priority",
        "ready_at",
        "record",
        "record_at",
        "running",
        "state",
    )  # fmt: skip

    def __init__(
        self, *, node_id: str, offer_key: str, type_name: str, market: Market, price: float, capacity: Resources,
        launched_at: float, ready_at: float, priority: float,
    ) -> None:  # fmt: skip
        self.id = node_id
        self.offer_key = offer_key
        self.instance_type = type_name
        self.market = market
        self.price = price
        self.capacity = capacity
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


# Event kinds, in the order they are handled at one instant: jobs end before rounds look at the fleet.
_END, _READY, _ACK, _WARN, _GONE, _SUBMIT, _ROUND = range(7)


class Simulation:
    def __init__(self, trace: Sequence[TraceJob], options: SimOptions, *, decide_fn: Callable[..., Decision] = decide):
        self.options = options
        self.settings = options.settings
        self.offers: list[Offer] = offers_for(self.settings)
        self.by_key = {o.key: o for o in self.offers}
        self.rng = random.Random(options.seed)
        self.decide = decide_fn
        self.jobs = [_Job(i, t) for i, t in enumerate(trace)]
        self.now = 0.0
        self.events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        # the queue: per (resources, preemptible), FIFO of job indices
        self.queues: dict[tuple[Resources, bool], deque[int]] = {}
        self.queued = 0
        self.running = 0
        self.completed = 0
        self.nodes: dict[str, _Node] = {}
        self._node_ids = 0
        self.runtimes = Runtimes()
        # the scaler's stored state (DynamoDB in the stack)
        self.scaler_state = ScalerState()
        self.smoothed_at: float | None = None
        self.outages: dict[_Outage, float] = {}  # until when
        self.last_demand_event = -math.inf
        # demand counters per (resources, preemptible, name): [queued, running]
        self.counters: dict[tuple[Resources, bool, str | None], list[int]] = {}
        # running jobs per name: [how many, sum of their start times] (what the job records' started_at say)
        self.started: dict[str | None, list[float]] = {}
        self.learn_from_running = options.learn_from_running
        self.wait_aware = options.wait_aware
        self.consolidate = options.consolidate
        self._shape_of: dict[tuple[Resources, bool, str | None], Shape] = {}
        # what the report counts
        self.rounds = 0
        self.decide_calls = 0
        self.changed = True  # anything a round could see changed since the last round
        self.settled: Decision | None = None  # the last round's decision, if it asked for nothing
        self.last_demand: Mapping[Shape, DemandCount] = {}
        self.requeued = 0
        self.killed_by_scale_in = 0
        self.run_twice = 0
        self.peak_nodes = 0
        self.node_seconds: dict[str, float] = {}
        self.cost = 0.0
        self.idle_seconds = 0.0
        self.samples: list[Sample] = []
        self.last_end = 0.0
        self.preemptions = 0  # spot reclaims counted against jobs' preemption budgets
        self.demoted: set[int] = set()  # jobs past their budget, not finished
        self.quota_refusals = 0

    # ---- the event loop --------------------------------------------------------------------------

    def _push(self, t: float, kind: int, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t, kind, self._seq, payload))

    def run(self) -> SimResult:
        started, cpu = time.perf_counter(), time.process_time()
        for t, batch in _batches(self.jobs):
            self._push(t, _SUBMIT, batch)
        interval = self.settings.scale_interval
        last_submit = self.jobs[-1].trace.submit if self.jobs else 0.0
        horizon = last_submit + 3 * max((j.wall for j in self.jobs), default=0.0) + 24 * 3600
        self._push(0.0, _ROUND, "schedule")
        next_sample = 0.0
        while self.events:
            t, kind, _, payload = heapq.heappop(self.events)
            if t > horizon:
                break
            while next_sample <= t:
                self._sample(next_sample)
                next_sample += self.options.sample_interval
            self._advance(t)
            if kind != _ROUND:
                self.changed = True
            if kind == _ROUND:
                if payload == "schedule":
                    if self._finished():
                        break
                    self._push(t + interval, _ROUND, "schedule")
                self._round(str(payload))
            else:
                self._handle(kind, payload)
        for node in self.nodes.values():
            self._charge(node)
        self._sample(self.now)
        report = self._report(time.perf_counter() - started)
        report["cpu_seconds"] = round(time.process_time() - cpu, 3)  # the machine may be shared: CPU time too
        return SimResult(report=report, samples=tuple(self.samples))

    def _finished(self) -> bool:
        if self.completed < len(self.jobs):
            return False
        if self.now - self.last_end > TAIL_LIMIT:
            return True
        floor = sum(o.min_nodes for o in self.offers)
        return len(self.nodes) <= floor

    def _advance(self, t: float) -> None:
        self.now = max(self.now, t)

    def _charge(self, node: _Node) -> None:
        """Charge ``node`` from when it was last charged until now (and its idle time, if idle)."""
        if node.state is not NodeState.STOPPED:
            dt = self.now - node.charged_from
            key = f"{node.instance_type}|{node.market}"
            self.node_seconds[key] = self.node_seconds.get(key, 0.0) + dt
            self.cost += dt * node.price / 3600
            if node.idle_since is not None:
                self.idle_seconds += self.now - max(node.idle_since, node.charged_from)
        node.charged_from = self.now

    def _handle(self, kind: int, payload: object) -> None:
        if kind == _SUBMIT:
            assert isinstance(payload, list)
            for index in payload:
                self._enqueue(index)
            self._dispatch()
            if self.now - self.last_demand_event >= DEMAND_DEBOUNCE:
                self.last_demand_event = self.now
                self._round("demand changed")
        elif kind == _END:
            ended = cast(tuple[int, int, str], payload)
            self._job_ended(*ended)
        elif kind == _READY:
            node = self.nodes.get(str(payload))
            if node is not None and node.state is NodeState.PENDING:
                node.state = NodeState.ACTIVE
                node.record = None
                self._dispatch()
        elif kind == _ACK:
            acked_id, gen = cast(tuple[str, int], payload)
            node = self.nodes.get(acked_id)
            if node is not None and node.state is NodeState.DRAINING and node.drain_gen == gen:
                node.acked = True
                node.record = None
        elif kind == _WARN:
            self._interrupted(str(payload))
        elif kind == _GONE:
            node_id = str(payload)
            if node_id in self.nodes:
                self._remove(node_id, requeue_reason="spot instance gone")
                self._round("instance state-change")

    # ---- jobs ------------------------------------------------------------------------------------

    def _counter(self, job: _Job) -> list[int]:
        key = (job.resources, job.spot, job.name)
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = [0, 0]
        return counter

    def _enqueue(self, index: int) -> None:
        job = self.jobs[index]
        job.queued_at = self.now
        job.node = None
        self.queues.setdefault((job.resources, job.spot), deque()).append(index)
        self.queued += 1
        self._counter(job)[0] += 1

    def _dispatch(self) -> None:
        """Each ready node takes the oldest queued jobs that the agent's rule lets it start."""
        accepting = sorted(
            (n for n in self.nodes.values() if n.state is NodeState.ACTIVE and n.free.cores > 1e-9),
            key=lambda n: n.priority,
        )
        if not accepting or not self.queued:
            return
        heads = [(q[0], key) for key, q in self.queues.items() if q]
        heapq.heapify(heads)
        while heads and accepting:
            _, key = heapq.heappop(heads)
            queue = self.queues[key]
            while queue:
                index = queue[0]
                job = self.jobs[index]
                node_id = self._place(job, accepting)
                if node_id is None:
                    break  # nothing of this shape fits anywhere now
                queue.popleft()
                self._start(job, node_id)
                accepting = [n for n in accepting if n.free.cores > 1e-9]
                if queue and heads and queue[0] > heads[0][0]:
                    heapq.heappush(heads, (queue[0], key))
                    break

    def _place(self, job: _Job, accepting: list[_Node]) -> str | None:
        need = job.resources
        for node in accepting:
            if job.spot is False and node.market is Market.SPOT:
                continue
            if not need.fits_in(node.free):  # cheap pre-check; the agent's rule decides
                continue
            node_id = node.id
            record = JobRecord(job=job.trace.job, status=JobStatus.QUEUED, preemptions=job.preemptions)
            verdict = admit(
                job.trace.job, free=node.free, capacity=node.capacity, record=record, draining=False, node_id=node_id,
                spot_node=node.market is Market.SPOT, max_preemptions=self.settings.max_preemptions,
            )  # fmt: skip
            if verdict.starts:
                return node_id
        return None

    def _start(self, job: _Job, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.idle_since is not None:
            self.idle_seconds += self.now - max(node.idle_since, node.charged_from)
            node.idle_since = None
        job.attempt += 1
        job.starts += 1
        job.wait += self.now - job.queued_at
        job.node = node_id
        node.free = node.free - job.resources
        end = self.now + job.wall
        node.running[job.index] = end
        node.record = None
        self.queued -= 1
        self.running += 1
        counter = self._counter(job)
        counter[0] -= 1
        counter[1] += 1
        started = self.started.setdefault(job.name, [0, 0.0])
        started[0] += 1
        started[1] += self.now
        job.started_at = self.now
        self._push(end, _END, (job.index, job.attempt, node_id))

    def _job_ended(self, index: int, attempt: int, node_id: str) -> None:
        job = self.jobs[index]
        if job.attempt != attempt or job.node != node_id:
            return  # this run was cut short (interruption, scale-in) and the job went back to the queue
        node = self.nodes[node_id]
        del node.running[index]
        node.free = node.free + job.resources
        node.record = None
        if not node.running:
            node.idle_since = self.now
        job.node = None
        job.done += 1
        if job.done > 1:
            self.run_twice += 1
        self.running -= 1
        self.completed += 1
        self._counter(job)[1] -= 1
        self._stopped_running(job)
        self.job_finished(job.name, job.wall)
        self.last_end = self.now
        self._dispatch()

    def _stopped_running(self, job: _Job) -> None:
        started = self.started[job.name]
        started[0] -= 1
        started[1] -= job.started_at

    def _requeue_jobs(self, node: _Node) -> int:
        count = 0
        for index in list(node.running):
            job = self.jobs[index]
            node.free = node.free + job.resources
            job.node = None
            self.running -= 1
            self._counter(job)[1] -= 1
            self._stopped_running(job)
            self._enqueue(index)
            count += 1
        node.running.clear()
        node.record = None
        if node.idle_since is None:
            node.idle_since = self.now
        return count

    # ---- nodes and EC2 ---------------------------------------------------------------------------

    def _launch(self, action: Launch) -> bool:
        """Try the options in order; True if EC2 refused an offering (so the round decides again)."""
        refused = False
        offer = self.by_key[action.offer_key]
        for option in action.options:
            if over_quota(self.options.vcpu_quotas, self._live(), offer, option.instance_type, action.count):
                outage = _Outage(instance_type=option.instance_type, zone=ANY_ZONE, market=action.market)
                self.outages[outage] = self.now + self.settings.capacity_failure_ttl
                self.quota_refusals += 1
                refused = True
                continue
            rate = self.options.capacity_errors.get(option.instance_type, 0.0)
            if rate > 0 and self.rng.random() < rate:
                outage = _Outage(instance_type=option.instance_type, zone=ANY_ZONE, market=action.market)
                self.outages[outage] = self.now + self.settings.capacity_failure_ttl
                refused = True
                continue
            self.create_nodes(offer, option.instance_type, action.count)
            break
        return refused

    def create_nodes(self, offer: Offer, type_name: str, count: int) -> list[str]:
        """``count`` new instances of ``type_name`` for ``offer``: booting now, ready after the boot delay."""
        kind = instance_type(type_name)
        market = Market.SPOT if offer.spot else Market.ON_DEMAND
        price = offer.hourly_price if offer.spot else kind.price(self.settings.region)
        capacity = kind.usable(self.settings.node_storage)
        ids = []
        for _ in range(count):
            self._node_ids += 1
            node_id = f"i-{self._node_ids:08d}"
            ready = self.now + self.options.boot_delay
            self.nodes[node_id] = _Node(
                node_id=node_id, offer_key=offer.key, type_name=type_name, market=market, price=price,
                capacity=capacity, launched_at=self.now, ready_at=ready, priority=self.rng.random(),
            )  # fmt: skip
            self._push(ready, _READY, node_id)
            if market is Market.SPOT and self.options.spot_interruptions > 0:
                after = self.rng.expovariate(self.options.spot_interruptions) * 3600
                self._push(self.now + after, _WARN, node_id)
            ids.append(node_id)
        live = sum(1 for n in self.nodes.values() if n.state is not NodeState.STOPPED)
        self.peak_nodes = max(self.peak_nodes, live)
        return ids

    def job_finished(self, name: str | None, seconds: float) -> None:
        """A job ran to its end: what the agents record (per job name) for the scaler."""
        self.runtimes = self.runtimes.add(name, seconds)

    def _interrupted(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.state is NodeState.INTERRUPTED:
            return
        self.preemptions += count_preemptions(node, self.jobs, self.settings.max_preemptions, self.demoted)
        self.requeued += self._requeue_jobs(node)
        node.state = NodeState.INTERRUPTED
        node.record = None
        self._push(self.now + SPOT_WARNING, _GONE, node_id)
        self._dispatch()
        self._round("instance spot-interruption")

    def _live(self) -> list[_Node]:
        return [n for n in self.nodes.values() if n.state is not NodeState.STOPPED]

    def remove_node(self, node_id: str) -> int:
        """Terminate a node; returns how many jobs it was running (they go back to the queue)."""
        return self._remove(node_id, requeue_reason="terminated")

    def _remove(self, node_id: str, *, requeue_reason: str) -> int:
        node = self.nodes.pop(node_id)
        count = self._requeue_jobs(node)
        self._charge(node)
        if count:
            self._dispatch()
        return count

    def _records(self) -> list[NodeRecord]:
        records = []
        for node_id, node in self.nodes.items():
            if node.record is None or self.now - node.record_at > RECORD_REFRESH:
                node.record = NodeRecord(
                    instance_id=node_id,
                    offer_key=node.offer_key,
                    instance_type=node.instance_type,
                    market=node.market,
                    state=node.state,
                    launched_at=node.launched_at,
                    heartbeat_at=self.now if self.now >= node.ready_at else None,
                    draining_since=node.draining_since,
                    free=node.free,
                    running_jobs=MappingProxyType({str(i): str(i) for i in node.running}),
                    drain_acknowledged=node.acked,
                )
                node.record_at = self.now
            records.append(node.record)
        return records

    def _instances(self) -> list[Instance]:
        out = []
        for node_id, node in self.nodes.items():
            if node.instance is None:
                node.instance = Instance(
                    instance_id=node_id,
                    instance_type=node.instance_type,
                    state=InstanceState.STOPPED if node.state is NodeState.STOPPED else InstanceState.RUNNING,
                    market=node.market,
                    offer_key=node.offer_key,
                    launched_at=node.launched_at,
                )
            out.append(node.instance)
        return out

    # ---- a round ---------------------------------------------------------------------------------

    def _demand(self) -> dict[Shape, DemandCount]:
        counts: dict[Shape, list[int]] = {}
        self._shape_of = {}
        for (resources, spot, name), (queued, running) in self.counters.items():
            if queued <= 0 and running <= 0:
                continue
            started = self.started.get(name)
            so_far = (
                (int(started[0]), started[0] * self.now - started[1])
                if started and self.learn_from_running
                else (0, 0.0)
            )
            shape = _shape(resources, _two_digits(self.runtimes.expected(name, FIRST_GUESS, so_far)), spot)
            self._shape_of[(resources, spot, name)] = shape
            total = counts.setdefault(shape, [0, 0])
            total[0] += queued
            total[1] += running
        return {shape: DemandCount(queued=q, running=r) for shape, (q, r) in counts.items()}

    def _round(self, trigger: str) -> None:
        self.rounds += 1
        live_outages = {o: until for o, until in self.outages.items() if until > self.now}
        if len(live_outages) != len(self.outages):
            self.outages = live_outages
            self.changed = True
        demand = self._demand()
        if self._same_as_last_round(demand):
            # decide is pure: with the same snapshot, a settled state and no clock-driven rule in reach it
            # would decide the same nothing again; only its smoothing clock moves.
            if self.smoothed_at is None or self.now - self.smoothed_at >= self.settings.scale_interval:
                self.smoothed_at = self.now
            return
        self.last_demand = demand
        unavailable = set(self.outages)
        passes = 0
        refused = False
        acted = False
        while True:
            snapshot = Snapshot(
                demand=demand, nodes=self._records(), instances=self._instances(), queued_since=self._queued_since(),
                empties_at=self._empties_at(),
                quotas=quota_view(self.options.vcpu_quotas, self.options.quota_aware),
                on_demand_only=past_budget(self.jobs, self.demoted, self._shape_of),
            )  # fmt: skip
            decision = self.decide(
                snapshot, self.settings, self.offers, self.scaler_state, unavailable, now=self.now,
                smoothed_at=self.smoothed_at,
            )  # fmt: skip
            self.decide_calls += 1
            passes += 1
            if not decision.actions:
                break
            if (passes > 1 and not refused) or passes > len(self.offers) + 2:
                break
            refused = self._act(decision.actions)
            acted = True
            unavailable = set(self.outages)
        self.scaler_state = decision.state
        self.smoothed_at = decision.smoothed_at
        self.changed = acted
        self.settled = None if decision.actions else decision

    def _empties_at(self) -> dict[str, float]:
        """When each busy node is expected to be empty: its jobs' start times plus their expected runtimes."""
        if not self.consolidate:
            return {}
        out: dict[str, float] = {}
        for node_id, node in self.nodes.items():
            if node.running and node.state is NodeState.ACTIVE:
                ends = []
                for index in node.running:
                    job = self.jobs[index]
                    shape = self._shape_of.get((job.resources, job.spot, job.name))
                    expected = shape.wall_time if shape is not None else FIRST_GUESS
                    ends.append(max(self.now, job.started_at + expected))
                out[node_id] = max(ends)
        return out

    def _queued_since(self) -> dict[Shape, float]:
        """When the oldest queued job of each shape the scaler sees was queued."""
        if not self.wait_aware:
            return {}
        out: dict[Shape, float] = {}
        for queue in self.queues.values():
            for index in queue:  # FIFO per resources: the head is the oldest, but shapes also split by name
                job = self.jobs[index]
                shape = self._shape_of.get((job.resources, job.spot, job.name))
                if shape is not None and (shape not in out or job.queued_at < out[shape]):
                    out[shape] = job.queued_at
        return out

    def _same_as_last_round(self, demand: Mapping[Shape, DemandCount]) -> bool:
        last = self.settled
        if self.changed or last is None or demand != self.last_demand:
            return False
        smoothed = last.state.smoothed
        converged = all(smoothed.get(key, 0.0) == float(count) for key, count in last.estimates.items())
        return converged and not any(last.state.spot_deficit.values())

    def _act(self, actions: Sequence[Action]) -> bool:
        refused = False
        dispatch = False
        for action in actions:
            match action:
                case Launch():
                    refused |= self._launch(action)
                case Drain():
                    for node_id in action.instance_ids:
                        node = self.nodes.get(node_id)
                        if node is None or node.state not in (NodeState.PENDING, NodeState.ACTIVE):
                            continue
                        node.state = NodeState.DRAINING
                        node.draining_since = self.now
                        node.acked = False
                        node.drain_gen += 1
                        node.record = None
                        self._push(_next_heartbeat(node, self.now), _ACK, (node_id, node.drain_gen))
                case Undrain():
                    for node_id in action.instance_ids:
                        node = self.nodes.get(node_id)
                        if node is None or node.state is not NodeState.DRAINING:
                            continue
                        node.state = NodeState.ACTIVE if self.now >= node.ready_at else NodeState.PENDING
                        node.draining_since = None
                        node.acked = False
                        node.drain_gen += 1
                        node.record = None
                        dispatch = True
                case Terminate():
                    for node_id in action.instance_ids:
                        if node_id in self.nodes:
                            self.killed_by_scale_in += self._remove(node_id, requeue_reason="terminated by scale-in")
                case Stop():
                    for node_id in action.instance_ids:
                        node = self.nodes.get(node_id)
                        if node is not None:
                            self.killed_by_scale_in += self._requeue_jobs(node)
                            self._charge(node)
                            node.state = NodeState.STOPPED
                            node.record = None
                            node.instance = None
                case StartStopped():
                    for node_id in action.instance_ids:
                        node = self.nodes.get(node_id)
                        if node is not None and node.state is NodeState.STOPPED:
                            node.state = NodeState.PENDING
                            node.charged_from = self.now
                            node.idle_since = self.now
                            node.ready_at = self.now + self.options.boot_delay
                            node.record = None
                            node.instance = None
                            self._push(node.ready_at, _READY, node_id)
                case Forget() | Evict():
                    for record in action.nodes:
                        if record.instance_id in self.nodes:
                            self.requeued += self._remove(record.instance_id, requeue_reason=action.reason)
                case SetState() | Adopt():
                    pass  # records and instances always agree here: nothing to adopt or re-state
        if dispatch:
            self._dispatch()
        return refused

    # ---- the report ------------------------------------------------------------------------------

    def _sample(self, t: float) -> None:
        by_type: dict[str, int] = {}
        booting = 0
        for node in self.nodes.values():
            if node.state is NodeState.STOPPED:
                continue
            by_type[node.instance_type] = by_type.get(node.instance_type, 0) + 1
            booting += node.state is NodeState.PENDING
        self.samples.append(
            Sample(t=t, waiting=self.queued, running=self.running, done=self.completed, nodes=by_type, booting=booting)
        )

    def _report(self, elapsed: float) -> dict[str, object]:
        waits = sorted(j.wait for j in self.jobs if j.done)
        lower = lower_bound_cost([j.trace for j in self.jobs], self.offers, self.settings)
        lost = sum(1 for j in self.jobs if not j.done)
        return {
            "jobs": len(self.jobs),
            "completed": self.completed,
            "lost": lost,
            "run_twice": self.run_twice,
            "killed_by_scale_in": self.killed_by_scale_in,
            "requeued": self.requeued,
            "wait_p50_seconds": round(percentile(waits, 0.50), 3),
            "wait_p95_seconds": round(percentile(waits, 0.95), 3),
            "wait_max_seconds": round(waits[-1] if waits else 0.0, 3),
            "node_hours": {k: round(v / 3600, 4) for k, v in sorted(self.node_seconds.items())},
            "idle_node_hours": round(self.idle_seconds / 3600, 4),
            "cost": round(self.cost, 4),
            "lower_bound_cost": round(lower, 4),
            "cost_over_lower_bound": round(self.cost / lower, 4) if lower > 0 else None,
            "peak_nodes": self.peak_nodes,
            "decisions": self.rounds,
            "simulated_seconds": round(self.now, 3),
            "elapsed_seconds": round(elapsed, 3),
            "nodes_at_end": sum(1 for n in self.nodes.values() if n.state is not NodeState.STOPPED),
            "decide_calls": self.decide_calls,
            "target_time_seconds": self.settings.target_time,
            "preemptions": self.preemptions,
            "most_preemptions_of_a_job": max((j.preemptions for j in self.jobs), default=0),
            "quota_refusals": self.quota_refusals,
        }


def simulate(trace: Sequence[TraceJob], options: SimOptions) -> SimResult:
    return Simulation(trace, options).run()


def lower_bound_cost(trace: Sequence[TraceJob], offers: Sequence[Offer], settings: ClusterSettings) -> float:
    """Each job's wall time × the cheapest admissible offer's hourly price × the largest share of that node's
    raw capacity (vCPUs, memory, disk, GPUs) the job needs, summed over jobs. Jobs no offer admits add 0."""
    raw: dict[str, Resources] = {}
    for offer in offers:
        kind = instance_type(offer.instance_types[0])
        raw[offer.key] = Resources(
            cores=float(kind.vcpus), memory=kind.memory, disk=kind.instance_storage or settings.node_storage,
            accelerators=kind.gpus,
        )  # fmt: skip
    by_price = sorted(offers, key=lambda o: (o.hourly_price, o.key))
    per_shape: dict[tuple[Resources, bool], float] = {}
    total = 0.0
    for item in trace:
        shape = item.job.shape
        key = (shape.resources, shape.preemptible)
        rate = per_shape.get(key)
        if rate is None:
            rate = 0.0
            for offer in by_price:
                if (shape.preemptible or not offer.spot) and shape.resources.fits_in(offer.usable):
                    rate = offer.hourly_price * _largest_share(shape.resources, raw[offer.key])
                    break
            per_shape[key] = rate
        total += rate * shape.wall_time / 3600
    return total


def _largest_share(need: Resources, raw: Resources) -> float:
    shares = [need.cores / raw.cores if raw.cores else 0.0, need.memory / raw.memory if raw.memory else 0.0]
    shares.append(need.disk / raw.disk if raw.disk else 0.0)
    if need.accelerators:
        shares.append(need.accelerators / raw.accelerators if raw.accelerators else 1.0)
    return min(1.0, max(shares))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(values)))
    return float(values[min(rank, len(values)) - 1])


_SHAPES: dict[tuple[Resources, float, bool], Shape] = {}


def _shape(resources: Resources, wall_time: float, preemptible: bool) -> Shape:
    key = (resources, wall_time, preemptible)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _SHAPES[key] = Shape(resources=resources, wall_time=wall_time, preemptible=preemptible)
    return shape


def _two_digits(seconds: float) -> float:
    """An expected runtime to two significant digits: finer than anyone knows it, and coarse enough that
    rounds with the same demand plan alike (``scaling`` remembers plans per demand)."""
    if seconds <= 0:
        return 1.0
    scale = 10.0 ** (math.floor(math.log10(seconds)) - 1)
    return max(1.0, round(seconds / scale) * scale)


def _batches(jobs: Sequence[_Job]) -> list[tuple[float, list[int]]]:
    out: list[tuple[float, list[int]]] = []
    for job in jobs:
        if out and out[-1][0] == job.trace.submit:
            out[-1][1].append(job.index)
        else:
            out.append((job.trace.submit, [job.index]))
    return out


def _next_heartbeat(node: _Node, now: float) -> float:
    if now <= node.ready_at:
        return node.ready_at
    beats = math.ceil((now - node.ready_at) / HEARTBEAT_INTERVAL)
    return node.ready_at + beats * HEARTBEAT_INTERVAL
