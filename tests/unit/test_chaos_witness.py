"""The chaos run's witness names the scaler's actions behind a busy node that went away, from the decision log's
own action records (``describe_action``), so a failed invariant says why it failed."""

from __future__ import annotations

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Drain, Evict, describe_action
from shared.local.chaos import _actions_naming


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
