"""Quotas and the preemption budget through the real handlers on moto.

- A launch refused for a quota (VcpuLimitExceeded) goes to the capacity cache and falls back in the same round.
- The account's quotas (Service Quotas: moto's model given EC2 values) cap the planned fleet, with the reason.
- Spot interruptions use no attempt, count preemptions, and past the budget the replacement is on-demand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from moto.servicequotas.models import ServiceQuotasBackend

from functions import evaluate_scaling
from shared.domain.cluster_state import JobStatus
from tests.functions.harness import Cluster, shape

SPOT_JOB = shape(4, 8, 3600, preemptible=True)  # four to a c5.4xlarge spot node
BIG_JOB = shape(8, 28, 3600)  # one to an m5.2xlarge


class _Http:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def test_a_launch_refused_for_a_vcpu_quota_falls_back_in_the_same_round(cluster: Cluster) -> None:
    cluster.submit({BIG_JOB: 4})
    fleet = evaluate_scaling.runtime().plane.fleet

    def quota_full(params: dict[str, Any], **_: Any) -> Any:
        if params["body"].get("InstanceType") == "m5.2xlarge":
            error = {"Code": "VcpuLimitExceeded", "Message": "You have requested more vCPU capacity than allowed"}
            return _Http(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    fleet.client.meta.events.register("before-call.ec2.RunInstances", quota_full)  # type: ignore[attr-defined]
    result = cluster.scale()
    assert result["launch_failures"] == ["m5.2xlarge@*: VcpuLimitExceeded"]
    fallback = cluster.fleet_by_offer()
    assert "m5.2xlarge" not in fallback and sum(fallback.values()) >= 2
    skipped = evaluate_scaling.runtime().plane.capacity.unavailable(cluster.clock())
    assert {(o.instance_type, str(o.market)) for o in skipped} == {("m5.2xlarge", "on-demand")}


@pytest.fixture
def standard_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """The account's on-demand standard quota is 24 vCPUs (moto's Service Quotas has no ec2 quotas)."""
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self: ServiceQuotasBackend, service_code: str, quota_code: str) -> dict[str, Any]:
        if service_code == "ec2" and quota_code == "L-1216C47A":
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "QuotaName": "standard", "Value": 24.0}
        return original(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)


def test_the_quota_caps_the_fleet_and_the_decision_log_names_it(
    make_cluster: Callable[..., Cluster], standard_quota: None
) -> None:
    cluster = make_cluster(node_types="m5.2xlarge")
    cluster.submit({BIG_JOB: 5})
    result = cluster.scale()
    assert result["launched"] == 3 and cluster.fleet_by_offer() == {"m5.2xlarge": 3}
    entry = evaluate_scaling.runtime().plane.decisions.recent(1)[0]
    reasons = entry["decision"]["reasons"]  # type: ignore[index]
    assert "on-demand standard vCPU quota of 24 leaves room for 3 m5.2xlarge; 2 jobs wait" in reasons


def test_spot_reclaims_use_no_attempts_and_past_the_budget_the_jobs_go_on_demand(
    make_cluster: Callable[..., Cluster],
) -> None:
    # GIVEN a cluster whose jobs may be reclaimed once, and a spot node running 3 one-attempt jobs
    cluster = make_cluster(max_preemptions=1)
    cluster.submit({SPOT_JOB: 3})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    assert node.offer_key == "c5.4xlarge/c5a.4xlarge:spot"
    running = cluster.run_jobs_on(node.instance_id, 3)
    # WHEN EC2 reclaims the node (a scale interval later, so smoothing may let the spot node go): the warning
    # keeps the jobs on it (their processes may still run), the termination returns them
    cluster.clock.advance(60)
    cluster.instance_event("spot_interruption_warning", node.instance_id)
    assert {cluster.jobs.get_job(j).status for j in running} == {JobStatus.RUNNING}  # type: ignore[union-attr]
    cluster.clock.advance(120)  # EC2's two-minute notice
    result = cluster.instance_event("ec2_state_change", node.instance_id, state="terminated")
    # THEN the jobs are queued again with no attempt used and one preemption each, now on-demand only
    for job_id in running:
        record = cluster.jobs.get_job(job_id)
        assert record is not None and record.status is JobStatus.QUEUED
        assert (record.attempts, record.preemptions, record.on_demand_only) == (0, 1, True)
    # AND the replacements are on-demand nodes, and the round says why
    # (the warning's round already replaced the spot node while the jobs still ran there)
    assert result["round"]["wanted"]["m5.2xlarge"] == 2 and result["round"]["launched"] == 2
    entry = evaluate_scaling.runtime().plane.decisions.recent(1)[0]
    reasons = entry["decision"]["reasons"]  # type: ignore[index]
    assert any("3 preemptible jobs have used their preemption budget" in r for r in reasons), reasons
