"""What a scaling decision reads and returns: the observed snapshot, the actions (each says why), and
the decision with its estimates and reasons. ``shared.domain.scaling.decide`` makes one; the round acts
on its actions (``shared.services.reconcile``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Protocol

from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState
from shared.domain.jobs import Shape
from shared.domain.packing import Plan
from shared.domain.policy import ScalerState
from shared.domain.quotas import QuotaView


class InstanceState(enum.StrEnum):
    """The EC2 states the fleet adapter reports; terminated instances are gone."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"  # no longer counted as a node, but its jobs' processes may still run


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One EC2 instance tagged with the cluster, as DescribeInstances shows it."""

    instance_id: str
    instance_type: str
    state: InstanceState
    market: Market
    offer_key: str | None = None  # the shoal:offer tag
    zone: str | None = None
    static: bool = False  # the shoal:static tag: launched by launch-cluster, never scaled in
    launched_at: float = 0.0
    node_storage: int | None = None  # the shoal:node-storage tag, bytes: a root volume sized at launch

    @property
    def running(self) -> bool:
        return self.state in (InstanceState.PENDING, InstanceState.RUNNING)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What one round observed."""

    demand: Mapping[Shape, DemandCount]
    nodes: Sequence[NodeRecord]
    instances: Sequence[Instance]
    zones: tuple[str, ...] = ()  # where the launcher can place nodes; () means wherever the launch template says
    # When the longest-waiting queued job of each shape was queued (epoch seconds); shapes left out (or an
    # observer that does not know) count as just queued.
    queued_since: Mapping[Shape, float] = field(default_factory=lambda: MappingProxyType({}))
    # When each busy node is expected to have finished its jobs (epoch seconds, by expected runtimes from the
    # jobs' start times); nodes left out are not drained while busy.
    empties_at: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    spent: float = 0.0  # USD the cluster has spent so far, by the scaler's ledger (shared.domain.budget)
    quotas: QuotaView | None = None  # the account's vCPU quotas and what runs outside the cluster; None: unknown
    # Spot Placement Scores per spot offer key and zone (1-10); offers left out launch in price order.
    placement_scores: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    # Jobs past their preemption budget, per (preemptible) shape: planned on on-demand nodes only.
    on_demand_only: Mapping[Shape, DemandCount] = field(default_factory=lambda: MappingProxyType({}))


class Unavailable(Protocol):
    """An instance type in a zone on a market that EC2 refused recently (``ports.Offering`` is one)."""

    @property
    def instance_type(self) -> str: ...

    @property
    def zone(self) -> str: ...

    @property
    def market(self) -> Market: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchOption:
    instance_type: str
    zone: str | None  # None: the launch template's (or EC2's) choice


# ---- actions: every one says why ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Adopt:
    """Record nodes for cluster instances that have no record (e.g. a round that died after launching)."""

    kind: ClassVar[str] = "adopt"
    instances: tuple[Instance, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Forget:
    """Remove records whose instance is gone from EC2, returning their running jobs to the queue."""

    kind: ClassVar[str] = "forget"
    nodes: tuple[NodeRecord, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Evict:
    """Nodes that run on EC2 but whose agent went silent: their jobs go back to the queue and the nodes are
    terminated (a round then replaces them). A static node is never terminated: only its jobs go back."""

    kind: ClassVar[str] = "evict"
    nodes: tuple[NodeRecord, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetState:
    """Make records agree with EC2 (a stopped node's jobs go back to the queue)."""

    kind: ClassVar[str] = "set_state"
    nodes: tuple[NodeRecord, ...]
    state: NodeState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Undrain:
    kind: ClassVar[str] = "undrain"
    offer_key: str
    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartStopped:
    kind: ClassVar[str] = "start"
    offer_key: str
    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    """``count`` new nodes of one offer; the launcher tries ``options`` in order (cheapest type first)."""

    kind: ClassVar[str] = "launch"
    offer_key: str
    count: int
    market: Market
    bid: float | None
    options: tuple[LaunchOption, ...]
    reason: str
    static: bool = False  # launch-cluster's static nodes (tagged shoal:static); a round never launches these
    node_storage: int | None = None  # bytes of root volume each node gets; None: the launch template's


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    kind: ClassVar[str] = "drain"
    offer_key: str
    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    kind: ClassVar[str] = "stop"
    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminate:
    kind: ClassVar[str] = "terminate"
    instance_ids: tuple[str, ...]
    reason: str


Action = Adopt | Forget | Evict | SetState | Undrain | StartStopped | Launch | Drain | Stop | Terminate


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    actions: tuple[Action, ...]
    estimates: Mapping[str, int]  # the engine's nodes per offer key
    wanted: Mapping[str, int]  # after smoothing, compensation and min/max
    live: Mapping[str, int]  # PENDING/ACTIVE nodes per offer key when observed
    unavailable_offers: tuple[str, ...]
    plan: Plan
    reasons: tuple[str, ...]
    # The state for the next round. Its spot deficit compares wanted with *observed* spot nodes, so the
    # round saves the state of its last pass: the decision made after acting, which has no actions left.
    state: ScalerState
    smoothed_at: float | None  # when the smoothed estimates last decayed
    queued_jobs: int = 0
    running_jobs: int = 0

    @property
    def hourly_cost(self) -> float:
        """What the wanted fleet costs per hour."""
        price = {o.key: o.hourly_price for o in self.plan.offers}
        return sum(price.get(key, 0.0) * count for key, count in self.wanted.items())

    def summary(self) -> dict[str, object]:
        """Plain JSON values for the decision log and ``shoal plan``: what, how many, and why."""
        return {
            "queued_jobs": self.queued_jobs,
            "running_jobs": self.running_jobs,
            "estimates": {k: v for k, v in self.estimates.items() if v},
            "wanted": {k: v for k, v in self.wanted.items() if v},
            "live": {k: v for k, v in self.live.items() if v},
            "hourly_cost": round(self.hourly_cost, 4),
            "unavailable_offers": list(self.unavailable_offers),
            "unplaceable_jobs": sum(u.count for u in self.plan.unplaceable),
            "deferred_jobs": sum(u.count for u in self.plan.deferred),
            "actions": [describe_action(a) for a in self.actions],
            "reasons": list(self.reasons),
        }


def describe_action(action: Action) -> dict[str, object]:
    out: dict[str, object] = {"action": action.kind, "reason": action.reason}
    if isinstance(action, Launch):
        out.update(offer=action.offer_key, count=action.count, market=str(action.market))
    elif isinstance(action, Adopt):
        out["instance_ids"] = [i.instance_id for i in action.instances]
    elif isinstance(action, Forget | Evict | SetState):
        out["instance_ids"] = [n.instance_id for n in action.nodes]
    else:
        out["instance_ids"] = list(action.instance_ids)
    if isinstance(action, SetState):
        out["state"] = str(action.state)
    return out
