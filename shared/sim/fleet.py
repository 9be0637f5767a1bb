"""The simulated EC2 and node records: launches, capacity errors, interruptions, the actions a round takes."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from shared.domain.catalog import instance_type, root_volume_price
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
)
from shared.domain.node_types import Offer
from shared.domain.scaling import ANY_ZONE
from shared.sim.guardrails import count_preemptions, over_quota
from shared.sim.jobs import JobFlow
from shared.sim.model import ACK, GONE, READY, RECORD_REFRESH, SPOT_WARNING, WARN, Outage, SimNode, next_heartbeat
from shared.sim.placement import capacity_error_rate


class Fleet(JobFlow):
    def _launch(self, action: Launch) -> bool:
        """Try the options in order; True if EC2 refused an offering (so the round decides again)."""
        refused = False
        offer = self.by_key[action.offer_key]
        for option in action.options:
            if over_quota(self.options.vcpu_quotas, self._live(), offer, option.instance_type, action.count):
                outage = Outage(instance_type=option.instance_type, zone=ANY_ZONE, market=action.market)
                self.outages[outage] = self.now + self.settings.capacity_failure_ttl
                self.quota_refusals += 1
                refused = True
                continue
            rate = capacity_error_rate(self.options.capacity_errors, option.instance_type, option.zone)
            if rate > 0 and self.rng.random() < rate:
                outage = Outage(instance_type=option.instance_type, zone=option.zone or ANY_ZONE, market=action.market)
                self.outages[outage] = self.now + self.settings.capacity_failure_ttl
                self.capacity_refusals += 1
                refused = True
                continue
            storage = action.node_storage
            self.create_nodes(offer, option.instance_type, action.count, zone=option.zone, node_storage=storage)
            break
        return refused

    def create_nodes(
        self, offer: Offer, type_name: str, count: int, *, zone: str | None = None, node_storage: int | None = None
    ) -> list[str]:
        """``count`` new instances of ``type_name`` for ``offer``: booting now, ready after the boot delay, with a
        root volume of ``node_storage`` bytes (None: the cluster's)."""
        kind = instance_type(type_name)
        market = Market.SPOT if offer.spot else Market.ON_DEMAND
        storage = self.settings.node_storage if node_storage is None else node_storage
        volume = root_volume_price(storage, self.settings.region)
        instance = offer.hourly_price - offer.volume_price if offer.spot else kind.price(self.settings.region)
        price = instance + volume
        capacity = kind.usable(storage)
        ids = []
        for _ in range(count):
            self._node_ids += 1
            node_id = f"i-{self._node_ids:08d}"
            ready = self.now + self.options.boot_delay
            self.nodes[node_id] = SimNode(
                node_id=node_id, offer_key=offer.key, type_name=type_name, market=market, price=price,
                capacity=capacity, launched_at=self.now, ready_at=ready, priority=self.rng.random(), zone=zone,
                node_storage=node_storage, volume_price=volume,
            )  # fmt: skip
            self._push(ready, READY, node_id)
            if market is Market.SPOT and self.options.spot_interruptions > 0:
                after = self.rng.expovariate(self.options.spot_interruptions) * 3600
                self._push(self.now + after, WARN, node_id)
            ids.append(node_id)
        if zone is not None:
            self.launches_by_zone[zone] = self.launches_by_zone.get(zone, 0) + count
        live = sum(1 for n in self.nodes.values() if n.state is not NodeState.STOPPED)
        self.peak_nodes = max(self.peak_nodes, live)
        # EBS's regional gp3 storage quota counts every volume, a stopped node's too (AWS's default: 50 TiB)
        volumes = sum(
            self.settings.node_storage if n.node_storage is None else n.node_storage for n in self.nodes.values()
        )
        self.peak_volume_storage = max(self.peak_volume_storage, volumes)
        return ids

    def _interrupted(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.state is NodeState.INTERRUPTED:
            return
        self.preemptions += count_preemptions(node, self.jobs, self.settings.max_preemptions, self.demoted)
        self.requeued += self._requeue_jobs(node)
        node.state = NodeState.INTERRUPTED
        node.record = None
        self._push(self.now + SPOT_WARNING, GONE, node_id)
        self._dispatch()
        self._round("instance spot-interruption")

    def _live(self) -> list[SimNode]:
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
                    zone=node.zone,
                    state=node.state,
                    launched_at=node.launched_at,
                    heartbeat_at=self.now if self.now >= node.ready_at else None,
                    draining_since=node.draining_since,
                    free=node.free,
                    running_jobs=MappingProxyType({str(i): str(i) for i in node.running}),
                    drain_acknowledged=node.acked,
                    node_storage=node.node_storage,
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
                    zone=node.zone,
                    offer_key=node.offer_key,
                    launched_at=node.launched_at,
                )
            out.append(node.instance)
        return out

    def _act(self, actions: Sequence[Action]) -> bool:
        """Apply a decision's actions; True if EC2 refused an offering (so the round decides again)."""
        refused = False
        dispatch = False
        for action in actions:
            match action:
                case Launch():
                    refused |= self._launch(action)
                case Drain():
                    for node_id in action.instance_ids:
                        self._drain(node_id)
                case Undrain():
                    for node_id in action.instance_ids:
                        dispatch |= self._undrain(node_id)
                case Terminate():
                    for node_id in action.instance_ids:
                        if node_id in self.nodes:
                            self.killed_by_scale_in += self._remove(node_id, requeue_reason="terminated by scale-in")
                case Stop():
                    for node_id in action.instance_ids:
                        self._stop(node_id)
                case StartStopped():
                    for node_id in action.instance_ids:
                        self._start_stopped(node_id)
                case Forget() | Evict():
                    for record in action.nodes:
                        if record.instance_id in self.nodes:
                            self.requeued += self._remove(record.instance_id, requeue_reason=action.reason)
                case SetState() | Adopt():
                    pass  # records and instances always agree here: nothing to adopt or re-state
        if dispatch:
            self._dispatch()
        return refused

    def _drain(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.state not in (NodeState.PENDING, NodeState.ACTIVE):
            return
        node.state = NodeState.DRAINING
        node.draining_since = self.now
        node.acked = False
        node.drain_gen += 1
        node.record = None
        self._push(next_heartbeat(node, self.now), ACK, (node_id, node.drain_gen))

    def _undrain(self, node_id: str) -> bool:
        node = self.nodes.get(node_id)
        if node is None or node.state is not NodeState.DRAINING:
            return False
        node.state = NodeState.ACTIVE if self.now >= node.ready_at else NodeState.PENDING
        node.draining_since = None
        node.acked = False
        node.drain_gen += 1
        node.record = None
        return True

    def _stop(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            self.killed_by_scale_in += self._requeue_jobs(node)
            self._charge(node)
            node.state = NodeState.STOPPED
            node.record = None
            node.instance = None

    def _start_stopped(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is not None and node.state is NodeState.STOPPED:
            self._charge(node)  # its root volume, while it was stopped
            node.state = NodeState.PENDING
            node.idle_since = self.now
            node.ready_at = self.now + self.options.boot_delay
            node.record = None
            node.instance = None
            self._push(node.ready_at, READY, node_id)
