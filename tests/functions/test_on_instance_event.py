"""on_instance_event's real handler on moto: lost capacity is replaced, a node's jobs go back once it is gone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

from functions import on_instance_event
from shared.adapters import aws
from shared.domain.cluster_state import JobStatus, NodeRecord, NodeState
from shared.domain.jobs import Shape
from shared.domain.resources import Resources
from shared.services.job_message import decode_job_message
from tests.functions.harness import REGION, Cluster, GiB, load_event, shape, sqs_batch

SPOT_JOB = shape(4, 8, 3600, preemptible=True)  # four to a c5.4xlarge spot node


def spot_node_running_three_jobs(cluster: Cluster) -> tuple[str, dict[str, str]]:
    cluster.submit({SPOT_JOB: 3})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    assert node.offer_key == "c5.4xlarge/c5a.4xlarge:spot"
    running = cluster.run_jobs_on(node.instance_id, 3)
    return node.instance_id, running


def assert_running_on(cluster: Cluster, instance_id: str, job_ids: Iterable[str]) -> None:
    for job_id in job_ids:
        record = cluster.jobs.get_job(job_id)
        assert record is not None and record.status is JobStatus.RUNNING and record.node == instance_id


def assert_back_in_the_queue(cluster: Cluster, job_ids: Iterable[str]) -> None:
    for job_id in job_ids:
        record = cluster.jobs.get_job(job_id)
        assert record is not None and record.status is JobStatus.QUEUED and record.node is None
    redelivered = cluster.queue.receive(max_messages=10, wait_seconds=0)
    assert sorted(json.loads(m.body)["job"]["id"] for m in redelivered) == sorted(job_ids)


def test_a_spot_warning_replaces_the_node_but_leaves_its_jobs_to_their_agent(cluster: Cluster) -> None:
    # GIVEN a spot node running 3 jobs (their messages in flight, hidden for 15 minutes)
    instance_id, running = spot_node_running_three_jobs(cluster)
    # WHEN EC2 warns that it will reclaim the node
    cluster.clock.advance(30)
    result = cluster.instance_event("spot_interruption_warning", instance_id)
    # THEN the node takes no work and a round replaces it, but its jobs stay RUNNING there: their processes
    # still run, and a copy started elsewhere now would run beside them (the agent evacuates them itself)
    assert result["requeued_jobs"] == []
    assert cluster.node_states()[instance_id] is NodeState.INTERRUPTED
    assert result["round"]["ran"] and result["round"]["launched"] == 1
    assert_running_on(cluster, instance_id, running)
    assert cluster.queue.receive(max_messages=10, wait_seconds=0) == []
    # AND once EC2 has terminated it, whatever still runs there goes back to the queue, none lost
    cluster.ec2.terminate_instances(InstanceIds=[instance_id])
    cluster.clock.advance(120)
    gone = cluster.instance_event("ec2_state_change", instance_id, state="terminated")
    assert sorted(gone["requeued_jobs"]) == sorted(running) and instance_id not in cluster.node_states()
    assert_back_in_the_queue(cluster, running)
    assert sum(c.queued for c in cluster.demand().values()) == 3  # counted once


def test_jobs_the_agent_evacuated_are_not_returned_again_when_the_node_goes(cluster: Cluster) -> None:
    instance_id, running = spot_node_running_three_jobs(cluster)
    cluster.instance_event("spot_interruption_warning", instance_id)
    for job_id in running:  # the agent ended each job's processes, then gave it back
        assert cluster.jobs.requeue_job(job_id, instance_id, reason="evacuated", now=cluster.clock.now)
    cluster.ec2.terminate_instances(InstanceIds=[instance_id])
    cluster.clock.advance(120)
    result = cluster.instance_event("ec2_state_change", instance_id, state="terminated")
    assert result["requeued_jobs"] == [] and instance_id not in cluster.node_states()
    assert sum(c.queued for c in cluster.demand().values()) == 3  # counted once


def test_a_node_shutting_down_keeps_its_jobs_until_it_is_terminated(cluster: Cluster) -> None:
    # GIVEN a busy node that EC2 starts shutting down underneath us (moto's instance runs on meanwhile)
    cluster.submit({shape(4, 16, 3600): 2})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    running = cluster.run_jobs_on(node.instance_id, 2)
    # WHEN it is shutting down  THEN it is replaced, and its jobs (whose processes may still run) stay
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="shutting-down")
    assert result["requeued_jobs"] == [] and result["round"]["launched"] == 1
    assert cluster.node_states()[node.instance_id] is NodeState.INTERRUPTED
    assert_running_on(cluster, node.instance_id, running)
    # AND a scheduled round meanwhile does not return them either
    cluster.scale()
    assert_running_on(cluster, node.instance_id, running)
    # WHEN it is terminated  THEN they go back to the queue
    cluster.ec2.terminate_instances(InstanceIds=[node.instance_id])
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="terminated")
    assert sorted(result["requeued_jobs"]) == sorted(running)
    assert_back_in_the_queue(cluster, running)


def test_a_job_missing_from_a_dead_nodes_last_heartbeat_is_requeued(cluster: Cluster) -> None:
    # GIVEN a node whose last heartbeat listed 2 jobs, and a third job it started after that report
    cluster.submit({shape(4, 8, 3600): 3})
    cluster.scale()
    node = cluster.nodes.list_nodes()[0]
    reported = cluster.run_jobs_on(node.instance_id, 2)
    (late,) = cluster.queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=900)
    late_job = decode_job_message(late.body)
    assert cluster.jobs.start_job(late_job, node.instance_id, cluster.clock.now) is not None
    # WHEN the node is terminated before it reports again
    cluster.ec2.terminate_instances(InstanceIds=[node.instance_id])
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="terminated")
    # THEN all three jobs are queued again (the unreported one's message returns after its timeout)
    assert sorted(result["requeued_jobs"]) == sorted([*reported, late_job.id])
    record = cluster.jobs.get_job(late_job.id)
    assert record is not None and record.status is JobStatus.QUEUED and record.node is None


def test_a_stopping_node_keeps_its_jobs_until_it_is_stopped(cluster: Cluster) -> None:
    cluster.submit({shape(4, 16, 3600): 2})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    running = cluster.run_jobs_on(node.instance_id, 2)
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="stopping")
    assert result["requeued_jobs"] == [] and cluster.node_states()[node.instance_id] is NodeState.INTERRUPTED
    assert_running_on(cluster, node.instance_id, running)
    cluster.ec2.stop_instances(InstanceIds=[node.instance_id])
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="stopped")
    assert sorted(result["requeued_jobs"]) == sorted(running)
    assert_back_in_the_queue(cluster, running)


def test_rebalance_recommendation_drains_and_replaces_without_killing_work(cluster: Cluster) -> None:
    instance_id, running = spot_node_running_three_jobs(cluster)
    result = cluster.instance_event("rebalance_recommendation", instance_id)
    assert result["requeued_jobs"] == []
    assert cluster.node_states()[instance_id] is NodeState.DRAINING
    assert result["round"]["launched"] == 1
    assert all(cluster.jobs.get_job(j).status is JobStatus.RUNNING for j in running)  # type: ignore[union-attr]


def test_events_for_other_instances_are_ignored_without_a_round(cluster: Cluster) -> None:
    result = cluster.instance_event("ec2_state_change", "i-0aaaaaaaaaaaaaaaa", state="running")
    assert result["known"] is False and result["round"] is None


def test_a_batch_with_malformed_messages_fails_only_those(
    cluster: Cluster, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN an SQS batch: an interruption warning for a busy node, a malformed warning, and garbage
    instance_id, _ = spot_node_running_three_jobs(cluster)
    good = json.dumps(load_event("spot_interruption_warning", detail={"instance-id": instance_id}))
    bad = json.dumps(load_event("malformed_spot_interruption"))
    response = cluster.invoke(on_instance_event, sqs_batch(bad, good, "[1, 2"))
    # THEN only the two bad ones fail (SQS retries them, then dead-letters them), the good one is handled
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-2"}]}
    assert cluster.node_states()[instance_id] is NodeState.INTERRUPTED
    errors = [line["reason"] for line in logs() if line["level"] == "ERROR"]
    assert any("detail.instance-id" in e for e in errors) and any("not JSON" in e for e in errors)


def test_a_malformed_direct_event_is_rejected_with_a_reason(cluster: Cluster) -> None:
    result = cluster.invoke(on_instance_event, load_event("malformed_spot_interruption"))
    assert result["status"] == "rejected"
    assert "instance-id" in result["reason"] and "EC2 Spot Instance Interruption Warning" in result["reason"]


def test_the_same_warning_twice_is_handled_once(cluster: Cluster) -> None:
    instance_id, _ = spot_node_running_three_jobs(cluster)
    event = load_event("spot_interruption_warning", detail={"instance-id": instance_id})
    first = cluster.invoke(on_instance_event, event)
    assert cluster.invoke(on_instance_event, event) == first
    assert len(cluster.instances()) == 2


DISK_BOUND = Shape(resources=Resources(cores=1, memory=2 * GiB, disk=40 * GiB), wall_time=3600)  # one a 50 GiB node


def ended_as_it_started(instance_id: str, code: str) -> None:
    """EC2 accepted the launch, then ended the instance as it started, for ``code`` (moto's own state reason)."""
    aws.client("ec2", REGION).terminate_instances(InstanceIds=[instance_id])
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.get_instance(instance_id).state_reason = StateReason(f"{code}: injected", code)


def one_launch(cluster: Cluster) -> NodeRecord:
    (node,) = [n for n in cluster.nodes.list_nodes() if n.state is NodeState.PENDING]
    return node


@pytest.mark.parametrize(
    ("code", "replacement_sized"),
    [("Client.VolumeLimitExceeded", False), ("Server.InternalError", True)],
)
def test_a_node_the_storage_quota_ended_as_it_started_keeps_rounds_to_the_templates_volume(
    cluster: Cluster, code: str, replacement_sized: bool
) -> None:
    # GIVEN a round that grew a node's root volume to hold several disk-bound jobs
    cluster.submit({DISK_BOUND: 3})
    cluster.scale()
    first = one_launch(cluster)
    assert first.node_storage is not None and first.node_storage > cluster.settings.node_storage
    # WHEN EC2 ends it as it starts: the region's EBS storage quota refused the volume after RunInstances answered
    ended_as_it_started(first.instance_id, code)
    cluster.clock.advance(60)
    result = cluster.instance_event("ec2_state_change", first.instance_id, state="terminated")
    # THEN the round it triggers replaces it with the launch template's volume, and so does the next round
    assert result["volume_refused"] is not replacement_sized and result["round"]["launched"] >= 1
    replacements = [n for n in cluster.nodes.list_nodes() if n.instance_id != first.instance_id]
    assert replacements and all((n.node_storage is not None) is replacement_sized for n in replacements)
    # (a node that ended for another reason was not the quota's doing: its replacement is sized again)
    if not replacement_sized:  # AND a later round keeps to the template's volume too, while the refusal is cached
        cluster.submit({DISK_BOUND: 3}, prefix="more")
        cluster.clock.advance(60)
        cluster.scale()
        assert all(n.node_storage is None for n in cluster.nodes.list_nodes())
        assert len(cluster.nodes.list_nodes()) > len(replacements)
