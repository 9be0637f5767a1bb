"""Every guardrail in ``shoal status`` and in the round's metrics, as the real round on moto leaves them.

Each test runs real rounds (the evaluate_scaling and on_instance_event handlers), then ``shoal status`` reads
what those rounds wrote (the decision log, the spend ledger and the view beside it, the status record), and
the EMF the handler printed is checked for the points the dashboard graphs (``tests/cdk`` checks the
dashboard against the same writer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.spend_ledger import DynamoSpendLedger
from shared.domain.cluster_state import ClusterStatus
from shared.services import telemetry
from tests.functions.harness import REGION, START, Cluster, shape
from tests.functions.test_quota_and_preemption import BIG_JOB, SPOT_JOB, standard_quota  # noqa: F401 - the fixture

QUOTA_NAME = "on-demand standard vCPU quota"


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF documents a handler printed."""
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def points(docs: list[dict[str, Any]], name: str) -> list[tuple[float, dict[str, str]]]:
    """Each value of metric ``name`` with the dimensions CloudWatch files it under."""
    found = []
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == name for m in directive["Metrics"]):
                (dims,) = directive["Dimensions"]
                values = doc[name] if isinstance(doc[name], list) else [doc[name]]
                found += [(float(v), {d: doc[d] for d in dims}) for v in values]
    return found


def status(cluster: Cluster) -> tuple[str, dict[str, Any]]:
    code, out, err = cluster.shoal("status", cluster.settings.name, "--region", REGION)
    assert code == 0, err
    code, text, err = cluster.shoal("status", cluster.settings.name, "--region", REGION, "--json")
    assert code == 0, err
    return out, json.loads(text)


def test_status_shows_each_vcpu_quota_the_round_read_and_the_clusters_use_of_it(
    make_cluster: Callable[..., Cluster],
    standard_quota: None,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an on-demand standard quota of 24 vCPUs (the others unreadable) and 4 of them used outside the cluster
    cluster = make_cluster(node_types="m5.2xlarge")
    cluster.deploy_stack()
    cluster.ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m5.xlarge", MinCount=1, MaxCount=1)
    cluster.submit({BIG_JOB: 5})
    capsys.readouterr()
    # WHEN a real round runs
    result = cluster.scale()
    docs = emf(capsys.readouterr().out)
    # THEN it launched what the quota leaves (20 vCPUs: two 8-vCPU nodes) and said why
    assert result["launched"] == 2
    out, report = status(cluster)
    reason = f"{QUOTA_NAME} of 24 (4 vCPUs run outside the cluster) leaves room for 2 m5.2xlarge; 3 jobs wait"
    assert reason in out.split("recent decisions:\n", 1)[1]
    # AND status shows the quota with the cluster's use of it, in text and JSON
    assert f"vCPU quotas:\n  {QUOTA_NAME} 24: 16 vCPUs used by this cluster, 4 outside it (83 %)\n" in out
    assert report["guardrails"]["quotas"] == [{"code": "L-1216C47A", "limit": 24.0, "elsewhere": 4.0, "cluster": 16.0}]
    # AND the round reported the quota's use for the dashboard, under the quota's name
    assert points(docs, telemetry.METRIC_VCPU_QUOTA_USED) == [
        (
            pytest.approx(83.33),
            {"cluster": cluster.settings.name, "quota": QUOTA_NAME, "service": telemetry.SERVICE_NAME},
        )
    ]


def test_without_readable_quotas_status_says_no_limit_is_known(make_cluster: Callable[..., Cluster]) -> None:
    # GIVEN moto's Service Quotas, which has no EC2 quotas at all
    cluster = make_cluster(node_types="m5.2xlarge")
    cluster.deploy_stack()
    cluster.submit({BIG_JOB: 5})
    # WHEN a round runs, THEN nothing is capped and status says no limit is known
    assert cluster.scale()["launched"] == 5
    out, report = status(cluster)
    assert "vCPU quotas: none readable, no limit known (the fleet is not capped by them)\n" in out
    assert report["guardrails"]["quotas"] == []


def test_status_and_the_metrics_count_the_jobs_reclaimed_from_spot_and_those_past_their_budget(
    make_cluster: Callable[..., Cluster], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN jobs that may be reclaimed once, running on a spot node; status before any reclaim
    cluster = make_cluster(max_preemptions=1)
    cluster.deploy_stack()
    cluster.submit({SPOT_JOB: 3})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    cluster.run_jobs_on(node.instance_id, 3)
    out, _ = status(cluster)
    assert "preemptions: no queued or running job has been reclaimed from spot (maxPreemptions 1 by default)" in out
    # WHEN EC2 reclaims the node (warning, then terminated) and a scheduled round follows
    cluster.clock.advance(60)
    cluster.instance_event("spot_interruption_warning", node.instance_id)
    cluster.clock.advance(120)
    cluster.instance_event("ec2_state_change", node.instance_id, state="terminated")
    cluster.clock.advance(60)
    capsys.readouterr()
    cluster.scale()
    docs = emf(capsys.readouterr().out)
    # THEN status counts the three reclaimed jobs, all past their budget (on-demand only), in text and JSON
    out, report = status(cluster)
    assert (
        "preemptions: 3 queued or running jobs were reclaimed from spot (maxPreemptions 1 by default); "
        "3 used their budget and run on on-demand nodes only\n"
    ) in out
    guard = report["guardrails"]
    assert (guard["preempted_jobs"], guard["on_demand_only_jobs"], guard["max_preemptions"]) == (3, 3, 1)
    # AND the round reported both counts for the dashboard
    dims = {"cluster": cluster.settings.name, "service": telemetry.SERVICE_NAME}
    assert points(docs, telemetry.METRIC_PREEMPTED_JOBS) == [(3.0, dims)]
    assert points(docs, telemetry.METRIC_ON_DEMAND_ONLY_JOBS) == [(3.0, dims)]


def test_status_shows_budget_exhausted_the_spend_and_the_lease_a_real_round_accrued(
    make_cluster: Callable[..., Cluster], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an ACTIVE cluster with a $5 budget and a 12 h lease, whose first round launched busy nodes
    cluster = make_cluster(budget=5.0, max_hourly_cost=40.0, lease=43200.0)
    cluster.deploy_stack()
    DynamoClusterStore(cluster.table).set_status(ClusterStatus.ACTIVE, reason=None, now=cluster.clock.now)
    cluster.submit({shape(4, 16, 1800): 60})
    assert cluster.scale()["launched"] > 0
    busy = sorted(cluster.node_states())
    running = {i: cluster.run_jobs_on(i, 1) for i in busy}
    rate = DynamoSpendLedger(cluster.table).load().rate
    # WHEN the fleet runs long enough to spend the budget and the next round runs
    cluster.clock.advance(3600 * 5.0 / rate + 60)
    for instance_id in busy:
        cluster.heartbeat(instance_id, running=running[instance_id])
    capsys.readouterr()
    assert cluster.scale()["launched"] == 0
    docs = emf(capsys.readouterr().out)
    # THEN status says BUDGET_EXHAUSTED with what was spent, as the round's ledger has it
    spent = DynamoSpendLedger(cluster.table).load().spent
    out, report = status(cluster)
    assert "BUDGET_EXHAUSTED since" in out and f"spent ${spent:.2f} of the $5 budget" in out
    assert f"spend: ${spent:.2f} of the $5 budget ({100 * spent / 5:.0f} %); fleet $" in out
    assert "(maxHourlyCost $40/h)" in out and "budget $5 exhausted" in out  # the decision's reason too
    guard = report["guardrails"]
    assert guard["spent"] == pytest.approx(spent) and guard["budget"] == 5.0
    assert guard["lease_expires_at"] == START + 43200 and guard["at"] == cluster.clock.now  # from the first round
    # AND the Spent metric the budget alarm watches carries what the decision saw, the lease metric what is left
    ((value, _),) = points(docs, telemetry.METRIC_SPENT)
    assert 5.0 <= value == pytest.approx(spent, abs=5e-5)  # the metric is rounded to 4 places, the ledger to 6
    ((left, _),) = points(docs, telemetry.METRIC_LEASE_HOURS_LEFT)
    assert left == pytest.approx((START + 43200 - cluster.clock.now) / 3600, abs=1e-3) and 0 < left < 12
