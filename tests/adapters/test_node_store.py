"""Node records: heartbeats wake PENDING nodes only, static nodes are never drained."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from shared.adapters.memory_state import MemoryNodeStore
from shared.adapters.node_store import DynamoNodeStore, node_key
from shared.adapters.state_table import StateTable, StateTableError
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.resources import Resources
from shared.domain.units import GiB

Store = DynamoNodeStore | MemoryNodeStore
NOW = 1_700_000_000.0


def node(instance_id: str = "i-1", *, state: NodeState = NodeState.PENDING, static: bool = False) -> NodeRecord:
    return NodeRecord(
        instance_id=instance_id,
        offer_key="c5.4xlarge/c5a.4xlarge:spot",
        instance_type="c5a.4xlarge",
        market=Market.SPOT,
        state=state,
        zone="us-east-1a",
        static=static,
        launched_at=NOW,
    )


def test_put_get_and_list_nodes(node_store: Store) -> None:
    # GIVEN two nodes, one with every optional field set
    full = NodeRecord(
        instance_id="i-2",
        offer_key="m5.2xlarge",
        instance_type="m5.2xlarge",
        market=Market.ON_DEMAND,
        state=NodeState.ACTIVE,
        zone=None,
        static=True,
        launched_at=NOW,
        heartbeat_at=NOW + 30,
        draining_since=None,
        free=Resources(cores=7.5, memory=30 * GiB, disk=100 * GiB, accelerators=0),
        running_jobs=MappingProxyType({"job-1": "receipt-1"}),
    )

    # WHEN they are put
    node_store.put_node(node("i-1"))
    node_store.put_node(full)

    # THEN they read back as written, and the fleet lists both
    assert node_store.get_node("i-1") == node("i-1")
    got = node_store.get_node("i-2")
    assert got is not None
    assert got.free == full.free
    assert dict(got.running_jobs) == {"job-1": "receipt-1"}
    assert (got.static, got.heartbeat_at, got.zone) == (True, NOW + 30, None)
    assert [n.instance_id for n in node_store.list_nodes()] == ["i-1", "i-2"]
    assert node_store.get_node("i-9") is None


def test_first_heartbeat_makes_a_pending_node_active(node_store: Store) -> None:
    # GIVEN a node just launched
    node_store.put_node(node("i-1"))

    # WHEN its agent reports
    free = Resources(cores=14.0, memory=28 * GiB, disk=90 * GiB)
    record = node_store.heartbeat("i-1", free=free, running_jobs={"job-1": "rh-1"}, now=NOW + 60)

    # THEN it is ACTIVE with the report
    assert record is not None
    assert (record.state, record.free, dict(record.running_jobs), record.heartbeat_at) == (
        NodeState.ACTIVE,
        free,
        {"job-1": "rh-1"},
        NOW + 60,
    )
    assert record.busy


def test_heartbeat_does_not_wake_a_draining_node(node_store: Store) -> None:
    # GIVEN a draining node
    node_store.put_node(node("i-1", state=NodeState.ACTIVE))
    assert node_store.mark_draining("i-1", NOW)

    # WHEN its agent reports no running jobs
    record = node_store.heartbeat("i-1", free=Resources(cores=16.0), running_jobs={}, now=NOW + 30)

    # THEN it stays DRAINING (now idle), since when it was told
    assert record is not None
    assert (record.state, record.draining_since, record.busy) == (NodeState.DRAINING, NOW, False)


def test_heartbeat_of_an_unknown_node_is_none(node_store: Store) -> None:
    # GIVEN no such node  WHEN an agent reports  THEN nothing is created
    assert node_store.heartbeat("i-404", free=Resources(), running_jobs={}, now=NOW) is None
    assert node_store.list_nodes() == []


def test_mark_draining_refuses_static_nodes_and_is_idempotent(node_store: Store) -> None:
    # GIVEN a static node, a scaled node, and a terminated one
    node_store.put_node(node("i-static", state=NodeState.ACTIVE, static=True))
    node_store.put_node(node("i-scaled", state=NodeState.ACTIVE))
    node_store.put_node(node("i-gone", state=NodeState.GONE))

    # WHEN each is drained (the scaled one twice)
    static = node_store.mark_draining("i-static", NOW)
    scaled = node_store.mark_draining("i-scaled", NOW)
    again = node_store.mark_draining("i-scaled", NOW + 60)
    gone = node_store.mark_draining("i-gone", NOW)
    unknown = node_store.mark_draining("i-404", NOW)

    # THEN only the scaled node drains, and draining it again keeps when it started
    assert (static, scaled, again, gone, unknown) == (False, True, True, False, False)
    static_node, scaled_node = node_store.get_node("i-static"), node_store.get_node("i-scaled")
    assert static_node is not None and static_node.state is NodeState.ACTIVE
    assert scaled_node is not None and (scaled_node.state, scaled_node.draining_since) == (NodeState.DRAINING, NOW)


def test_mark_state_and_remove(node_store: Store) -> None:
    # GIVEN a draining node
    node_store.put_node(node("i-1", state=NodeState.ACTIVE))
    node_store.mark_draining("i-1", NOW)

    # WHEN it is taken back into service, then interrupted, then removed
    active = node_store.mark_state("i-1", NodeState.ACTIVE, NOW + 1)
    after_active = node_store.get_node("i-1")
    interrupted = node_store.mark_state("i-1", "INTERRUPTED", NOW + 2)
    after_interrupt = node_store.get_node("i-1")
    node_store.remove_node("i-1")
    node_store.remove_node("i-1")  # removing twice is harmless

    # THEN each step shows, and a missing node cannot be marked
    assert active and interrupted
    assert after_active is not None and (after_active.state, after_active.draining_since) == (NodeState.ACTIVE, None)
    assert after_interrupt is not None and after_interrupt.state is NodeState.INTERRUPTED
    assert node_store.get_node("i-1") is None
    assert not node_store.mark_state("i-1", NodeState.GONE, NOW + 3)


def test_many_nodes_are_put_and_removed_in_batches(node_store: Store) -> None:
    # GIVEN 60 new nodes (more than two 25-item batches)
    nodes = [node(f"i-{i:03d}") for i in range(60)]
    # WHEN they are put at once, then 40 of them removed at once (with an id that was never there)
    node_store.put_nodes(nodes)
    listed = {n.instance_id for n in node_store.list_nodes()}
    node_store.remove_nodes([n.instance_id for n in nodes[:40]] + ["i-ghost"])
    # THEN all were there, and only the other 20 are left, unchanged
    assert listed == {n.instance_id for n in nodes}
    assert node_store.list_nodes() == nodes[40:]


def test_batch_writes_are_few_calls(table: StateTable) -> None:
    # GIVEN a scale-up of 60 nodes
    store = DynamoNodeStore(table)
    made: list[str] = []
    table.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: made.append(model.name))
    # WHEN their records are written  THEN it takes three calls, not sixty
    store.put_nodes([node(f"i-{i:03d}") for i in range(60)])
    assert made == ["BatchWriteItem"] * 3


def test_a_drain_is_acknowledged_only_by_a_report_made_knowing_of_it(node_store: Store) -> None:
    # GIVEN an active node
    node_store.put_node(node("i-1", state=NodeState.ACTIVE))
    idle: dict[str, str] = {}
    # WHEN its agent reports knowing of a drain, then the node is drained anew
    acknowledged = node_store.heartbeat("i-1", free=Resources(), running_jobs=idle, now=NOW, draining=True)
    node_store.mark_draining("i-1", NOW + 1)
    after_drain = node_store.get_node("i-1")
    # AND its agent reports not knowing, then knowing, then the node takes work again
    unaware = node_store.heartbeat("i-1", free=Resources(), running_jobs=idle, now=NOW + 2)
    aware = node_store.heartbeat("i-1", free=Resources(), running_jobs=idle, now=NOW + 3, draining=True)
    node_store.mark_state("i-1", NodeState.ACTIVE, NOW + 4)
    # THEN only the reports made knowing count, and a new drain or taking work again forgets them
    assert acknowledged is not None and acknowledged.drain_acknowledged
    assert after_drain is not None and not after_drain.drain_acknowledged
    assert unaware is not None and not unaware.drain_acknowledged
    assert aware is not None and aware.drain_acknowledged and aware.state is NodeState.DRAINING
    again = node_store.get_node("i-1")
    assert again is not None and not again.drain_acknowledged and again.state is NodeState.ACTIVE


def test_only_idle_nodes_are_claimed_and_a_claimed_node_never_takes_work_again(node_store: Store) -> None:
    # GIVEN drained nodes whose agents knew of the drain: one idle, one busy; a drained node whose agent has not
    # said so yet; an active idle node; a stopped warm-pool node; and one that is not there at all
    idle: dict[str, str] = {}
    for instance_id in ("i-idle", "i-busy", "i-unaware", "i-active"):
        node_store.put_node(node(instance_id, state=NodeState.ACTIVE))
    for instance_id in ("i-idle", "i-busy", "i-unaware"):
        node_store.mark_draining(instance_id, NOW)
    node_store.heartbeat("i-idle", free=Resources(), running_jobs=idle, now=NOW + 1, draining=True)
    node_store.heartbeat("i-busy", free=Resources(), running_jobs={"job-1": "r-1"}, now=NOW + 1, draining=True)
    node_store.put_node(node("i-pool", state=NodeState.STOPPED))

    # WHEN a round claims all of them for termination
    claimed = node_store.claim_idle(["i-idle", "i-busy", "i-unaware", "i-active", "i-pool", "i-missing"], NOW + 2)

    # THEN only the confirmed-idle drained node and the stopped one are claimed, and nothing gives them work
    # again (an overlapping round's undrain or warm-pool start is refused), while the others stay free to
    assert claimed == ["i-idle", "i-pool"]
    assert not node_store.mark_state("i-idle", NodeState.ACTIVE, NOW + 3)
    assert not node_store.mark_state("i-pool", NodeState.PENDING, NOW + 3)
    assert node_store.mark_state("i-busy", NodeState.ACTIVE, NOW + 3)
    assert node_store.get_node("i-missing") is None  # a claim creates nothing
    # AND a claimed node stopped into the warm pool may be started again later
    assert node_store.mark_state("i-idle", NodeState.STOPPED, NOW + 4)
    assert node_store.mark_state("i-idle", NodeState.PENDING, NOW + 5)


def test_mark_state_draining_follows_the_draining_rules(node_store: Store) -> None:
    # GIVEN a static node  WHEN it is marked DRAINING through mark_state  THEN it is refused
    node_store.put_node(node("i-static", state=NodeState.ACTIVE, static=True))
    assert not node_store.mark_state("i-static", NodeState.DRAINING, NOW)


def test_mark_state_rejects_an_unknown_state(node_store: Store) -> None:
    # GIVEN a node  WHEN it is marked with a state that does not exist  THEN ValueError names it
    node_store.put_node(node("i-1"))
    with pytest.raises(ValueError, match="SLEEPING"):
        node_store.mark_state("i-1", "SLEEPING", NOW)


def test_a_missing_table_is_named_in_the_error(missing_table: StateTable) -> None:
    # GIVEN a node store on a missing table  WHEN it lists nodes  THEN the error names the table
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoNodeStore(missing_table).list_nodes()
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoNodeStore(missing_table).put_nodes([node("i-1")])
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoNodeStore(missing_table).heartbeat("i-1", free=Resources(), running_jobs={}, now=NOW)


def test_a_node_launched_with_a_sized_root_volume_keeps_its_size(node_store: Store) -> None:
    # GIVEN a node launched with a root volume of its own (not a whole number of GiB, to see every byte kept)
    sized = replace(node("i-1"), node_storage=200 * GiB + 1)
    # WHEN it is put, batch-put, reported on and drained
    node_store.put_node(sized)
    node_store.put_nodes([replace(sized, instance_id="i-2")])
    node_store.heartbeat("i-1", free=Resources(cores=4.0), running_jobs={}, now=NOW + 30)
    node_store.mark_draining("i-1", NOW + 60)
    # THEN every read gives its size back, and an unsized node's is still None
    node_store.put_node(node("i-3"))
    assert {n.instance_id: n.node_storage for n in node_store.list_nodes()} == {
        "i-1": 200 * GiB + 1,
        "i-2": 200 * GiB + 1,
        "i-3": None,
    }


def test_a_record_written_before_root_volumes_were_sized_has_no_size(table: StateTable) -> None:
    # GIVEN a node's item without the attribute, as every item written before this change is
    store = DynamoNodeStore(table)
    store.put_node(replace(node("i-1"), node_storage=100 * GiB))
    table.client.update_item(TableName=table.name, Key=node_key("i-1"), UpdateExpression="REMOVE node_storage")
    # WHEN it is read  THEN it has the cluster's node_storage (None), like any other old field left unset
    assert store.get_node("i-1") == node("i-1")
