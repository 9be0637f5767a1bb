"""What an EC2 event does to its node, as a pure rule returning the scaling round's own actions.

A node's jobs go back to the queue only once the node is *gone*: EC2 says stopped or terminated (or the
round finds its agent silent). An event that only announces the end (a spot interruption warning, a
``stopping`` or ``shutting-down`` state change) marks the node INTERRUPTED: it takes no new work and is
replaced, while the jobs stay RUNNING on it. Their processes may still run; the agent evacuates them
(SIGTERM, or its watch of the spot notice) and requeues each only once its process tree is gone. Requeueing
them here, earlier, let a copy start elsewhere while the first still ran.

| event                                  | node state before          | actions                                      |
|----------------------------------------|----------------------------|----------------------------------------------|
| spot interruption warning              | not INTERRUPTED/STOPPED    | SetState INTERRUPTED (jobs kept)             |
| rebalance recommendation               | PENDING/ACTIVE, not static | Drain (jobs keep running)                    |
| state stopping / shutting-down         | not INTERRUPTED/STOPPED    | SetState INTERRUPTED (jobs kept)             |
| state stopped                          | not STOPPED, or still busy | SetState STOPPED (its jobs go back)          |
| state terminated                       | any                        | Forget (its jobs go back, the record goes)   |
| anything else                          |                            | nothing                                      |
"""

from __future__ import annotations

import enum

from shared.domain.cluster_state import NodeRecord, NodeState
from shared.domain.decision import Action, Drain, Forget, SetState


class InstanceEventKind(enum.StrEnum):
    STATE_CHANGE = "state-change"
    SPOT_INTERRUPTION = "spot-interruption"
    REBALANCE = "rebalance-recommendation"


LEAVING_STATES = ("stopping", "shutting-down")  # EC2 is ending the instance; its processes may still run
_ENDED = (NodeState.INTERRUPTED, NodeState.STOPPED)


def instance_event_actions(node: NodeRecord, kind: InstanceEventKind, ec2_state: str | None) -> tuple[Action, ...]:
    """The actions that make ``node``'s record agree with one EC2 event (() when it already does)."""
    one = (node,)
    if kind is InstanceEventKind.SPOT_INTERRUPTION or (
        kind is InstanceEventKind.STATE_CHANGE and ec2_state in LEAVING_STATES
    ):
        if node.state in _ENDED:
            return ()
        why = "spot interruption warning" if kind is InstanceEventKind.SPOT_INTERRUPTION else f"node {ec2_state}"
        return (
            SetState(
                nodes=one,
                state=NodeState.INTERRUPTED,
                reason=f"{why}: no new work and a replacement; its agent returns its jobs once their processes end",
            ),
        )
    if kind is InstanceEventKind.REBALANCE:
        if node.static or node.state not in (NodeState.PENDING, NodeState.ACTIVE):
            return ()  # a static node is never drained
        return (Drain(offer_key=node.offer_key, instance_ids=(node.instance_id,), reason="rebalance recommendation"),)
    if kind is not InstanceEventKind.STATE_CHANGE:
        return ()
    if ec2_state == "stopped":
        if node.state is NodeState.STOPPED and not node.busy:
            return ()
        return (SetState(nodes=one, state=NodeState.STOPPED, reason="node stopped: its jobs go back to the queue"),)
    if ec2_state == "terminated":
        return (Forget(nodes=one, reason="node terminated: its jobs go back to the queue"),)
    return ()
