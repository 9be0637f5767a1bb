"""Node records in the state table (``NODE``/``{instance id}``): the fleet is one Query.

State changes are conditional Updates, so the scaler and an agent writing at once cannot undo each
other: a heartbeat moves PENDING to ACTIVE but never wakes a DRAINING node, and a static node is never
drained. A node about to be stopped or terminated is first *claimed* (``retiring``), under the same
condition the round decided on, and a retiring node never takes work again: two rounds that overlap (a
lease that ran out) cannot terminate a node that the other undrained and gave a job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from shared.adapters.state_table import (
    StateTable,
    StateTableError,
    attr_names,
    b,
    get_bool,
    get_float,
    get_int,
    get_number_map,
    get_str,
    get_string_map,
    key,
    n,
    need_str,
    number_map,
    s,
    string_map,
)
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.resources import Resources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from shared.adapters.state_table import Item

NODE_PARTITION = "NODE"


def node_key(instance_id: str) -> Item:
    return key(NODE_PARTITION, instance_id)


class DynamoNodeStore:
    """``NodeStore`` on the state table."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def put_node(self, node: NodeRecord) -> None:
        self._table.put(_item(node))

    def put_nodes(self, nodes: Sequence[NodeRecord]) -> None:
        self._table.batch_write(puts=[_item(node) for node in nodes])

    def remove_nodes(self, instance_ids: Sequence[str]) -> None:
        self._table.batch_write(deletes=[node_key(i) for i in instance_ids])

    def get_node(self, instance_id: str) -> NodeRecord | None:
        item = self._table.get(node_key(instance_id))
        return None if item is None else self._record(item)

    def list_nodes(self) -> list[NodeRecord]:
        return [self._record(item) for item in self._table.query(NODE_PARTITION)]

    def heartbeat(
        self,
        instance_id: str,
        *,
        free: Resources,
        running_jobs: Mapping[str, str],
        now: float,
        draining: bool = False,
    ) -> NodeRecord | None:
        values: dict[str, AttributeValueTypeDef] = {
            ":free": _resources(free),
            ":jobs": string_map(running_jobs),
            ":now": n(now),
            ":ack": b(draining),
        }
        report = "SET #free = :free, #running_jobs = :jobs, #heartbeat_at = :now, #drain_acknowledged = :ack"
        names = attr_names("free", "running_jobs", "heartbeat_at", "drain_acknowledged")
        # The first word from an agent makes a PENDING node ACTIVE; a node in any other state keeps it.
        item = self._table.update(
            node_key(instance_id),
            report + ", #state = :active",
            condition="#state IN (:pending, :active)",
            names={**names, **attr_names("state")},
            values={**values, ":active": s(NodeState.ACTIVE), ":pending": s(NodeState.PENDING)},
        )
        if item is None:
            item = self._table.update(
                node_key(instance_id),
                report,
                condition="attribute_exists(#pk)",
                names={**names, **attr_names("pk")},
                values=values,
            )
        return None if item is None else self._record(item)

    def mark_draining(self, instance_id: str, now: float) -> bool:
        """ACTIVE/PENDING → DRAINING. True also if it was already draining (``draining_since`` is kept)."""
        item = self._table.update(
            node_key(instance_id),
            "SET #state = :draining, #draining_since = :now, #drain_acknowledged = :false",
            condition="#state IN (:active, :pending) AND (attribute_not_exists(#static) OR #static = :false)",
            names=attr_names("state", "draining_since", "static", "drain_acknowledged"),
            values={
                ":draining": s(NodeState.DRAINING),
                ":active": s(NodeState.ACTIVE),
                ":pending": s(NodeState.PENDING),
                ":now": n(now),
                ":false": b(False),
            },
        )
        if item is not None:
            return True
        current = self.get_node(instance_id)
        return current is not None and current.state is NodeState.DRAINING and not current.static

    def mark_state(self, instance_id: str, state: str, now: float) -> bool:
        """Set the node's state (False if there is no such node, or it is retiring and the state would give it
        work). DRAINING goes through ``mark_draining``."""
        new_state = NodeState(state)  # ValueError names a state that does not exist
        if new_state is NodeState.DRAINING:
            return self.mark_draining(instance_id, now)
        expression, condition, names = "SET #state = :state", "attribute_exists(#pk)", ["state", "pk"]
        if new_state in (NodeState.ACTIVE, NodeState.PENDING):
            expression += " REMOVE #draining_since, #drain_acknowledged"
            condition += " AND attribute_not_exists(#retiring)"
            names += ["draining_since", "drain_acknowledged", "retiring"]
        elif new_state is NodeState.STOPPED:
            expression += " REMOVE #retiring"  # stopped into the warm pool: it may be started again
            names.append("retiring")
        item = self._table.update(
            node_key(instance_id), expression, condition=condition, names=attr_names(*names),
            values={":state": s(new_state)},
        )  # fmt: skip
        return item is not None

    def claim_idle(self, instance_ids: Sequence[str], now: float) -> list[str]:
        """Those of ``instance_ids`` that are still idle, now claimed for a stop or a termination: drained with an
        empty report from an agent that knew of the drain (``drain_acknowledged``), or stopped in the warm pool.
        One conditional Update each; a node that changed since the round read it (undrained, busy, gone) is left
        out, and once claimed no undrain or start can give it work."""
        claimed = []
        for instance_id in instance_ids:
            item = self._table.update(
                node_key(instance_id),
                "SET #retiring = :true",
                condition="(#state = :draining AND #drain_acknowledged = :true"
                " AND (attribute_not_exists(#running_jobs) OR size(#running_jobs) = :zero)) OR #state = :stopped",
                names=attr_names("retiring", "state", "drain_acknowledged", "running_jobs"),
                values={
                    ":true": b(True),
                    ":draining": s(NodeState.DRAINING),
                    ":stopped": s(NodeState.STOPPED),
                    ":zero": n(0),
                },
            )
            if item is not None:
                claimed.append(instance_id)
        return claimed

    def remove_node(self, instance_id: str) -> None:
        self._table.delete(node_key(instance_id))

    def _record(self, item: Item) -> NodeRecord:
        try:
            free_values = get_number_map(item, "free")
            return NodeRecord(
                instance_id=need_str(item, "sk"),
                offer_key=need_str(item, "offer_key"),
                instance_type=need_str(item, "instance_type"),
                market=Market(need_str(item, "market")),
                state=NodeState(need_str(item, "state")),
                zone=get_str(item, "zone"),
                static=get_bool(item, "static"),
                launched_at=get_float(item, "launched_at") or 0.0,
                heartbeat_at=get_float(item, "heartbeat_at"),
                draining_since=get_float(item, "draining_since"),
                free=None if "free" not in item else _resources_from(free_values),
                running_jobs=get_string_map(item, "running_jobs"),
                drain_acknowledged=get_bool(item, "drain_acknowledged"),
                node_storage=get_int(item, "node_storage"),  # None on items written before volumes were sized
            )
        except ValueError as error:
            raise StateTableError(
                f"node record {get_str(item, 'sk')!r} in table {self._table.name!r} is corrupt: {error}"
            ) from None


def _resources(resources: Resources) -> AttributeValueTypeDef:
    return number_map(
        {
            "cores": resources.cores,
            "memory": resources.memory,
            "disk": resources.disk,
            "accelerators": resources.accelerators,
        }
    )


def _resources_from(values: Mapping[str, float]) -> Resources:
    return Resources(
        cores=values.get("cores", 0.0),
        memory=int(values.get("memory", 0)),
        disk=int(values.get("disk", 0)),
        accelerators=int(values.get("accelerators", 0)),
    )


def _item(node: NodeRecord) -> Item:
    item: Item = {
        **node_key(node.instance_id),
        "offer_key": s(node.offer_key),
        "instance_type": s(node.instance_type),
        "market": s(node.market),
        "state": s(node.state),
        "static": b(node.static),
        "launched_at": n(node.launched_at),
        "running_jobs": string_map(node.running_jobs),
        "drain_acknowledged": b(node.drain_acknowledged),
    }
    optional: dict[str, AttributeValueTypeDef | None] = {
        "zone": None if node.zone is None else s(node.zone),
        "heartbeat_at": None if node.heartbeat_at is None else n(node.heartbeat_at),
        "draining_since": None if node.draining_since is None else n(node.draining_since),
        "free": None if node.free is None else _resources(node.free),
        "node_storage": None if node.node_storage is None else n(node.node_storage),
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item
