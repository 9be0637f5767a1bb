"""The guardrails on the command line, against moto: shoal status shows BUDGET_EXHAUSTED with what was spent
and the leases' time left; launch-cluster --lease renews a deployed cluster's lease; bad values exit 2."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.spend_ledger import DynamoSpendLedger
from shared.domain.budget import Spend
from shared.domain.cluster_state import ClusterStatus, Market, NodeRecord, NodeState
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.services import guardrails
from tests.cdk.conftest import CLUSTER, REGION, synthesized  # noqa: F401 - the fixture
from tests.cli.test_cluster_commands import FAST, deployed, empty_region, shoal  # noqa: F401 - the fixtures
from tests.lifecycle.conftest import LifecycleCloud, cloud  # noqa: F401 - the fixture


def test_status_shows_budget_exhausted_what_was_spent_and_the_leases_left(deployed: LifecycleCloud) -> None:  # noqa: F811
    # GIVEN an ACTIVE cluster with a $10 budget, a 12 h lease and a 2 h idle lease, whose ledger says $9.90 at
    # $1.20/h an hour ago, and a round that finds one busy m5.2xlarge
    now = time.time()
    store = DynamoClusterStore(deployed.table)
    store.set_status(ClusterStatus.ACTIVE, reason=None, now=now - 7200)
    ledger = DynamoSpendLedger(deployed.table)
    ledger.save(
        Spend(spent=9.9, at=now - 3600, rate=1.2, started_at=now - 7200),
        previous=Spend(),
        view=guardrails.GuardView(spent=0),
    )
    settings = ClusterSettings(
        name=CLUSTER, node_types="m5.2xlarge", budget=10.0, max_hourly_cost=40.0, lease=43200.0, idle_lease=7200.0
    ).validate()
    rails = guardrails.Guardrails(ledger=ledger, status=store)
    node = NodeRecord(
        instance_id="i-1", offer_key="m5.2xlarge", instance_type="m5.2xlarge", market=Market.ON_DEMAND,
        state=NodeState.DRAINING, running_jobs={"job-1": "rh"},
    )  # fmt: skip
    deployed.agents_silent.add("i-1")
    deployed.nodes.put_node(node)
    before = guardrails.before_round(rails, now)
    guardrails.after_round(rails, settings, before, nodes=[node], offers=offers_for(settings), demand={}, now=now)
    # WHEN shoal status runs
    code, out, err = shoal("status", CLUSTER, "--region", REGION)
    # THEN the status says BUDGET_EXHAUSTED with what was spent, the spend line and the time left on each lease
    assert code == 0, err
    assert "BUDGET_EXHAUSTED since" in out and "spent $11.10 of the $10 budget" in out
    assert "spend: $11.10 of the $10 budget (111 %); fleet $0.39/h (maxHourlyCost $40/h)" in out
    assert re.search(r"\nlease: ends \S+ \S+ \((9h59m|10h00m) left\)", out)  # started two hours ago, 12 h long
    assert re.search(r"\nidle lease: ends \S+ \S+ \((1h59m|2h00m) left\)", out)  # busy: the idle clock restarted
    # AND --json carries the same
    code, out, _ = shoal("status", CLUSTER, "--region", REGION, "--json")
    report = json.loads(out)
    assert report["status"]["status"] == "BUDGET_EXHAUSTED"
    assert report["guardrails"]["spent"] == pytest.approx(11.1) and report["guardrails"]["budget"] == 10.0


def test_launch_cluster_lease_renews_a_deployed_clusters_lease(deployed: LifecycleCloud) -> None:  # noqa: F811
    # WHEN launch-cluster runs on the deployed cluster with --lease 12h
    before = time.time()
    code, out, err = shoal("launch-cluster", CLUSTER, "--lease", "12h", *FAST)
    # THEN the lease ends 12 h from now, it says so, and the launch still runs
    assert code == 0, err
    expires = DynamoSpendLedger(deployed.table).load().lease_expires_at
    assert expires is not None and before + 43200 <= expires <= time.time() + 43200
    assert f"lease of cluster {CLUSTER} renewed: it ends at" in out and "(in 12h)" in out
    assert "settings flags apply only to a new deploy" not in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--maxHourlyCost", "-1"], "--maxHourlyCost"),
        (["--budget", "0"], "--budget"),
        (["--lease", "banana"], "--lease"),
        (["--idleLease", "10s"], "--idleLease"),
    ],
)
def test_a_bad_guardrail_flag_exits_2_naming_it(empty_region: Any, argv: list[str], flag: str) -> None:  # noqa: F811
    code, out, err = shoal("launch-cluster", "genomics", "--nodeTypes", "m5.large", *argv)
    assert code == 2, out
    assert err.startswith(f"shoal launch-cluster: {flag}: ") and err.count("\n") == 1


def test_guardrail_flags_become_the_deploys_context(empty_region: Any) -> None:  # noqa: F811
    code, out, _ = shoal(
        "launch-cluster", "genomics", "--nodeTypes", "m5.large", "--maxHourlyCost", "40", "--budget", "500",
        "--lease", "12h", "--idleLease", "2h", "--region", "us-west-2",
    )  # fmt: skip
    assert code == 1
    for pair in ("-c maxHourlyCost=40", "-c budget=500", "-c lease=12h", "-c idleLease=2h"):
        assert pair in out
