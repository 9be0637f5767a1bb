"""on_instance_event through its real handler on moto: interruptions return jobs, lost capacity is replaced."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from functions import on_instance_event
from shared.domain.cluster_state import JobStatus, NodeState
from tests.functions.harness import Cluster, load_event, shape, sqs_batch

SPOT_JOB = shape(4, 8, 3600, preemptible=True)  # four to a c5.4xlarge spot node


def spot_node_running_three_jobs(cluster: Cluster) -> tuple[str, dict[str, str]]:
    cluster.submit({SPOT_JOB: 3})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    assert node.offer_key == "c5.4xlarge/c5a.4xlarge:spot"
    running = cluster.run_jobs_on(node.instance_id, 3)
    return node.instance_id, running


def test_spot_interruption_returns_the_nodes_jobs_to_the_queue(cluster: Cluster) -> None:
    # GIVEN a spot node running 3 jobs (their messages in flight, hidden for 15 minutes)
    instance_id, running = spot_node_running_three_jobs(cluster)
    assert cluster.queue.receive(max_messages=10, wait_seconds=0) == []
    # WHEN EC2 warns that it will reclaim the node
    cluster.clock.advance(30)
    result = cluster.instance_event("spot_interruption_warning", instance_id)
    # THEN the 3 jobs are queued again, in the store and in the queue; none is lost
    assert sorted(result["requeued_jobs"]) == sorted(running)
    for job_id in running:
        record = cluster.jobs.get_job(job_id)
        assert record is not None and record.status is JobStatus.QUEUED and record.node is None
    redelivered = cluster.queue.receive(max_messages=10, wait_seconds=0)
    assert sorted(json.loads(m.body)["job"]["id"] for m in redelivered) == sorted(running)
    # AND the node is marked, and a round replaced it
    assert cluster.node_states()[instance_id] is NodeState.INTERRUPTED
    assert result["round"]["ran"] and result["round"]["launched"] == 1
    assert len(cluster.instances()) == 2  # EC2 terminates the warned node itself, two minutes later


def test_the_terminated_event_after_a_warning_changes_nothing_twice(cluster: Cluster) -> None:
    instance_id, _ = spot_node_running_three_jobs(cluster)
    cluster.instance_event("spot_interruption_warning", instance_id)
    cluster.ec2.terminate_instances(InstanceIds=[instance_id])
    cluster.clock.advance(120)
    result = cluster.instance_event("ec2_state_change", instance_id, state="terminated")
    assert result["requeued_jobs"] == [] and instance_id not in cluster.node_states()
    assert sum(c.queued for c in cluster.demand().values()) == 3  # counted once


def test_a_busy_node_terminated_underneath_us_returns_its_jobs(cluster: Cluster) -> None:
    cluster.submit({shape(4, 16, 3600): 2})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    running = cluster.run_jobs_on(node.instance_id, 2)
    cluster.ec2.terminate_instances(InstanceIds=[node.instance_id])
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="shutting-down")
    assert sorted(result["requeued_jobs"]) == sorted(running)
    assert node.instance_id not in cluster.node_states()
    assert result["round"]["launched"] == 1


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
    instance_id, running = spot_node_running_three_jobs(cluster)
    good = json.dumps(load_event("spot_interruption_warning", detail={"instance-id": instance_id}))
    bad = json.dumps(load_event("malformed_spot_interruption"))
    response = cluster.invoke(on_instance_event, sqs_batch(bad, good, "[1, 2"))
    # THEN only the two bad ones fail (SQS retries them, then dead-letters them), the good one is handled
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-2"}]}
    assert all(cluster.jobs.get_job(j).status is JobStatus.QUEUED for j in running)  # type: ignore[union-attr]
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
