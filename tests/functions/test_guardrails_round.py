"""The guardrails through the real evaluate_scaling handler on moto: the round accrues its spend ledger, caps
the fleet at maxHourlyCost, and at the budget launches nothing, drains every node and reports BUDGET_EXHAUSTED."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.spend_ledger import DynamoSpendLedger
from shared.domain.budget import offer_ceiling
from shared.domain.cluster_state import ClusterStatus, NodeState
from shared.domain.scaling import offers_for
from tests.functions.harness import Cluster, shape

JOBS = {shape(4, 16, 1800): 60}


def test_a_round_caps_the_fleet_at_max_hourly_cost(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(max_hourly_cost=3.0)
    cluster.submit(JOBS)
    result = cluster.scale()
    offers = {o.key: o for o in offers_for(cluster.settings)}
    cost = sum(offer_ceiling(offers[k], cluster.settings.region) * n for k, n in cluster.fleet_by_offer().items())
    assert result["launched"] > 0 and cost <= 3.0


def test_the_round_spends_the_budget_then_drains_and_reports_budget_exhausted(
    make_cluster: Callable[..., Cluster],
) -> None:
    # GIVEN an ACTIVE cluster with a $5 budget and a queue the first round launches nodes for
    cluster = make_cluster(budget=5.0)
    store = DynamoClusterStore(cluster.table)
    store.set_status(ClusterStatus.ACTIVE, reason=None, now=cluster.clock.now)
    cluster.submit(JOBS)
    first = cluster.scale()
    assert first["launched"] > 0
    ledger = DynamoSpendLedger(cluster.table)
    rate = ledger.load().rate
    assert rate > 0 and ledger.load().spent == 0.0
    # AND every node runs a job and reports
    busy = sorted(cluster.node_states())
    for instance_id in busy:
        cluster.run_jobs_on(instance_id, 1)
    # WHEN enough time passes for the fleet to spend the budget, the agents still reporting
    cluster.clock.advance(3600 * 5.0 / rate + 60)
    for instance_id in busy:
        cluster.heartbeat(instance_id, running=_running(cluster, instance_id))
    second = cluster.scale()
    # THEN nothing launches, every node drains (its job keeps running), and the cluster says BUDGET_EXHAUSTED
    assert second["launched"] == 0 and second["drained"] == len(busy)
    assert set(cluster.node_states().values()) == {NodeState.DRAINING}
    status = store.get_status()
    assert status is not None and status.status is ClusterStatus.BUDGET_EXHAUSTED
    assert status.reason is not None and status.reason.endswith("of the $5 budget")
    assert ledger.load().spent >= 5.0


def _running(cluster: Cluster, instance_id: str) -> dict[str, str]:
    node = cluster.nodes.get_node(instance_id)
    assert node is not None
    return dict(node.running_jobs)
