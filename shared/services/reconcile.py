"""One scaling round (observe → decide → act → record), and what an instance event does to its node.

A round holds the lease (a conditional write with expiry) from start to end, so overlapping triggers
cannot both scale; a trigger that finds the lease held skips, because the running round (or the next
scheduled one) sees the same level of demand. Acting may refuse launches for lack of capacity: the
offerings go into the capacity-failure cache and the round decides again at once, so the fallback
(the next type of the class, the next-cheapest offer, on-demand per preemptibleCompensation) happens
in the same round. The last pass decides after acting; its state is what the next round starts from,
and any action it still proposes (say, a terminate EC2 refused) is logged for the next round to retry.

Nothing here imports boto3: the round talks to ``ports``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any

from shared.domain import preemption
from shared.domain.cluster_state import Market, NodeRecord, NodeState
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
    describe_action,
)
from shared.domain.node_types import Offer
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.domain.scaling import ANY_ZONE, adopted_record, decide, node_hourly_price
from shared.domain.settings import ClusterSettings
from shared.formats.decision_record import DecisionRecord, PassSummary
from shared.services import telemetry
from shared.services.ports import (
    BatchResult,
    CapacityCache,
    DecisionLog,
    Fleet,
    InstanceFailure,
    JobQueueError,
    JobReturns,
    JobStore,
    LaunchFailure,
    Lease,
    NodeStore,
    Offering,
    PlacementScores,
    QuotaSource,
    ScalerStateStore,
    StoreError,
)

LEASE_TTL = 300.0  # seconds; longer than a round may run (the Lambda timeout must not exceed it)
NO_SUCH_INSTANCE = "InvalidInstanceID.NotFound"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlane:
    """Everything a round talks to."""

    jobs: JobStore
    nodes: NodeStore
    scaler_state: ScalerStateStore
    lease: Lease
    capacity: CapacityCache
    decisions: DecisionLog
    queue: JobReturns
    fleet: Fleet
    quotas: QuotaSource | None = None  # None: no quota is known, nothing is capped
    placement: PlacementScores | None = None  # None: spot launches in price order


@dataclass(slots=True)
class ActionCounts:
    """What a round did, counted (filled in while it acts)."""

    launched: int = 0
    started: int = 0
    undrained: int = 0
    drained: int = 0
    stopped: int = 0
    terminated: int = 0
    requeued_jobs: int = 0

    def changes(self) -> int:
        """Instances and nodes changed (requeued jobs follow from those)."""
        return self.launched + self.started + self.undrained + self.drained + self.stopped + self.terminated


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    round_id: str
    trigger: str
    ran: bool
    skipped: str | None = None  # why the round did not run
    decision: Decision | None = None  # the last pass's
    passes: int = 0
    counts: ActionCounts = field(default_factory=ActionCounts)
    launch_failures: tuple[LaunchFailure, ...] = ()
    errors: tuple[str, ...] = ()
    nodes: tuple[NodeRecord, ...] = ()  # the records after the round
    hourly_cost: float = 0.0  # of the nodes running after the round
    decide_seconds: float = 0.0
    round_seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A small JSON summary (the Lambda's answer and the idempotency record)."""
        out: dict[str, object] = {"round_id": self.round_id, "trigger": self.trigger, "ran": self.ran}
        if self.skipped:
            out["skipped"] = self.skipped
            return out
        out.update(
            passes=self.passes,
            **asdict(self.counts),
            launch_failures=[f"{f.instance_type}@{f.zone or ANY_ZONE}: {f.code}" for f in self.launch_failures],
            errors=list(self.errors),
            hourly_cost=round(self.hourly_cost, 4),
        )
        if self.decision is not None:
            out["wanted"] = {k: v for k, v in self.decision.wanted.items() if v}
            out["queued_jobs"] = self.decision.queued_jobs
        return out


def run_round(
    plane: ControlPlane,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    *,
    now: float,
    round_id: str,
    trigger: str = "schedule",
    lease_ttl: float = LEASE_TTL,
) -> RoundResult:
    """One round, unless another holds the lease. ``round_id`` also keys the launches' ClientTokens."""
    if not plane.lease.acquire(round_id, now, lease_ttl):
        return RoundResult(round_id=round_id, trigger=trigger, ran=False, skipped="another round holds the lease")
    try:
        return _Round(plane, settings, offers, now=now, round_id=round_id, trigger=trigger).run()
    finally:
        plane.lease.release(round_id)


def return_jobs(
    plane: ControlPlane,
    node: NodeRecord,
    *,
    reason: str,
    now: float,
    preempted: bool = False,
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
) -> list[str]:
    """Put the jobs ``node`` was running back in the queue; returns the ids requeued.

    The job store moves first (only jobs still RUNNING on this node, so a job that finished or moved
    is left alone); then their messages become visible at once. A message that cannot be made visible
    (its handle went stale) comes back by itself when its visibility timeout ends: nothing is lost.
    """
    requeued: list[str] = []
    handles: list[str] = []
    for job_id, receipt_handle in node.running_jobs.items():
        if plane.jobs.requeue_job(
            job_id, node.instance_id, reason=reason, now=now, preempted=preempted, max_preemptions=max_preemptions
        ):
            requeued.append(job_id)
            handles.append(receipt_handle)
    if handles:
        plane.queue.put_back(handles)
    return requeued


class InstanceEventKind(enum.StrEnum):
    STATE_CHANGE = "state-change"
    SPOT_INTERRUPTION = "spot-interruption"
    REBALANCE = "rebalance-recommendation"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceEventResult:
    instance_id: str
    known: bool  # a node of this cluster
    node_changed: bool
    requeued_jobs: tuple[str, ...] = ()
    round: RoundResult | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "known": self.known,
            "node_changed": self.node_changed,
            "requeued_jobs": list(self.requeued_jobs),
            "round": None if self.round is None else self.round.to_dict(),
        }


def handle_instance_event(
    plane: ControlPlane,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    *,
    kind: InstanceEventKind,
    instance_id: str,
    ec2_state: str | None,
    now: float,
    round_id: str,
) -> InstanceEventResult:
    """Mark the node, return its jobs if it is going away, and run a round if the fleet lost capacity.

    - spot interruption warning (two minutes left): INTERRUPTED, jobs back to the queue now.
    - rebalance recommendation (elevated risk, maybe hours ahead): DRAINING: it takes no new work and a
      replacement is launched, but running jobs keep going; an interruption warning would return them.
    - state change to stopping/stopped: STOPPED; to shutting-down/terminated: the record is removed;
      either way its jobs go back to the queue. pending/running change nothing here.
    Events for instances without a record (another cluster's, or one already cleaned up) are ignored:
    EventBridge cannot filter EC2 events by tag, and our own terminations must not wake the scaler.
    """
    node = plane.nodes.get_node(instance_id)
    if node is None:
        return InstanceEventResult(instance_id=instance_id, known=False, node_changed=False)
    requeued: list[str] = []
    changed = False
    if kind is InstanceEventKind.SPOT_INTERRUPTION:
        if node.state is not NodeState.INTERRUPTED or node.busy:
            requeued = return_jobs(
                plane, node, reason="spot interruption warning", now=now, **_reclaim(node, settings, reclaim=True)
            )
            plane.nodes.put_node(replace(node, state=NodeState.INTERRUPTED, running_jobs=MappingProxyType({})))
            changed = True
    elif kind is InstanceEventKind.REBALANCE:
        if node.state in (NodeState.PENDING, NodeState.ACTIVE):
            changed = plane.nodes.mark_draining(instance_id, now)
    elif ec2_state in ("stopping", "stopped"):
        if node.state is not NodeState.STOPPED or node.busy:
            requeued = return_jobs(plane, node, reason=f"node {ec2_state}", now=now)
            plane.nodes.put_node(replace(node, state=NodeState.STOPPED, running_jobs=MappingProxyType({})))
            changed = True
    elif ec2_state in ("shutting-down", "terminated"):
        requeued = return_jobs(plane, node, reason=f"node {ec2_state}", now=now, **_reclaim(node, settings))
        plane.nodes.remove_node(instance_id)
        changed = True
    result = None
    if changed:
        result = run_round(plane, settings, offers, now=now, round_id=round_id, trigger=f"instance {kind}")
    return InstanceEventResult(
        instance_id=instance_id, known=True, node_changed=changed, requeued_jobs=tuple(requeued), round=result
    )


@dataclass(slots=True)
class _Tally:
    counts: ActionCounts = field(default_factory=ActionCounts)
    launch_failures: list[LaunchFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: list[dict[str, object]] = field(default_factory=list)


class _Round:
    def __init__(
        self,
        plane: ControlPlane,
        settings: ClusterSettings,
        offers: Sequence[Offer],
        *,
        now: float,
        round_id: str,
        trigger: str,
    ) -> None:
        self.plane, self.settings, self.offers = plane, settings, list(offers)
        self.now, self.round_id, self.trigger = now, round_id, trigger
        self.tally = _Tally()
        self.instances: dict[str, Instance] = {}

    def run(self) -> RoundResult:
        started = time.perf_counter()
        plane = self.plane
        state, version = plane.scaler_state.load()
        smoothed_at = _last_smoothed_at(plane.decisions)
        demand = plane.jobs.demand()
        self.instances = {i.instance_id: i for i in plane.fleet.describe()}
        zones = plane.fleet.zones()
        observed = _observed_extras(plane, self.settings, self.offers, zones, self.now)
        unavailable: set[Offering] = set(plane.capacity.unavailable(self.now))
        nodes = plane.nodes.list_nodes()
        decide_seconds = 0.0
        passes = 0
        refused = False
        leftover: tuple[Action, ...] = ()
        summaries: list[PassSummary] = []
        while True:
            instances = tuple(self.instances.values())
            snapshot = Snapshot(demand=demand, nodes=nodes, instances=instances, zones=zones, **observed)
            clock = time.perf_counter()
            decision = decide(
                snapshot, self.settings, self.offers, state, unavailable, now=self.now, smoothed_at=smoothed_at
            )
            decide_seconds += time.perf_counter() - clock
            passes += 1
            summaries.append(PassSummary.of(decision))
            if not decision.actions:
                break
            # Act on the first pass; after that only when the pass before found offerings EC2 refused
            # (the fallback), so an action that keeps failing for another reason is not hammered.
            if (passes > 1 and not refused) or passes > len(self.offers) + 2:
                leftover = decision.actions
                break
            refused = self._act(decision, pass_number=passes - 1, unavailable=unavailable)
            nodes = plane.nodes.list_nodes()

        saved = plane.scaler_state.save(decision.state, version)
        if not saved:
            self.tally.errors.append("the scaler state changed during the round (lease lost?); not saved")
        by_key = {o.key: o for o in self.offers}
        running = [n for n in nodes if n.state in (NodeState.PENDING, NodeState.ACTIVE, NodeState.DRAINING)]
        hourly_cost = sum(node_hourly_price(n, by_key.get(n.offer_key), self.settings.region) for n in running)
        round_seconds = time.perf_counter() - started
        record = DecisionRecord(
            round_id=self.round_id,
            at=self.now,
            trigger=self.trigger,
            passes=passes,
            smoothed_at=decision.smoothed_at,
            decision=summaries[0],
            later_passes=tuple(summaries[1:]),
            done=tuple(self.tally.done),
            launch_failures=tuple(_failure_dict(f) for f in self.tally.launch_failures),
            errors=tuple(self.tally.errors),
            left_for_next_round=tuple(describe_action(a) for a in leftover),
            hourly_cost=round(hourly_cost, 4),
            decide_seconds=round(decide_seconds, 6),
            round_seconds=round(round_seconds, 6),
        )
        plane.decisions.record(record.round_id, record.at, record.to_json())
        t = self.tally
        return RoundResult(
            round_id=self.round_id,
            trigger=self.trigger,
            ran=True,
            decision=decision,
            passes=passes,
            counts=t.counts,
            launch_failures=tuple(t.launch_failures),
            errors=tuple(t.errors),
            nodes=tuple(nodes),
            hourly_cost=hourly_cost,
            decide_seconds=decide_seconds,
            round_seconds=round_seconds,
        )

    # --- acting -----------------------------------------------------------------------------------

    def _act(self, decision: Decision, *, pass_number: int, unavailable: set[Offering]) -> bool:
        """Carry out the actions; True if EC2 refused an offering (so deciding again may fall back)."""
        refused = False
        for action in decision.actions:
            try:
                refused |= self._do(action, pass_number=pass_number, unavailable=unavailable)
            except (StoreError, JobQueueError) as error:  # one failed write must not stop the other actions
                self.tally.errors.append(f"{action.kind}: {error}")
            self.tally.done.append(describe_action(action))
        return refused

    def _do(self, action: Action, *, pass_number: int, unavailable: set[Offering]) -> bool:
        match action:
            case Launch():
                return self._launch(action, pass_number=pass_number, unavailable=unavailable)
            case Adopt():
                for instance in action.instances:
                    self.plane.nodes.put_node(adopted_record(instance))
            case Forget():
                for node in action.nodes:
                    self._return_jobs(node, "node gone from EC2", **_reclaim(node, self.settings))
                    self.plane.nodes.remove_node(node.instance_id)
            case Evict():
                self._evict(action)
            case SetState():
                self._set_node_states(action)
            case Undrain():
                self.tally.counts.undrained += sum(
                    self.plane.nodes.mark_state(i, NodeState.ACTIVE, self.now) for i in action.instance_ids
                )
            case Drain():
                self.tally.counts.drained += sum(
                    self.plane.nodes.mark_draining(i, self.now) for i in action.instance_ids
                )
            case StartStopped():
                result = self.plane.fleet.start(action.instance_ids)
                self.tally.counts.started += self._switched("start", result, NodeState.PENDING, InstanceState.PENDING)
            case Stop():
                result = self.plane.fleet.stop(action.instance_ids)
                self.tally.counts.stopped += self._switched("stop", result, NodeState.STOPPED, InstanceState.STOPPING)
            case Terminate():
                self._terminate(action.instance_ids)
        return False

    def _return_jobs(self, node: NodeRecord, reason: str, **reclaim: Any) -> None:
        self.tally.counts.requeued_jobs += len(return_jobs(self.plane, node, reason=reason, now=self.now, **reclaim))

    def _evict(self, action: Evict) -> None:
        """Silent agents: their jobs go back; a static node is kept (and cleared), any other terminated."""
        for node in action.nodes:
            self._return_jobs(node, "its agent went silent")
            if node.static:
                self.plane.nodes.put_node(replace(node, running_jobs=MappingProxyType({})))
        doomed = [n.instance_id for n in action.nodes if not n.static]
        if doomed:
            self._terminate(doomed)

    def _set_node_states(self, action: SetState) -> None:
        for node in action.nodes:
            if action.state is NodeState.STOPPED:
                self._return_jobs(node, "node stopped")
                self.plane.nodes.put_node(replace(node, state=NodeState.STOPPED, running_jobs=MappingProxyType({})))
            else:
                self.plane.nodes.mark_state(node.instance_id, action.state, self.now)

    def _switched(self, verb: str, result: BatchResult, node: NodeState, instance: InstanceState) -> int:
        """Record a start or stop: each instance EC2 accepted changes state; how many it accepted."""
        for instance_id in result.done:
            self.plane.nodes.mark_state(instance_id, node, self.now)
            self._set_state(instance_id, instance)
        self._failed(verb, result.failed)
        return len(result.done)

    def _terminate(self, instance_ids: Sequence[str]) -> None:
        result = self.plane.fleet.terminate(instance_ids)
        # An instance EC2 no longer knows is as gone as one it just terminated.
        gone = [*result.done, *(f.instance_id for f in result.failed if f.code == NO_SUCH_INSTANCE)]
        self.plane.nodes.remove_nodes(gone)
        for instance_id in gone:
            self.instances.pop(instance_id, None)
        self.tally.counts.terminated += len(result.done)
        self._failed("terminate", [f for f in result.failed if f.code != NO_SUCH_INSTANCE])

    def _failed(self, verb: str, failures: Sequence[InstanceFailure]) -> None:
        self.tally.errors += [f"{verb} {f.instance_id}: {f.code}: {f.message}" for f in failures]

    def _launch(self, action: Launch, *, pass_number: int, unavailable: set[Offering]) -> bool:
        plane, now = self.plane, self.now
        result = plane.fleet.launch(action, idempotency_key=f"{self.round_id}:{pass_number}")
        self.instances.update((instance.instance_id, instance) for instance in result.instances)
        plane.nodes.put_nodes(
            [
                NodeRecord(
                    instance_id=instance.instance_id,
                    offer_key=action.offer_key,
                    instance_type=instance.instance_type,
                    market=action.market,
                    state=NodeState.PENDING,
                    zone=instance.zone,
                    static=action.static,
                    launched_at=now,
                )
                for instance in result.instances
            ]
        )
        self.tally.counts.launched += len(result.instances)
        refused = False
        for failure in result.failures:
            self.tally.launch_failures.append(failure)
            if not failure.offering_error:
                self.tally.errors.append(f"launch {action.offer_key} as {failure.instance_type}: {failure.code}")
                continue
            offering = Offering(
                instance_type=failure.instance_type, zone=failure.zone or ANY_ZONE, market=action.market
            )
            plane.capacity.record_failure(
                offering, f"{failure.code}: {failure.message}", now, self.settings.capacity_failure_ttl
            )
            unavailable.add(offering)
            refused = True
        return refused

    def _set_state(self, instance_id: str, state: InstanceState) -> None:
        instance = self.instances.get(instance_id)
        if instance is not None:
            self.instances[instance_id] = replace(instance, state=state)


def _reclaim(node: NodeRecord, settings: ClusterSettings, *, reclaim: bool = False) -> dict[str, Any]:
    """``return_jobs``' preemption arguments: a spot node's loss (or its interruption warning) is a reclaim."""
    return {"preempted": reclaim or node.market is Market.SPOT, "max_preemptions": settings.max_preemptions}


def _observed_extras(
    plane: ControlPlane, settings: ClusterSettings, offers: Sequence[Offer], zones: Sequence[str], now: float
) -> dict[str, Any]:
    """What a round observes beyond demand and the fleet: quotas, Spot Placement Scores, jobs past their
    preemption budget. Each source says "unknown" (None / {}) rather than fail the round."""
    return {
        "quotas": plane.quotas.read(now) if plane.quotas is not None else None,
        "placement_scores": plane.placement.scores(offers, zones, now) if plane.placement is not None else {},
        "on_demand_only": preemption.past_budget(plane.jobs.preempted_jobs(), settings.max_preemptions),
    }


def _last_smoothed_at(decisions: DecisionLog) -> float | None:
    for entry in decisions.recent(1):
        return DecisionRecord.from_json(entry).smoothed_at
    return None


def _failure_dict(failure: LaunchFailure) -> dict[str, object]:
    return {
        "instance_type": failure.instance_type,
        "zone": failure.zone,
        "code": failure.code,
        "message": failure.message,
        "offering_error": failure.offering_error,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricPoint:
    name: str
    unit: str  # CloudWatch's unit name: Count, Milliseconds, None
    value: float
    dimensions: Mapping[str, str] = field(default_factory=dict)  # beyond the cluster's


def round_metrics(result: RoundResult) -> list[MetricPoint]:
    """What a round reports to CloudWatch (names from ``telemetry``); nothing for a skipped round."""
    if not result.ran or result.decision is None:
        return []
    d = result.decision
    actions = result.counts.changes()
    points = [
        MetricPoint(name=telemetry.METRIC_QUEUED_JOBS, unit="Count", value=d.queued_jobs),
        MetricPoint(name=telemetry.METRIC_RUNNING_JOBS, unit="Count", value=d.running_jobs),
        MetricPoint(name=telemetry.METRIC_HOURLY_COST, unit="None", value=round(result.hourly_cost, 4)),
        MetricPoint(name=telemetry.METRIC_DECISION_LATENCY, unit="Milliseconds", value=result.round_seconds * 1000),
        MetricPoint(name=telemetry.METRIC_DECISIONS, unit="Count", value=actions),
        MetricPoint(name=telemetry.METRIC_LAUNCH_FAILURES, unit="Count", value=len(result.launch_failures)),
    ]
    counts: dict[tuple[str, str, str], int] = {}
    for node in result.nodes:
        dims = (node.instance_type, str(node.market), str(node.state))
        counts[dims] = counts.get(dims, 0) + 1
    points += [
        MetricPoint(
            name=telemetry.METRIC_NODES,
            unit="Count",
            value=count,
            dimensions={"node_type": node_type, "market": market, "state": state},
        )
        for (node_type, market, state), count in sorted(counts.items())
    ]
    return points
