"""What an EC2 event does to a node: the decision table of ``instance_event_actions`` (pure, no AWS)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Drain, Forget, SetState
from shared.domain.instance_events import InstanceEventKind, instance_event_actions

SPOT, REBALANCE = InstanceEventKind.SPOT_INTERRUPTION, InstanceEventKind.REBALANCE
CHANGE = InstanceEventKind.STATE_CHANGE


def node(state: NodeState, *, jobs: int = 2, static: bool = False) -> NodeRecord:
    return NodeRecord(
        instance_id="i-0123456789abcdef0",
        offer_key="c5.large",
        instance_type="c5.large",
        market=Market.ON_DEMAND,
        state=state,
        static=static,
        running_jobs=MappingProxyType({f"job-{k}": f"rh-{k}" for k in range(jobs)}),
    )


A, INT, S, D, P = NodeState.ACTIVE, NodeState.INTERRUPTED, NodeState.STOPPED, NodeState.DRAINING, NodeState.PENDING


@pytest.mark.parametrize(
    ("kind", "ec2_state", "state", "jobs", "expected"),
    [
        # announced ends: the node is marked, its jobs stay (their agent evacuates them once their processes end)
        (SPOT, None, A, 2, (SetState, INT)),
        (SPOT, None, D, 2, (SetState, INT)),
        (SPOT, None, INT, 2, None),  # a repeated warning changes nothing
        (CHANGE, "stopping", A, 2, (SetState, INT)),
        (CHANGE, "shutting-down", A, 2, (SetState, INT)),
        (CHANGE, "shutting-down", INT, 2, None),
        # the node is gone: its jobs go back (SetState STOPPED and Forget return them)
        (CHANGE, "stopped", INT, 2, (SetState, S)),
        (CHANGE, "stopped", A, 0, (SetState, S)),
        (CHANGE, "stopped", S, 0, None),  # already recorded stopped and idle
        (CHANGE, "stopped", S, 1, (SetState, S)),  # stopped but still listing a job: return it
        (CHANGE, "terminated", INT, 2, (Forget, None)),
        (CHANGE, "terminated", A, 0, (Forget, None)),
        # a rebalance recommendation drains: the jobs keep running, a replacement is launched
        (REBALANCE, None, A, 2, (Drain, None)),
        (REBALANCE, None, P, 0, (Drain, None)),
        (REBALANCE, None, D, 2, None),
        (REBALANCE, None, INT, 2, None),
        # nothing to do
        (CHANGE, "running", A, 2, None),
        (CHANGE, "pending", P, 0, None),
    ],
)
def test_what_an_event_does_to_a_node(
    kind: InstanceEventKind,
    ec2_state: str | None,
    state: NodeState,
    jobs: int,
    expected: tuple[type, NodeState | None] | None,
) -> None:
    # GIVEN a node in ``state`` running ``jobs``  WHEN the event arrives
    actions = instance_event_actions(node(state, jobs=jobs), kind, ec2_state)
    # THEN exactly the expected action, each with a reason
    if expected is None:
        assert actions == ()
        return
    (action,) = actions
    assert type(action) is expected[0] and action.reason
    if isinstance(action, SetState):
        assert action.state is expected[1]


def test_a_static_node_is_never_drained_by_a_rebalance_recommendation() -> None:
    assert instance_event_actions(node(A, static=True), REBALANCE, None) == ()
    assert instance_event_actions(node(A, static=True), SPOT, None) != ()  # but a spot warning still marks it
