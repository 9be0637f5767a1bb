"""The decision log (newest first, TTL, idempotent per round) and the cluster's settings, status, runtimes."""

from __future__ import annotations

import pytest

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import RETENTION, DynamoDecisionLog, decision_sort_key
from shared.adapters.memory_state import MemoryClusterStore, MemoryDecisionLog
from shared.adapters.state_table import StateTable, StateTableError, key
from shared.domain.cluster_state import ClusterStatus
from shared.domain.settings import ClusterSettings

Log = DynamoDecisionLog | MemoryDecisionLog
Clusters = DynamoClusterStore | MemoryClusterStore
NOW = 1_700_000_000.0


def test_recent_returns_the_newest_entries_first(decision_log: Log) -> None:
    # GIVEN five rounds' decisions, recorded out of order
    for t in (3, 1, 4, 0, 2):
        decision_log.record(f"round-{t}", NOW + t * 60, {"launch": {"c5.4xlarge": t}, "reasons": [f"r{t}"]})

    # WHEN the last three are asked for
    recent = decision_log.recent(3)

    # THEN they come newest first, each with its round and time
    assert [e["round_id"] for e in recent] == ["round-4", "round-3", "round-2"]
    assert recent[0] == {"launch": {"c5.4xlarge": 4}, "reasons": ["r4"], "round_id": "round-4", "at": NOW + 240}
    assert decision_log.recent(0) == []
    assert len(decision_log.recent(100)) == 5


def test_recording_a_round_twice_keeps_one_entry(decision_log: Log) -> None:
    # GIVEN a retried round  WHEN it records the same decision twice  THEN the log holds it once
    decision_log.record("round-1", NOW, {"launch": {}})
    decision_log.record("round-1", NOW, {"launch": {}})
    assert len(decision_log.recent(10)) == 1


def test_entries_are_kept_for_a_week_then_expire(table: StateTable) -> None:
    # GIVEN a decision recorded in the table
    DynamoDecisionLog(table).record("round-1", NOW, {"launch": {}, "cost": 1.25})

    # WHEN its item is read  THEN its sort key orders by time and its TTL is a week on
    item = table.get(key("DECISION", decision_sort_key("round-1", NOW)))
    assert item is not None
    assert item["sk"]["S"] == f"{int(NOW * 1000):015d}#round-1"
    assert int(item["expires_at"]["N"]) == int(NOW + RETENTION)


def test_settings_round_trip(cluster_store: Clusters) -> None:
    # GIVEN a cluster's settings
    settings = ClusterSettings.from_mapping(
        {"name": "genomics", "node_types": "c5.4xlarge/c5a.4xlarge:0.42,t3.large", "max_nodes": "10,2"}
    )

    # WHEN they are stored and read back  THEN they are the same
    assert cluster_store.get_settings() is None
    cluster_store.put_settings(settings)
    assert cluster_store.get_settings() == settings


def test_status_moves_only_from_the_expected_statuses(cluster_store: Clusters) -> None:
    # GIVEN a launching cluster
    assert cluster_store.get_status() is None
    assert not cluster_store.set_status(ClusterStatus.ACTIVE, reason=None, now=NOW, expected=[ClusterStatus.LAUNCHING])
    assert cluster_store.set_status(ClusterStatus.LAUNCHING, reason="shoal launch-cluster", now=NOW)

    # WHEN a teardown starts, and then the launch tries to mark it ACTIVE
    teardown = cluster_store.set_status(
        ClusterStatus.TEARING_DOWN, reason="destroy requested", now=NOW + 5, expected=list(ClusterStatus)
    )
    late_launch = cluster_store.set_status(
        ClusterStatus.ACTIVE, reason=None, now=NOW + 6, expected=[ClusterStatus.LAUNCHING]
    )

    # THEN the teardown holds
    assert (teardown, late_launch) == (True, False)
    status = cluster_store.get_status()
    assert status is not None
    assert (status.status, status.reason, status.updated_at) == (
        ClusterStatus.TEARING_DOWN,
        "destroy requested",
        NOW + 5,
    )


def test_runtimes_average_per_name(cluster_store: Clusters) -> None:
    # GIVEN finished jobs of two names  WHEN recorded  THEN each name averages its own
    for name, seconds in [("align", 100.0), ("align", 200.0), ("call", 30.5)]:
        cluster_store.record_runtime(name, seconds)
    assert cluster_store.average_runtimes() == {"align": 150.0, "call": 30.5}


def test_a_missing_table_is_named_in_the_error(missing_table: StateTable) -> None:
    # GIVEN the log and the cluster store on a missing table  WHEN used  THEN the error names the table
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoDecisionLog(missing_table).record("round-1", NOW, {})
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoDecisionLog(missing_table).recent(5)
    with pytest.raises(StateTableError, match="'no-such-table' does not exist"):
        DynamoClusterStore(missing_table).record_runtime("align", 1.0)
