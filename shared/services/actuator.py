"""The one actuator: carries out the domain's actions on EC2 and the stores, and counts what it did.

Scaling rounds, instance events and LaunchCluster's static nodes all act through it, so a launch records
its nodes and its refused offerings the same way on every path, a terminate treats an instance EC2 no
longer knows as gone, and a node's jobs go back to the queue by one rule (``return_jobs``). The fleet
adapter groups ids into one call per batch and halves a failing batch to isolate the bad ids
(``Fleet.start``/``stop``/``terminate`` return what was done and what failed, per id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import (
    Action,
    Adopt,
    Drain,
    Evict,
    Forget,
    Instance,
    InstanceState,
    Launch,
    SetState,
    StartStopped,
    Stop,
    Terminate,
    Undrain,
    describe_action,
)
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.domain.scaling import ANY_ZONE, adopted_record
from shared.services.ports import (
    LARGER_ROOT_VOLUMES,
    BatchResult,
    CapacityCache,
    Fleet,
    InstanceFailure,
    JobQueueError,
    JobReturns,
    JobStore,
    LaunchFailure,
    LaunchResult,
    NodeStore,
    Offering,
    StoreError,
)

NO_SUCH_INSTANCE = "InvalidInstanceID.NotFound"


@dataclass(slots=True)
class ActionCounts:
    """What was done, counted (filled in while acting)."""

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


@dataclass(slots=True)
class Tally:
    counts: ActionCounts = field(default_factory=ActionCounts)
    launch_failures: list[LaunchFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: list[dict[str, object]] = field(default_factory=list)  # each action as the decision log shows it
    requeued: list[str] = field(default_factory=list)  # the ids of the jobs put back in the queue


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetPorts:
    """What acting touches. ``jobs``/``queue`` return a lost node's jobs; LaunchCluster needs neither."""

    fleet: Fleet
    nodes: NodeStore
    capacity: CapacityCache
    jobs: JobStore | None = None
    queue: JobReturns | None = None


class Actuator:
    """Acts at one moment ``now``; ``instances`` (what EC2 showed) is kept current for deciding again."""

    def __init__(
        self,
        ports: FleetPorts,
        *,
        now: float,
        capacity_failure_ttl: float,
        instances: Iterable[Instance] = (),
        max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    ) -> None:
        self.ports, self.now, self.capacity_failure_ttl = ports, now, capacity_failure_ttl
        self.max_preemptions = max_preemptions  # the cluster default; a job's own maxPreemptions wins
        self.instances: dict[str, Instance] = {i.instance_id: i for i in instances}
        self.tally = Tally()

    def act(
        self, actions: Sequence[Action], *, launch_key: str, unavailable: set[Offering], keep_going: bool = True
    ) -> bool:
        """Carry out ``actions``; True if EC2 refused an offering (so deciding again may fall back).

        ``launch_key`` keys the launches' ClientTokens: the same key never launches twice. With ``keep_going``
        a failed store or queue call is counted as an error and the other actions still run; without, it raises.
        """
        refused = False
        for action in actions:
            try:
                refused |= self._do(action, launch_key=launch_key, unavailable=unavailable)
            except (StoreError, JobQueueError) as error:  # one failed write must not stop the other actions
                if not keep_going:
                    raise
                self.tally.errors.append(f"{action.kind}: {error}")
            self.tally.done.append(describe_action(action))
        return refused

    def _do(self, action: Action, *, launch_key: str, unavailable: set[Offering]) -> bool:
        nodes, counts = self.ports.nodes, self.tally.counts
        match action:
            case Launch():
                return self.launch(action, idempotency_key=launch_key, unavailable=unavailable).refused
            case Adopt():
                for instance in action.instances:
                    nodes.put_node(adopted_record(instance))
            case Forget():
                for node in action.nodes:
                    # A spot node's loss is a reclaim: it counts against the jobs' preemption budget, not attempts.
                    self.return_jobs(node, "node gone from EC2", preempted=node.market is Market.SPOT)
                    nodes.remove_node(node.instance_id)
            case Evict():
                self._evict(action)
            case SetState():
                self._set_node_states(action)
            case Undrain():
                counts.undrained += sum(nodes.mark_state(i, NodeState.ACTIVE, self.now) for i in action.instance_ids)
            case Drain():
                counts.drained += sum(nodes.mark_draining(i, self.now) for i in action.instance_ids)
            case StartStopped():
                result = self.ports.fleet.start(action.instance_ids)
                counts.started += self._switched("start", result, NodeState.PENDING, InstanceState.PENDING)
            case Stop():
                result = self.ports.fleet.stop(self._claim("stop", action.instance_ids))
                counts.stopped += self._switched("stop", result, NodeState.STOPPED, InstanceState.STOPPING)
            case Terminate():
                self.terminate(self._claim("terminate", action.instance_ids))
        return False

    # ---- jobs of a lost node ---------------------------------------------------------------------

    def return_jobs(self, node: NodeRecord, reason: str, *, preempted: bool = False) -> list[str]:
        """Put the jobs ``node`` was running back in the queue; returns the ids requeued.

        The jobs are those its last heartbeat listed and those the job store says run there (a job started
        after that heartbeat). The store moves first, only jobs still RUNNING on this node, so a job that
        finished or moved is left alone; then the messages whose receipts the node reported become
        visible at once. Any other message (a stale receipt, or none known) comes back by itself when its
        visibility timeout ends, as its agent no longer renews it: nothing is lost.
        """
        jobs, queue = self.ports.jobs, self.ports.queue
        if jobs is None or queue is None:
            raise TypeError("this actuator was built without the job store and queue, so it cannot return jobs")
        receipts = dict(node.running_jobs)
        candidates = [*receipts, *(j for j in jobs.running_on(node.instance_id) if j not in receipts)]
        requeued = [
            j
            for j in candidates
            if jobs.requeue_job(
                j,
                node.instance_id,
                reason=reason,
                now=self.now,
                preempted=preempted,
                max_preemptions=self.max_preemptions,
            )
        ]
        handles = [receipts[j] for j in requeued if j in receipts]
        if handles:
            queue.put_back(handles)
        self.tally.counts.requeued_jobs += len(requeued)
        self.tally.requeued += requeued
        return requeued

    def _evict(self, action: Evict) -> None:
        """Silent agents: their jobs go back; a static node is kept (and cleared), any other terminated."""
        for node in action.nodes:
            self.return_jobs(node, "its agent went silent")
            if node.static:
                self.ports.nodes.put_node(replace(node, running_jobs=MappingProxyType({})))
        doomed = [n.instance_id for n in action.nodes if not n.static]
        if doomed:
            self.terminate(doomed)

    def _set_node_states(self, action: SetState) -> None:
        for node in action.nodes:
            if action.state is NodeState.STOPPED:
                self.return_jobs(node, "node stopped")
                self.ports.nodes.put_node(replace(node, state=NodeState.STOPPED, running_jobs=MappingProxyType({})))
            else:
                self.ports.nodes.mark_state(node.instance_id, action.state, self.now)

    # ---- EC2 ---------------------------------------------------------------------------------------

    def _switched(self, verb: str, result: BatchResult, node: NodeState, instance: InstanceState) -> int:
        """Record a start or stop: each instance EC2 accepted changes state; how many it accepted."""
        for instance_id in result.done:
            self.ports.nodes.mark_state(instance_id, node, self.now)
            if instance_id in self.instances:
                self.instances[instance_id] = replace(self.instances[instance_id], state=instance)
        self._failed(verb, result.failed)
        return len(result.done)

    def _claim(self, verb: str, instance_ids: Sequence[str]) -> list[str]:
        """The idle nodes the decision chose, claimed so that nothing starts on them: a round decides on what it
        read at its start, and one that overlapped it may have undrained a node and given it a job since."""
        claimed = self.ports.nodes.claim_idle(instance_ids, self.now)
        self.tally.errors += [
            f"{verb} {i}: left running: it took work or changed after this round read it"
            for i in instance_ids
            if i not in claimed
        ]
        return claimed

    def terminate(self, instance_ids: Sequence[str]) -> None:
        result = self.ports.fleet.terminate(instance_ids)
        # An instance EC2 no longer knows is as gone as one it just terminated.
        gone = [*result.done, *(f.instance_id for f in result.failed if f.code == NO_SUCH_INSTANCE)]
        self.ports.nodes.remove_nodes(gone)
        for instance_id in gone:
            self.instances.pop(instance_id, None)
        self.tally.counts.terminated += len(result.done)
        self._failed("terminate", [f for f in result.failed if f.code != NO_SUCH_INSTANCE])

    def _failed(self, verb: str, failures: Sequence[InstanceFailure]) -> None:
        self.tally.errors += [f"{verb} {f.instance_id}: {f.code}: {f.message}" for f in failures]

    def launch(self, action: Launch, *, idempotency_key: str, unavailable: set[Offering] | None = None) -> Launched:
        """Launch, record the new nodes (PENDING), and put each offering EC2 refused in the capacity cache."""
        ports, now = self.ports, self.now
        result = ports.fleet.launch(action, idempotency_key=idempotency_key)
        self.instances.update((instance.instance_id, instance) for instance in result.instances)
        ports.nodes.put_nodes([_new_node(action, instance, now) for instance in result.instances])
        self.tally.counts.launched += len(result.instances)
        refused = False
        for failure in result.failures:
            self.tally.launch_failures.append(failure)
            if failure.volume_quota:  # the fleet launched the template's volume instead; later rounds start there
                self.volume_refused(f"{failure.code}: {failure.message}", unavailable)
            if not failure.offering_error:
                self.tally.errors.append(f"launch {action.offer_key} as {failure.instance_type}: {failure.code}")
                continue
            offering = Offering(
                instance_type=failure.instance_type, zone=failure.zone or ANY_ZONE, market=action.market
            )
            why = f"{failure.code}: {failure.message}"
            ports.capacity.record_failure(offering, why, now, self.capacity_failure_ttl)
            if unavailable is not None:
                unavailable.add(offering)
            refused = True
        return Launched(result=result, refused=refused)

    def volume_refused(self, why: str, unavailable: set[Offering] | None = None) -> None:
        """The region's EBS storage quota refused a larger root volume: rounds keep to the template's for a while."""
        self.ports.capacity.record_failure(LARGER_ROOT_VOLUMES, why, self.now, self.capacity_failure_ttl)
        if unavailable is not None:
            unavailable.add(LARGER_ROOT_VOLUMES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Launched:
    result: LaunchResult
    refused: bool  # EC2 refused some offering for capacity, price or quota: it is in the cache now


def _new_node(action: Launch, instance: Instance, now: float) -> NodeRecord:
    return NodeRecord(
        instance_id=instance.instance_id,
        offer_key=action.offer_key,
        instance_type=instance.instance_type,
        market=action.market,
        state=NodeState.PENDING,
        zone=instance.zone,
        static=action.static,
        launched_at=now,
        node_storage=instance.node_storage,  # the launch's size, or None where EC2's storage quota refused it
    )
