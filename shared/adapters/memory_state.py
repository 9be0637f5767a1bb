"""In-memory twins of the state-table stores, for fast service tests and ``shoal plan``-style simulations.

Each twin keeps the same contract as its DynamoDB store (the same conditions, the same answers), and
the adapter tests run one suite against both. One lock per twin stands in for DynamoDB's per-item
atomicity. Nothing here survives the process: never use them where a Lambda would. The job store's twin
lives in ``memory_jobs`` (re-exported here), the fleet's in ``memory_fleet``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from shared.adapters.capacity_cache import MAX_BACKOFF, next_failure
from shared.adapters.decision_log import RETENTION, decision_sort_key
from shared.adapters.memory_jobs import MemoryJobStore
from shared.domain.cluster_state import (
    ClusterStatus,
    ClusterStatusRecord,
    NodeRecord,
    NodeState,
)
from shared.domain.demand import Checkpoints, Counters, DemandKey, RunningJob
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes
from shared.domain.settings import ClusterSettings
from shared.services.ports import Offering

__all__ = [
    "MemoryCapacityCache",
    "MemoryClusterStore",
    "MemoryDecisionLog",
    "MemoryDemandStore",
    "MemoryJobStore",
    "MemoryLease",
    "MemoryNodeStore",
    "MemoryScalerStateStore",
]

if TYPE_CHECKING:
    from shared.adapters.capacity_cache import DynamoCapacityCache
    from shared.adapters.cluster_store import DynamoClusterStore
    from shared.adapters.decision_log import DynamoDecisionLog
    from shared.adapters.demand_store import DynamoDemandStore
    from shared.adapters.job_store import DynamoJobStore
    from shared.adapters.node_store import DynamoNodeStore
    from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore
    from shared.adapters.state_table import StateTable
    from shared.services.ports import (
        CapacityCache,
        ClusterStore,
        DecisionLog,
        Lease,
        NodeStore,
        ScalerStateStore,
        SubmissionStore,
    )
    from shared.services.round_demand import DemandSource


class MemoryNodeStore:
    """``NodeStore`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeRecord] = {}
        self._retiring: set[str] = set()

    def put_node(self, node: NodeRecord) -> None:
        self.put_nodes([node])

    def put_nodes(self, nodes: Sequence[NodeRecord]) -> None:
        with self._lock:
            self._nodes.update((node.instance_id, node) for node in nodes)

    def get_node(self, instance_id: str) -> NodeRecord | None:
        with self._lock:
            return self._nodes.get(instance_id)

    def list_nodes(self) -> list[NodeRecord]:
        with self._lock:
            return [self._nodes[i] for i in sorted(self._nodes)]

    def heartbeat(
        self,
        instance_id: str,
        *,
        free: Resources,
        running_jobs: Mapping[str, str],
        now: float,
        draining: bool = False,
    ) -> NodeRecord | None:
        with self._lock:
            node = self._nodes.get(instance_id)
            if node is None:
                return None
            state = NodeState.ACTIVE if node.state in (NodeState.PENDING, NodeState.ACTIVE) else node.state
            node = replace(
                node,
                state=state,
                free=free,
                running_jobs=dict(running_jobs),
                heartbeat_at=now,
                drain_acknowledged=draining,
            )
            self._nodes[instance_id] = node
            return node

    def mark_draining(self, instance_id: str, now: float) -> bool:
        with self._lock:
            node = self._nodes.get(instance_id)
            if node is None or node.static:
                return False
            if node.state is NodeState.DRAINING:
                return True
            if node.state not in (NodeState.ACTIVE, NodeState.PENDING):
                return False
            self._nodes[instance_id] = replace(
                node, state=NodeState.DRAINING, draining_since=now, drain_acknowledged=False
            )
            return True

    def mark_state(self, instance_id: str, state: str, now: float) -> bool:
        new_state = NodeState(state)
        if new_state is NodeState.DRAINING:
            return self.mark_draining(instance_id, now)
        with self._lock:
            node = self._nodes.get(instance_id)
            taking_work = new_state in (NodeState.ACTIVE, NodeState.PENDING)
            if node is None or (taking_work and instance_id in self._retiring):
                return False
            if new_state is NodeState.STOPPED:
                self._retiring.discard(instance_id)
            self._nodes[instance_id] = replace(
                node,
                state=new_state,
                draining_since=None if taking_work else node.draining_since,
                drain_acknowledged=False if taking_work else node.drain_acknowledged,
            )
            return True

    def claim_idle(self, instance_ids: Sequence[str], now: float) -> list[str]:
        with self._lock:
            claimed = []
            for instance_id in instance_ids:
                node = self._nodes.get(instance_id)
                if node is None:
                    continue
                drained_idle = node.state is NodeState.DRAINING and node.drain_acknowledged and not node.busy
                if drained_idle or node.state is NodeState.STOPPED:
                    self._retiring.add(instance_id)
                    claimed.append(instance_id)
            return claimed

    def remove_node(self, instance_id: str) -> None:
        self.remove_nodes([instance_id])

    def remove_nodes(self, instance_ids: Sequence[str]) -> None:
        with self._lock:
            for instance_id in instance_ids:
                self._nodes.pop(instance_id, None)
                self._retiring.discard(instance_id)


class MemoryScalerStateStore:
    """``ScalerStateStore`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ScalerState()
        self._version = 0

    def load(self) -> tuple[ScalerState, int]:
        with self._lock:
            return self._state, self._version

    def save(self, state: ScalerState, version: int) -> bool:
        with self._lock:
            if version != self._version:
                return False
            self._state = ScalerState(
                smoothed=MappingProxyType(dict(state.smoothed)),
                spot_deficit=MappingProxyType(dict(state.spot_deficit)),
            )
            self._version = version + 1
            return True


class MemoryLease:
    """``Lease`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._expires_at = 0.0

    def acquire(self, owner: str, now: float, ttl: float) -> bool:
        with self._lock:
            if self._owner is not None and self._owner != owner and not self._expires_at < now:
                return False
            self._owner, self._expires_at = owner, now + ttl
            return True

    def release(self, owner: str) -> None:
        with self._lock:
            if self._owner == owner:
                self._owner = None


@dataclass(frozen=True, slots=True)
class _Failure:
    failures: int
    until: float
    expires_at: float
    reason: str


class MemoryCapacityCache:
    """``CapacityCache`` in memory."""

    def __init__(self, *, max_backoff: float = MAX_BACKOFF) -> None:
        self._lock = threading.Lock()
        self._max_backoff = max_backoff
        self._failures: dict[Offering, _Failure] = {}

    def unavailable(self, now: float) -> set[Offering]:
        with self._lock:
            return {offering for offering, failure in self._failures.items() if failure.until > now}

    def record_failure(self, offering: Offering, reason: str, now: float, base_ttl: float) -> float:
        with self._lock:
            stored = self._failures.get(offering)
            failures, until = next_failure(
                previous_failures=0 if stored is None else stored.failures,
                previous_until=None if stored is None else stored.until,
                previous_expires_at=None if stored is None else stored.expires_at,
                now=now,
                base_ttl=base_ttl,
                max_backoff=self._max_backoff,
            )
            self._failures[offering] = _Failure(failures, until, until + self._max_backoff, reason)
            return until


class MemoryDecisionLog:
    """``DecisionLog`` in memory (entries go through JSON, as they do in the table)."""

    def __init__(self, *, retention: float = RETENTION) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float, str]] = {}
        self._retention = retention

    def record(self, round_id: str, now: float, entry: Mapping[str, object]) -> None:
        with self._lock:
            self._entries[decision_sort_key(round_id, now)] = (
                round_id,
                now,
                json.dumps(dict(entry), sort_keys=True, default=str),
            )

    def recent(self, limit: int) -> list[dict[str, object]]:
        with self._lock:
            newest = sorted(self._entries, reverse=True)[: max(0, limit)]
            entries: list[dict[str, object]] = []
            for sort_key in newest:
                round_id, at, text = self._entries[sort_key]
                stored = json.loads(text)
                entry: dict[str, object] = stored if isinstance(stored, dict) else {"entry": stored}
                entry.setdefault("round_id", round_id)
                entry.setdefault("at", at)
                entries.append(entry)
            return entries


class MemoryClusterStore:
    """``ClusterStore`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: ClusterSettings | None = None
        self._status: ClusterStatusRecord | None = None
        self._runtimes: dict[str, tuple[int, float]] = {}

    def put_settings(self, settings: ClusterSettings) -> None:
        with self._lock:
            self._settings = settings

    def get_settings(self) -> ClusterSettings | None:
        with self._lock:
            return self._settings

    def set_status(
        self,
        status: ClusterStatus,
        *,
        reason: str | None,
        now: float,
        expected: Collection[ClusterStatus] | None = None,
    ) -> bool:
        with self._lock:
            if expected is not None and (self._status is None or self._status.status not in set(expected)):
                return False
            self._status = ClusterStatusRecord(status=status, reason=reason, updated_at=now)
            return True

    def get_status(self) -> ClusterStatusRecord | None:
        with self._lock:
            return self._status

    def record_runtime(self, name: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            runs, total = self._runtimes.get(name, (0, 0.0))
            self._runtimes[name] = (runs + count, total + max(0.0, float(seconds)))

    def average_runtimes(self) -> dict[str, float]:
        return {name: total / count for name, (count, total) in self.runtimes().by_name.items()}

    def runtimes(self) -> Runtimes:
        """What agents recorded per job name, and over every named job (as ``DynamoClusterStore.runtimes``)."""
        with self._lock:
            return Runtimes.of_names({name: c for name, c in self._runtimes.items() if c[0] > 0})


class MemoryDemandStore:
    """``round_demand.DemandSource`` in memory, the twin of ``DynamoDemandStore``: the job store's counters and
    running records, the cluster store's learned runtimes, and the rounds' queue checkpoints."""

    def __init__(self, jobs: MemoryJobStore, cluster: MemoryClusterStore) -> None:
        self._jobs, self._cluster = jobs, cluster
        self._lock = threading.Lock()
        self._marks: dict[DemandKey, Checkpoints] = {}

    def counters(self) -> Counters:
        return self._jobs.counters()

    def runtimes(self) -> Runtimes:
        return self._cluster.runtimes()

    def running_jobs(self, job_ids: Sequence[str]) -> list[RunningJob]:
        return self._jobs.running_jobs(job_ids)

    def running_on(self, node_id: str) -> list[RunningJob]:
        return self._jobs.running_jobs(self._jobs.running_on(node_id))

    def marks(self) -> dict[DemandKey, Checkpoints]:
        with self._lock:
            return dict(self._marks)

    def save_marks(self, marks: Mapping[DemandKey, Checkpoints], before: Mapping[DemandKey, Checkpoints]) -> None:
        """Keep ``marks``; the keys of ``before`` no longer in them are gone (as the table's are deleted)."""
        with self._lock:
            for gone in (k for k in before if k not in marks):
                self._marks.pop(gone, None)
            self._marks.update(marks)


if TYPE_CHECKING:  # mypy checks that the twins and the DynamoDB stores implement the same ports

    def _implement_the_ports(table: StateTable) -> None:
        job_stores: list[SubmissionStore] = [MemoryJobStore(), DynamoJobStore(table)]
        node_stores: list[NodeStore] = [MemoryNodeStore(), DynamoNodeStore(table)]
        scaler_stores: list[ScalerStateStore] = [MemoryScalerStateStore(), DynamoScalerStateStore(table)]
        leases: list[Lease] = [MemoryLease(), DynamoLease(table)]
        caches: list[CapacityCache] = [MemoryCapacityCache(), DynamoCapacityCache(table)]
        logs: list[DecisionLog] = [MemoryDecisionLog(), DynamoDecisionLog(table)]
        clusters: list[ClusterStore] = [MemoryClusterStore(), DynamoClusterStore(table)]
        sources: list[DemandSource] = [
            MemoryDemandStore(MemoryJobStore(), MemoryClusterStore()),
            DynamoDemandStore(table),
        ]
        del job_stores, node_stores, scaler_stores, leases, caches, logs, clusters, sources
