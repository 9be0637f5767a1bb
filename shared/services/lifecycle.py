"""The steps of the LaunchCluster and TeardownCluster state machines that need Shoal's own code.

Each step is a plain function of the ports and ``now``; the lifecycle Lambda picks one by its
``action`` and returns its small JSON answer to the state machine. Waiting is the state machine's
job (Wait states); every step here answers at once, and a deadline passed raises an error whose name
and message the execution's failure carries to the console and to ``shoal status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.cluster_state import Market, NodeState
from shared.domain.decision import Instance, Launch
from shared.domain.node_types import Offer
from shared.domain.scaling import launch_options
from shared.domain.settings import ClusterSettings
from shared.services.actuator import Actuator, FleetPorts
from shared.services.ports import CapacityCache, Fleet, LaunchFailure, NodeStore

LAUNCH_DEADLINE_SECONDS = 900.0  # static nodes running (EC2 usually needs one or two minutes)
AGENT_DEADLINE_SECONDS = 900.0  # agents heartbeating (image pull and start)
TERMINATE_DEADLINE_SECONDS = 900.0
DEFAULT_GRACE_SECONDS = 3600.0  # how long a teardown waits for running jobs unless forced
TERMINATE_BATCH = 100  # ids per TerminateInstances call in the teardown's Map state
POLL_SECONDS = 15  # between checks of EC2 and the agents
JOB_POLL_SECONDS = 30  # between checks for running jobs during a teardown's grace period
MAX_POLL_SECONDS = 300


class LifecycleError(RuntimeError):
    """A lifecycle step that cannot go on; the state machine catches it, rolls back and records the cause."""


class StaticNodesLaunchError(LifecycleError):
    """No offering EC2 accepted for some static nodes."""


class StaticNodesNotRunningError(LifecycleError):
    """Static nodes did not reach running before the deadline."""


class AgentsNotHealthyError(LifecycleError):
    """Static nodes run, but their agents did not report before the deadline."""


class InstancesNotTerminatedError(LifecycleError):
    """Instances still not terminated at the deadline."""


class ResourcesLeftError(LifecycleError):
    """The teardown's final inventory is not empty; the message names what is left."""


class ImageCache(Protocol):
    """The repository an ECR pull-through cache created for the appliance (not the stack's: nothing tags it)."""

    repository: str

    def delete(self) -> bool:
        """Delete it with its images; False if it never existed. Raises, naming it, if it cannot."""
        ...


class Inventory(Protocol):
    """What a teardown must find: every tagged instance whatever its state, and open spot requests."""

    def all_instances(self) -> list[Instance]:
        """Instances tagged for the cluster in any state but terminated (shutting-down included)."""
        ...

    def open_spot_requests(self) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecyclePorts:
    fleet: Fleet
    inventory: Inventory
    nodes: NodeStore
    capacity: CapacityCache
    image_cache: ImageCache | None = None  # with worker_network "endpoints": the appliance's ECR cache


# ---- LaunchCluster -------------------------------------------------------------------------------


def static_fleet(settings: ClusterSettings, offers: Sequence[Offer]) -> dict[str, int]:
    """Static nodes per offer key (``--workers 2,0-5``: the plain numbers), checked against the offers."""
    by_position = dict(zip((o.key for o in offers), settings.static_nodes, strict=False))
    return {key: count for key, count in by_position.items() if count > 0}


def validate(
    settings: ClusterSettings, offers: Sequence[Offer], request: Mapping[str, object], *, now: float
) -> dict[str, object]:
    """Check the settings and the execution's input; the answer carries the options later states read."""
    settings.validate()
    fleet = static_fleet(settings, offers)
    return {
        "cluster": settings.name,
        "static_nodes": fleet,
        "total": sum(fleet.values()),
        "validated_at": now,
        "poll_seconds": _seconds(request, "poll_seconds", POLL_SECONDS),
    }


def _seconds(request: Mapping[str, object], key: str, default: float) -> int:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_POLL_SECONDS:
        raise LifecycleError(f"input {key!r} must be a number of seconds from 0 to {MAX_POLL_SECONDS}, got {value!r}")
    return int(value)


def launch_static_nodes(
    ports: LifecyclePorts, settings: ClusterSettings, offers: Sequence[Offer], *, now: float, execution: str
) -> dict[str, object]:
    """Launch every static node, falling back across members, zones and then other offers that can stand in.

    The execution name keys the ClientTokens, so a retried step launches nothing twice.
    """
    by_key = {o.key: o for o in offers}
    launched: list[str] = []
    problems: list[str] = []
    for key, count in static_fleet(settings, offers).items():
        wanted = by_key[key]
        # The offer itself first, then, cheapest first, any offer whose nodes hold at least as much and
        # are no less reliable (a static on-demand node never becomes spot; a spot one may go on demand).
        stand_ins = sorted(
            (o for o in offers if o.key != key and wanted.usable.fits_in(o.usable) and (wanted.spot or not o.spot)),
            key=lambda o: o.hourly_price,
        )
        left = count
        for offer in (wanted, *stand_ins):
            if not left:
                break
            # Keyed by the static group and the offer tried, so a retried step finds its own launches only.
            token_key = f"{execution}:{key}:{offer.key}"
            instances, failures = _launch(ports, settings, offer, left, now=now, key=token_key)
            launched.extend(i.instance_id for i in instances)
            left -= len(instances)
            problems.extend(f"{f.instance_type}@{f.zone or 'any zone'}: {f.code}" for f in failures)
        if left:
            raise StaticNodesLaunchError(
                f"{left} of {count} static {key} nodes could not be launched ({'; '.join(problems) or 'no option'})"
            )
    return {"instance_ids": launched, "launched_at": now, "deadline": now + LAUNCH_DEADLINE_SECONDS}


def _launch(
    ports: LifecyclePorts, settings: ClusterSettings, offer: Offer, count: int, *, now: float, key: str
) -> tuple[list[Instance], list[LaunchFailure]]:
    market = Market.SPOT if offer.spot else Market.ON_DEMAND
    options = launch_options(offer, ports.capacity.unavailable(now), ports.fleet.zones())
    if not options:
        return [], []
    launch = Launch(
        offer_key=offer.key,
        count=count,
        market=market,
        bid=offer.bid,
        options=options,
        static=True,
        reason=f"{count} static {offer.key} for launch-cluster",
    )
    actuator = Actuator(
        FleetPorts(fleet=ports.fleet, nodes=ports.nodes, capacity=ports.capacity),
        now=now,
        capacity_failure_ttl=settings.capacity_failure_ttl,
    )
    result = actuator.launch(launch, idempotency_key=key).result
    return list(result.instances), list(result.failures)


def check_static_nodes(ports: LifecyclePorts, launched: Mapping[str, object], *, now: float) -> dict[str, object]:
    ids = _ids(launched)
    state = {i.instance_id: i.state for i in ports.inventory.all_instances()}
    waiting = sorted(i for i in ids if state.get(i) != "running")
    if waiting and now > _deadline(launched):
        raise StaticNodesNotRunningError(f"static nodes not running after the deadline: {', '.join(waiting)}")
    return {"done": not waiting, "waiting": waiting}


def check_agents(ports: LifecyclePorts, launched: Mapping[str, object], *, now: float) -> dict[str, object]:
    ids = _ids(launched)
    nodes = {n.instance_id: n for n in ports.nodes.list_nodes()}
    silent = sorted(i for i in ids if i not in nodes or nodes[i].heartbeat_at is None)
    deadline = float(str(launched.get("launched_at", now))) + LAUNCH_DEADLINE_SECONDS + AGENT_DEADLINE_SECONDS
    if silent and now > deadline:
        raise AgentsNotHealthyError(f"agents never reported on: {', '.join(silent)}")
    return {"done": not silent, "silent": silent}


def rollback(ports: LifecyclePorts, *, now: float) -> dict[str, object]:
    """Terminate every instance tagged for the cluster and forget their records: a failed launch leaves nothing."""
    instances = ports.inventory.all_instances()
    result = ports.fleet.terminate([i.instance_id for i in instances if i.state != "shutting-down"])
    ports.nodes.remove_nodes([node.instance_id for node in ports.nodes.list_nodes()])
    failed = [f"{f.instance_id}: {f.code}" for f in result.failed if f.code != "InvalidInstanceID.NotFound"]
    if failed:
        raise LifecycleError(f"rollback could not terminate: {'; '.join(failed)}")
    return {"terminated": list(result.done)}


# ---- TeardownCluster -----------------------------------------------------------------------------


def drain_all(ports: LifecyclePorts, teardown: Mapping[str, object], *, now: float) -> dict[str, object]:
    """Every node, static ones too, stops taking work; running jobs finish (or are cut by a forced teardown)."""
    nodes = ports.nodes.list_nodes()
    for node in nodes:
        if node.state not in (NodeState.DRAINING, NodeState.GONE):
            ports.nodes.mark_state(node.instance_id, NodeState.DRAINING, now)
    grace = teardown.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
        raise LifecycleError(f"input 'grace_seconds' must be a number of seconds >= 0, got {grace!r}")
    force = teardown.get("force", False)
    if not isinstance(force, bool):
        raise LifecycleError(f"input 'force' must be true or false, got {force!r}")
    return {
        "nodes": len(nodes),
        "busy": sum(1 for n in nodes if n.busy),
        "deadline": now + float(grace),
        "force": force,
        "poll_seconds": _seconds(teardown, "poll_seconds", POLL_SECONDS),
        "job_poll_seconds": _seconds(teardown, "job_poll_seconds", JOB_POLL_SECONDS),
    }


def check_jobs(ports: LifecyclePorts, drained: Mapping[str, object], *, now: float) -> dict[str, object]:
    busy = sorted(n.instance_id for n in ports.nodes.list_nodes() if n.busy)
    timed_out = bool(busy) and now > _deadline(drained)
    return {"done": not busy or timed_out, "busy": busy, "grace_over": timed_out}


def inventory(ports: LifecyclePorts) -> dict[str, object]:
    ids = [i.instance_id for i in ports.inventory.all_instances() if i.state != "shutting-down"]
    batches = [ids[start : start + TERMINATE_BATCH] for start in range(0, len(ids), TERMINATE_BATCH)]
    return {"batches": batches, "instances": len(ids), "spot_requests": ports.inventory.open_spot_requests()}


def check_terminated(ports: LifecyclePorts, started: Mapping[str, object], *, now: float) -> dict[str, object]:
    left = sorted(f"{i.instance_id} ({i.state})" for i in ports.inventory.all_instances())
    if left and now > float(str(started.get("at", now))) + TERMINATE_DEADLINE_SECONDS:
        raise InstancesNotTerminatedError(f"still not terminated: {', '.join(left)}")
    return {"done": not left, "left": left}


def verify_empty(ports: LifecyclePorts, *, now: float) -> dict[str, object]:
    """Nothing tagged for the cluster may be left; node records go once EC2 confirms it."""
    left = [f"instance {i.instance_id} ({i.state})" for i in ports.inventory.all_instances()]
    left += [f"spot request {r}" for r in ports.inventory.open_spot_requests()]
    if left:
        raise ResourcesLeftError(f"teardown left {len(left)} resources: {', '.join(left)}")
    ports.nodes.remove_nodes([node.instance_id for node in ports.nodes.list_nodes()])
    answer: dict[str, object] = {"verified_at": now, "left": []}
    if ports.image_cache is not None:
        # Last, once no node can pull again: a running node's next pull would recreate the repository.
        try:
            deleted = ports.image_cache.delete()
        except RuntimeError as error:  # the adapter's error names the repository and why
            raise ResourcesLeftError(f"teardown left 1 resource: {error}") from None
        answer["cached_image_deleted"] = ports.image_cache.repository if deleted else None
    return answer


def _ids(launched: Mapping[str, object]) -> list[str]:
    ids = launched.get("instance_ids", [])
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _deadline(answer: Mapping[str, object]) -> float:
    return float(str(answer.get("deadline", 0.0)))
