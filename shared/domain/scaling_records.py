"""Step 1 of a scaling decision: the node records made to agree with what EC2 shows.

Adopt tagged instances that have no record, forget records whose instance is gone (their jobs go back to the
queue), follow EC2 where it stopped or started a node, evict nodes whose agents fell silent.
"""

from dataclasses import dataclass, field, replace
from types import MappingProxyType

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import (
    Action,
    Adopt,
    Evict,
    Forget,
    Instance,
    InstanceState,
    SetState,
    Snapshot,
)

LAUNCH_VISIBILITY_GRACE = (
    300.0  # seconds a launched instance may be missing from DescribeInstances (eventual consistency)
)
# An agent heartbeats every 30 s (shared/worker): twenty silent intervals mean it is dead, not slow. A new
# node boots, pulls the appliance image and reports within minutes; twenty minutes means it never will.
AGENT_SILENCE_LIMIT = 600.0
AGENT_BOOT_LIMIT = 1200.0

_REPORTING = (NodeState.ACTIVE, NodeState.DRAINING, NodeState.INTERRUPTED)  # silence means a dead agent
_LEAVING = (InstanceState.STOPPING, InstanceState.SHUTTING_DOWN)


@dataclass(slots=True)
class _Sorted:
    """The node records by what EC2 says of them; ``nodes``: the records as they now are."""

    nodes: list[NodeRecord] = field(default_factory=list)
    gone: list[NodeRecord] = field(default_factory=list)
    stopped: list[NodeRecord] = field(default_factory=list)
    started: list[NodeRecord] = field(default_factory=list)
    silent: list[NodeRecord] = field(default_factory=list)
    interrupted: list[NodeRecord] = field(default_factory=list)


def reconcile_records(snapshot: Snapshot, now: float, actions: list[Action]) -> list[NodeRecord]:
    """The nodes as they are, records and EC2 merged; adds the actions that make the records agree."""
    present = [i for i in snapshot.instances if i.state is not InstanceState.SHUTTING_DOWN]
    instances = {i.instance_id: i for i in present}
    records = {n.instance_id: n for n in snapshot.nodes}
    adopted = [i for i in present if i.instance_id not in records]
    # Stopping or shutting down: EC2 is ending it, but its jobs' processes may still run (their agent
    # evacuates them). Such a node takes no work; its jobs go back once it is stopped or gone, or silent.
    leaving = {i.instance_id for i in snapshot.instances if i.state in _LEAVING}
    found = _Sorted()
    for record in snapshot.nodes:
        _sort(record, instances.get(record.instance_id), leaving=record.instance_id in leaving, now=now, into=found)
    found.nodes.extend(adopted_record(instance) for instance in adopted)
    actions.extend(_agreeing_actions(found, adopted))
    return found.nodes


def _sort(record: NodeRecord, instance: Instance | None, *, leaving: bool, now: float, into: _Sorted) -> None:
    """File one record by what EC2 says of its instance, and keep it (as it now is) unless it is gone."""
    if leaving and not _agent_is_dead(record, now):
        ending = record.state not in (NodeState.INTERRUPTED, NodeState.STOPPED, NodeState.GONE)
        if ending:
            into.interrupted.append(record)
        into.nodes.append(replace(record, state=NodeState.INTERRUPTED) if ending else record)
    elif record.state is NodeState.GONE or instance is None:
        if (
            instance is None
            and record.state is NodeState.PENDING
            and now - record.launched_at < LAUNCH_VISIBILITY_GRACE
        ):
            into.nodes.append(record)  # launched moments ago: DescribeInstances may not show it yet
        else:
            into.gone.append(record)
    elif not (running := instance.running) and (
        record.state is not NodeState.STOPPED and (record.busy or record.state is not NodeState.INTERRUPTED)
    ):
        into.stopped.append(record)
        into.nodes.append(replace(record, state=NodeState.STOPPED, running_jobs=MappingProxyType({})))
    elif running and record.state is NodeState.STOPPED:
        into.started.append(record)
        into.nodes.append(replace(record, state=NodeState.PENDING))
    elif running and _agent_is_dead(record, now):
        into.silent.append(record)
        if record.static:  # kept (never scaled in), but its jobs must not wait for it
            into.nodes.append(replace(record, running_jobs=MappingProxyType({})))
    else:
        into.nodes.append(record)


def _agreeing_actions(found: _Sorted, adopted: list[Instance]) -> list[Action]:
    """The actions that make the records agree with EC2."""
    actions: list[Action] = []
    if adopted:
        actions.append(
            Adopt(
                instances=tuple(adopted),
                reason=f"{len(adopted)} cluster instances on EC2 have no node record (a round ended before recording)",
            )
        )
    if found.gone:
        actions.append(
            Forget(
                nodes=tuple(found.gone),
                reason=f"{len(found.gone)} nodes are gone from EC2; their running jobs go back to the queue",
            )
        )
    if found.silent:
        actions.append(
            Evict(
                nodes=tuple(found.silent),
                reason=f"{len(found.silent)} nodes run on EC2 but their agents are silent (no heartbeat for "
                f"{AGENT_SILENCE_LIMIT:.0f} s, or none {AGENT_BOOT_LIMIT:.0f} s after launch): their jobs go back "
                "to the queue and the nodes are replaced (static ones are kept)",
            )
        )
    if found.stopped:
        actions.append(
            SetState(nodes=tuple(found.stopped), state=NodeState.STOPPED, reason="EC2 shows these nodes stopped")
        )
    if found.started:
        actions.append(
            SetState(nodes=tuple(found.started), state=NodeState.PENDING, reason="EC2 shows these nodes running again")
        )
    if found.interrupted:
        actions.append(
            SetState(
                nodes=tuple(found.interrupted),
                state=NodeState.INTERRUPTED,
                reason="EC2 is stopping or terminating these nodes: no new work; their jobs go back once they are gone",
            )
        )
    return actions


def _agent_is_dead(record: NodeRecord, now: float) -> bool:
    """A running node whose agent stopped reporting (or never started) cannot run or finish jobs."""
    if record.state in _REPORTING and record.heartbeat_at is not None:
        dead = now - record.heartbeat_at > AGENT_SILENCE_LIMIT
    elif record.state is NodeState.PENDING and record.heartbeat_at is None:
        dead = now - record.launched_at > AGENT_BOOT_LIMIT
    else:
        return False
    # A silent static node is only worth acting on while jobs wait on it; acting empties it, so once is enough.
    return dead and (record.busy or not record.static)


def adopted_record(instance: Instance) -> NodeRecord:
    """The node record for a cluster instance found on EC2 without one."""
    if instance.offer_key:
        offer_key = instance.offer_key
    else:
        offer_key = f"{instance.instance_type}:spot" if instance.market is Market.SPOT else instance.instance_type
    return NodeRecord(
        instance_id=instance.instance_id,
        offer_key=offer_key,
        instance_type=instance.instance_type,
        market=instance.market,
        state=NodeState.PENDING if instance.running else NodeState.STOPPED,
        zone=instance.zone,
        static=instance.static,
        launched_at=instance.launched_at,
        node_storage=instance.node_storage,
    )
