"""The chaos run's witness tells a rerun its faults caused from a defect, and names the scaler's actions behind
a busy node that went away (from the decision log's own action records, ``describe_action``), so a failed
invariant says why it failed."""

from __future__ import annotations

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Drain, Evict, describe_action
from shared.local.chaos import RERUN_WINDOW, _actions_naming, rerun_after_fault


def test_the_actions_that_named_a_node_are_found_oldest_first() -> None:
    # GIVEN the demo report's decisions: a drain of two nodes, then an eviction of one of them
    silent = NodeRecord(
        instance_id="i-2", offer_key="m5.2xlarge", instance_type="m5.2xlarge", market=Market.ON_DEMAND,
        state=NodeState.DRAINING,
    )  # fmt: skip
    drain = Drain(offer_key="m5.2xlarge", instance_ids=("i-1", "i-2"), reason="surplus")
    evict = Evict(nodes=(silent,), reason="agent silent for 600 s")
    decisions = [
        {"at_seconds": 60.0, "actions": [describe_action(drain)]},
        {"at_seconds": 720.0, "actions": [describe_action(evict)]},
    ]

    # WHEN the witness looks for each node  THEN it finds every action that named it, and nothing for others
    assert _actions_naming("i-2", decisions) == ["drain at 60.0 s: surplus", "evict at 720.0 s: agent silent for 600 s"]
    assert _actions_naming("i-1", decisions) == ["drain at 60.0 s: surplus"]
    assert _actions_naming("i-3", decisions) == []
    assert _actions_naming("i-1", None) == []


def test_a_second_completion_is_the_faults_doing_only_if_one_hit_the_first_ones_node_near_it() -> None:
    # GIVEN a job completed on i-1 at 1000.0 s (real time), then on i-2, and a fault on i-1 five seconds later
    where = ["i-1 at 1000.0", "i-2 at 1090.5"]
    # WHEN the witness judges it  THEN the rerun is the fault's doing (the record never heard of the first end)
    assert rerun_after_fault(where, {"i-1": [1005.0]})
    # AND not when the fault hit another node, or the same node long before or after
    assert not rerun_after_fault(where, {"i-2": [1005.0]})
    assert not rerun_after_fault(where, {"i-1": [1000.0 - RERUN_WINDOW - 1, 1000.0 + RERUN_WINDOW + 1]})
    assert not rerun_after_fault(["i-1 at ?", "i-2 at 1090.5"], {"i-1": [1000.0]})
    # AND a job completed once needs no explaining
    assert rerun_after_fault(["i-1 at 1000.0"], {})
