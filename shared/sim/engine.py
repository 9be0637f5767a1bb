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
  the job's real runtime, which only the simulated node knows. Running jobs are demand of a shape
  whose wall time is what is left of them (``policy.running_remaining``), unless ``plan_remaining`` is off.
  Counters become demand by the deployed round's own rule (``shared.domain.demand.planned``), and when a
  shape's oldest queued job was queued is known as the state table knows it (``demand.queue_marks``: the
  rounds' checkpoints of jobs ever enqueued), not read off the simulated queue.
- EC2: a launch tries the offer's options in order; each try fails with probability ``capacity_errors``
  of its instance type (InsufficientInstanceCapacity: the offering is skipped for ``capacity_failure_ttl``).
  A node's agent is ready ``boot_delay`` after launch. A spot node is interrupted after an exponential
  time with rate ``spot_interruptions`` per node-hour: the two-minute warning returns its jobs to the
  queue at once (the agent evacuates), and the instance is gone two minutes later.
- Nodes admit queued jobs by the agent's rule (``shared.domain.admission.admit``), oldest job first,
  a node that a cheaper node type undercuts leaving a job its first seconds (``shared.domain.cheaper_first``);
  a draining node starts nothing and acknowledges the drain at its next heartbeat (every 30 s), after
  which a round may terminate it once idle. Cost is charged per second from launch to termination.

Not modelled: network and API latency (a round takes no time), SQS visibility timeouts and receive
order beyond "oldest first", job failures and retries, the warm pool's stop/start latency. Node records
change the moment a job starts or ends, where deployed agents write them at their heartbeat (the round reads
the start markers of the nodes it would drain, so starts are not missed there; a node's last end is seen up to
30 s late): ``benchmarks/bench_policy_variants.py``'s ``records-with-markers`` replays that. Zones only when a
Spot Placement Score or a capacity error names one (``placement``).

Modules: ``model`` (options, jobs, nodes, events), ``state`` (what a run holds), ``jobs`` (queue and
admission), ``fleet`` (EC2, node records, actions), ``placement`` (zones, Spot Placement Scores),
``report`` (the report and the lower bound), and here the
event loop and the round.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import cast

from shared.domain.cluster_state import DemandCount, NodeState
from shared.domain.decision import Drain, Snapshot
from shared.domain.demand import expected_end, expected_runtime, outlier_from, planned, queue_marks, runs_long
from shared.domain.jobs import Shape
from shared.sim.fleet import Fleet
from shared.sim.guardrails import past_budget, quota_view
from shared.sim.model import (
    ACK,
    DEMAND_DEBOUNCE,
    END,
    GONE,
    READY,
    ROUND,
    SUBMIT,
    TAIL_LIMIT,
    WAKE,
    WARN,
    Sample,
    SimJob,
    SimNode,
    SimOptions,
    SimResult,
    batches,
    interned_shape,
)
from shared.sim.placement import score_reason
from shared.sim.report import build_report, lower_bound_cost, percentile
from shared.sim.trace import TraceJob

__all__ = ["Sample", "SimOptions", "SimResult", "Simulation", "lower_bound_cost", "percentile", "simulate"]


class Simulation(Fleet):
    def run(self) -> SimResult:
        started, cpu = time.perf_counter(), time.process_time()
        for t, batch in batches(self.jobs):
            self._push(t, SUBMIT, batch)
        interval = self.settings.scale_interval
        last_submit = self.jobs[-1].trace.submit if self.jobs else 0.0
        horizon = last_submit + 3 * max((j.wall for j in self.jobs), default=0.0) + 24 * 3600
        self._push(0.0, ROUND, "schedule")
        next_sample = 0.0
        while self.events:
            t, kind, _, payload = heapq.heappop(self.events)
            if t > horizon:
                break
            while next_sample <= t:
                self._sample(next_sample)
                next_sample += self.options.sample_interval
            self._advance(t)
            if kind != ROUND:
                self.changed = True
            if kind == ROUND:
                if payload == "schedule":
                    if self._finished():
                        break
                    self._push(t + interval, ROUND, "schedule")
                self._round(str(payload))
            else:
                self._handle(kind, payload)
        for node in self.nodes.values():
            self._charge(node)
        self._sample(self.now)
        report = build_report(self, time.perf_counter() - started)
        report.update(self.ledger.report(self.now), **self._never_started(), **self._zones_report())
        report["cpu_seconds"] = round(time.process_time() - cpu, 3)  # the machine may be shared: CPU time too
        return SimResult(report=report, samples=tuple(self.samples))

    def _finished(self) -> bool:
        if self.ledger.ended and not self.running and not self.nodes:
            return True  # the budget or a lease ran out: what never started never will
        if self.completed < len(self.jobs):
            return False
        if self.now - self.last_end > TAIL_LIMIT:
            return True
        floor = sum(o.min_nodes for o in self.offers)  # the warm pool's stopped nodes stay, as deployed
        return sum(1 for n in self.nodes.values() if n.state is not NodeState.STOPPED) <= floor

    def _handle(self, kind: int, payload: object) -> None:
        if kind == SUBMIT:
            assert isinstance(payload, list)
            for index in payload:
                self._enqueue(index)
            self._dispatch()
            if self.now - self.last_demand_event >= DEMAND_DEBOUNCE:
                self.last_demand_event = self.now
                self._round("demand changed")
        elif kind == END:
            ended = cast(tuple[int, int, str], payload)
            self._job_ended(*ended)
        elif kind == READY:
            node = self.nodes.get(str(payload))
            if node is not None and node.state is NodeState.PENDING:
                node.state = NodeState.ACTIVE
                node.record = None
                self._dispatch()
        elif kind == ACK:
            acked_id, gen = cast(tuple[str, int], payload)
            node = self.nodes.get(acked_id)
            if node is not None and node.state is NodeState.DRAINING and node.drain_gen == gen:
                node.acked = True
                node.record = None
        elif kind == WAKE:
            self._dispatch()
        elif kind == WARN:
            self._interrupted(str(payload))
        elif kind == GONE:
            node_id = str(payload)
            if node_id in self.nodes:
                self._remove(node_id, requeue_reason="spot instance gone")
                self._round("instance state-change")

    # ---- a round ---------------------------------------------------------------------------------

    def _demand(self) -> dict[Shape, DemandCount]:
        """The deployed round's rule (``shared.domain.demand.planned``) on the simulator's counters."""
        before, since = self._shape_of, None
        if self.wait_aware:
            self.marks = queue_marks(self.marks, self.counters, self.enqueued, self.now)
            since = {key: marks[0][0] for key, marks in self.marks.items()}
        plan = planned(
            self.counters, self.started, self.runtimes, self.now, since=since,
            learn_from_running=self.learn_from_running, plan_remaining=self.plan_remaining, shape=interned_shape,
        )  # fmt: skip
        self._shape_of, self.queued_since = plan.shape_of, plan.queued_since
        if self._shape_of != before:
            self._shapes_version += 1
        return plan.counts

    def _round(self, trigger: str) -> None:
        self.rounds += 1
        live_outages = {o: until for o, until in self.outages.items() if until > self.now}
        if len(live_outages) != len(self.outages):
            self.outages = live_outages
            self.changed = True
        demand = self._demand()
        busy = self.queued + self.running > 0
        if not self.ledger.crossing(self.now, busy=busy) and self._same_as_last_round(demand):
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
                demand=demand, nodes=self._records(), instances=self._instances(), queued_since=self.queued_since,
                empties_at=_Lazy(self._empties_at), spent=self.ledger.spent(self.now),
                quotas=quota_view(self.options.vcpu_quotas, self.options.quota_aware),
                on_demand_only=past_budget(self.jobs, self.demoted, self._shape_of),
                zones=self.options.zones, placement_scores=self.options.placement_scores,
            )  # fmt: skip
            decision = self.decide(
                snapshot, self.settings, self.offers, self.scaler_state, unavailable, now=self.now,
                smoothed_at=self.smoothed_at,
            )  # fmt: skip
            self.decide_calls += 1
            passes += 1
            if self.placement_reason is None and self.options.placement_scores:
                self.placement_reason = score_reason(decision.reasons)
            if not decision.actions:
                break
            if (passes > 1 and not refused) or passes > len(self.offers) + 2:
                break
            refused = self._act(decision.actions)
            acted = True
            unavailable = set(self.outages)
        self.ledger.record(self.now, self.nodes.values(), busy=busy)
        if self.ledger.lease_ended_at == self.now:
            acted |= self._tear_down(str(self.ledger.lease_reason))
        self.scaler_state = decision.state
        self.smoothed_at = decision.smoothed_at
        self.changed = acted
        self.settled = None if decision.actions else decision

    def _tear_down(self, reason: str) -> bool:
        """TeardownCluster: every node drains (busy ones finish what they run) and none may come (max 0)."""
        self.offers = [replace(o, min_nodes=0, max_nodes=0) for o in self.offers]
        self.by_key = {o.key: o for o in self.offers}
        live: dict[str, list[str]] = {}
        for node_id, node in self.nodes.items():
            if node.state in (NodeState.PENDING, NodeState.ACTIVE):
                live.setdefault(node.offer_key, []).append(node_id)
        self._act(
            [Drain(offer_key=k, instance_ids=tuple(ids), reason=f"{reason}: teardown") for k, ids in live.items()]
        )
        return True  # the next round decides again, with the fleet's new bounds

    def _never_started(self) -> dict[str, int]:
        return {"never_started": sum(1 for j in self.jobs if not j.starts)} if self.ledger.on else {}

    def _zones_report(self) -> dict[str, object]:
        if not self.options.zones:
            return {}
        return {
            "launches_by_zone": dict(sorted(self.launches_by_zone.items())),
            "capacity_refusals": self.capacity_refusals,
            "placement_reason": self.placement_reason,
        }

    def _empties_at(self) -> dict[str, float]:
        """When each busy node is expected to be empty: its jobs' start times plus their expected runtimes."""
        if not self.consolidate:
            return {}
        out: dict[str, float] = {}
        version = self._shapes_version
        for node_id, node in self.nodes.items():
            if node.running and node.state is NodeState.ACTIVE:
                if node.empties is None or node.empties[0] != version:
                    long = runs_long((j.key for j in self._on(node)), self._shape_of)  # no end known well enough
                    node.empties = (version, math.inf, math.inf) if long else (version, *self._latest_end(node))
                _, latest, overrun_at = node.empties
                if latest == math.inf:
                    continue
                if self.now >= overrun_at:  # a job became an outlier: its expected end moves with the clock
                    latest = max(expected_end(j.key, j.started_at, self._shape_of, self.now) for j in self._on(node))
                out[node_id] = max(self.now, latest)
        return out

    def _latest_end(self, node: SimNode) -> tuple[float, float]:
        """The latest end of ``node``'s jobs by their expected runtimes, and from when one of them is an outlier
        (``demand.outlier_from``): until then the first is what ``demand.expected_end`` gives."""
        latest, overrun_at, shape_of = -math.inf, math.inf, self._shape_of
        for job in self._on(node):
            latest = max(latest, job.started_at + expected_runtime(job.key, shape_of))
            overrun_at = min(overrun_at, outlier_from(job.key, job.started_at, shape_of))
        return latest, overrun_at

    def _on(self, node: SimNode) -> list[SimJob]:
        return [self.jobs[index] for index in node.running]

    def _same_as_last_round(self, demand: Mapping[Shape, DemandCount]) -> bool:
        last = self.settled
        if self.changed or last is None or demand != self.last_demand:
            return False
        smoothed = last.state.smoothed
        converged = all(smoothed.get(key, 0.0) == float(count) for key, count in last.estimates.items())
        return converged and not any(last.state.spot_deficit.values())


class _Lazy(Mapping[str, float]):
    """A mapping computed on first use: ``decide`` reads when nodes empty only when an offer has surplus nodes,
    and working it out for every busy node at every round was a tenth of a long replay."""

    def __init__(self, compute: Callable[[], dict[str, float]]) -> None:
        self._compute: Callable[[], dict[str, float]] | None = compute
        self._value: dict[str, float] = {}

    def _get(self) -> dict[str, float]:
        if self._compute is not None:
            self._value, self._compute = self._compute(), None
        return self._value

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def simulate(trace: Sequence[TraceJob], options: SimOptions) -> SimResult:
    return Simulation(trace, options).run()
