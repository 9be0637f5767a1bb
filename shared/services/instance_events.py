"""An EC2 event about one instance: the domain's rule says what it does to the node, the actuator does it,
and a round replaces the capacity if the node changed.

A node launched with a larger root volume that ends before it ever ran may have been refused it by the region's
EBS storage quota after RunInstances answered; then rounds keep to the template's volume for a while
(``ports.LARGER_ROOT_VOLUMES``), as they do when RunInstances itself refuses.

Events for instances without a record (another cluster's, or one already cleaned up) are ignored:
EventBridge cannot filter EC2 events by tag, and our own terminations must not wake the scaler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.cluster_state import NodeRecord, NodeState
from shared.domain.instance_events import LEAVING_STATES, InstanceEventKind, instance_event_actions
from shared.domain.node_types import Offer
from shared.domain.settings import ClusterSettings
from shared.services.actuator import Actuator
from shared.services.reconcile import ControlPlane, run_round
from shared.services.round_report import RoundResult

__all__ = ["InstanceEventKind", "InstanceEventResult", "handle_instance_event"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceEventResult:
    instance_id: str
    known: bool  # a node of this cluster
    node_changed: bool
    volume_refused: bool = False  # EC2 ended it as it started: the EBS storage quota refused its root volume
    requeued_jobs: tuple[str, ...] = ()
    round: RoundResult | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "known": self.known,
            "node_changed": self.node_changed,
            "volume_refused": self.volume_refused,
            "requeued_jobs": list(self.requeued_jobs),
            "round": None if self.round is None else self.round.to_dict(),
        }


def handle_instance_event(
    plane: ControlPlane,
    settings: ClusterSettings,
    offers: Sequence[Offer],
    *,
    kind: InstanceEventKind,
    instance_id: str,
    ec2_state: str | None,
    now: float,
    round_id: str,
) -> InstanceEventResult:
    """Act on what ``kind``/``ec2_state`` does to the node (``instance_event_actions``), then run a round if
    it changed: an interrupted, stopped or terminated node is replaced, a drained one gets a successor."""
    node = plane.nodes.get_node(instance_id)
    if node is None:
        return InstanceEventResult(instance_id=instance_id, known=False, node_changed=False)
    actuator = Actuator(
        plane.fleet_ports(),
        now=now,
        capacity_failure_ttl=settings.capacity_failure_ttl,
        max_preemptions=settings.max_preemptions,
    )
    volume_refused = _refused_its_volume(plane, node, kind, ec2_state)
    if volume_refused:
        actuator.volume_refused(f"{instance_id} ended as it started: the EBS storage quota refused its root volume")
    actions = instance_event_actions(node, kind, ec2_state)
    # A failed write raises (the event is delivered again), rather than being logged as a round's would be.
    actuator.act(actions, launch_key=round_id, unavailable=set(), keep_going=False)
    changed = bool(actions)
    result = None
    if changed:
        result = run_round(plane, settings, offers, now=now, round_id=round_id, trigger=f"instance {kind}")
    return InstanceEventResult(
        instance_id=instance_id,
        known=True,
        node_changed=changed,
        volume_refused=volume_refused,
        requeued_jobs=tuple(actuator.tally.requeued),
        round=result,
    )


def _refused_its_volume(plane: ControlPlane, node: NodeRecord, kind: InstanceEventKind, ec2_state: str | None) -> bool:
    ending = kind is InstanceEventKind.STATE_CHANGE and ec2_state in (*LEAVING_STATES, "terminated")
    if not ending or node.state is not NodeState.PENDING or node.node_storage is None:
        return False  # only a node launched with a larger volume that never ran is worth a DescribeInstances
    return plane.fleet.refused_root_volume(node.instance_id)
