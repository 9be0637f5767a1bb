"""The spend ledger in the state table and the lease's TeardownCluster start, on moto."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shared.adapters import aws
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.spend_ledger import DynamoSpendLedger, StepFunctionsTeardown
from shared.adapters.state_table import StateTable
from shared.cli.guardrails_cmd import status_lines
from shared.domain.budget import Spend
from shared.domain.cluster_state import ClusterStatus, DemandCount, Market, NodeRecord, NodeState
from shared.domain.decision import Snapshot
from shared.domain.jobs import Shape
from shared.domain.policy import ScalerState
from shared.domain.quotas import QuotaUse
from shared.domain.resources import Resources
from shared.domain.scaling import decide, offers_for
from shared.domain.settings import ClusterSettings
from shared.services import guardrails, telemetry
from shared.services.guardrails import Guardrails, GuardView, TeardownStartError
from shared.services.round_report import MetricPoint, RoundResult, round_metrics
from tests.adapters.conftest import REGION

NOW = 1_700_000_000.0
VIEW = GuardView(spent=0.0)


def test_an_empty_ledger_is_nothing_spent(table: StateTable) -> None:
    assert DynamoSpendLedger(table).load() == Spend()
    assert DynamoSpendLedger(table).view() is None


def test_save_and_load_round_trip_with_the_view_status_reads(table: StateTable) -> None:
    ledger = DynamoSpendLedger(table)
    spend = Spend(spent=12.5, at=NOW, rate=3.25, started_at=NOW - 3600, busy_at=NOW - 60)
    view = GuardView(spent=12.5, budget=100.0, max_hourly_cost=40.0, rate=3.25, lease_expires_at=NOW + 7200)
    # WHEN the first round saves  THEN it loads back, and status reads the view
    assert ledger.save(spend, previous=Spend(), view=view)
    assert ledger.load() == spend
    assert ledger.view() == replace(view, at=NOW)


@pytest.mark.parametrize(
    "quotas",
    [
        (
            QuotaUse(code="L-1216C47A", limit=640.0, elsewhere=32.0, cluster=96.0),
            QuotaUse(code="L-34B43A08", limit=128.0, elsewhere=0.0, cluster=0.0),
        ),
        (),  # the round could read no quota: no limit known
    ],
)
def test_the_view_keeps_the_quotas_and_the_preemption_counts_for_status(
    table: StateTable, quotas: tuple[QuotaUse, ...]
) -> None:
    ledger = DynamoSpendLedger(table)
    view = GuardView(spent=1.0, quotas=quotas, preempted_jobs=5, on_demand_only_jobs=2, max_preemptions=3, at=NOW)
    assert ledger.save(Spend(spent=1.0, at=NOW), previous=Spend(), view=view)
    assert ledger.view() == view
    # AND a later round that knows nothing of quotas (an older scaler) leaves them "not recorded", not "none"
    assert ledger.save(Spend(spent=2.0, at=NOW + 60), previous=Spend(spent=1.0, at=NOW), view=GuardView(spent=2.0))
    shown = ledger.view()
    assert shown is not None and shown.quotas is None and shown.max_preemptions is None


def test_a_round_that_loaded_a_stale_ledger_does_not_save(table: StateTable) -> None:
    ledger = DynamoSpendLedger(table)
    first = Spend(spent=1.0, at=NOW, rate=1.0, started_at=NOW, busy_at=NOW)
    assert ledger.save(first, previous=Spend(), view=VIEW)
    # GIVEN a second round that saved since  WHEN a round holding the first load saves  THEN it is refused
    second = Spend(spent=2.0, at=NOW + 3600, rate=1.0, started_at=NOW, busy_at=NOW)
    assert ledger.save(second, previous=first, view=VIEW)
    assert not ledger.save(Spend(spent=9.0, at=NOW + 60), previous=first, view=VIEW)
    assert not ledger.save(Spend(spent=9.0, at=NOW + 60), previous=Spend(), view=VIEW)
    assert ledger.load().spent == 2.0


def test_a_renewal_between_a_rounds_load_and_save_is_kept(table: StateTable) -> None:
    ledger = DynamoSpendLedger(table)
    first = Spend(spent=1.0, at=NOW, rate=1.0, started_at=NOW, busy_at=NOW)
    ledger.save(first, previous=Spend(), view=VIEW)
    loaded = ledger.load()
    # WHEN launch-cluster --lease renews while a round runs
    expires = guardrails.renew_lease(ledger, 12 * 3600, now=NOW + 30)
    ledger.save(Spend(spent=1.1, at=NOW + 60, rate=1.0, started_at=NOW, busy_at=NOW), previous=loaded, view=VIEW)
    # THEN the renewal survives the round's save
    assert ledger.load().lease_expires_at == expires == NOW + 30 + 12 * 3600


SHAPE = Shape(resources=Resources(cores=1, memory=2**30, disk=2**30), wall_time=60.0)


def _node(offer: str, instance_type: str) -> NodeRecord:
    return NodeRecord(
        instance_id=f"i-{instance_type}", offer_key=offer, instance_type=instance_type, market=Market.ON_DEMAND,
        state=NodeState.ACTIVE,
    )  # fmt: skip


def test_a_round_over_the_budget_reports_budget_exhausted_with_what_was_spent(table: StateTable) -> None:
    # GIVEN an ACTIVE cluster with a $10 budget whose ledger says $9.90 at $1.20/h an hour ago
    settings = ClusterSettings(name="t", node_types="m5.2xlarge", budget=10.0).validate()
    store = DynamoClusterStore(table)
    store.set_status(ClusterStatus.ACTIVE, reason=None, now=NOW - 7200)
    ledger = DynamoSpendLedger(table)
    ledger.save(Spend(spent=9.9, at=NOW - 3600, rate=1.2, started_at=NOW - 7200), previous=Spend(), view=VIEW)
    rails = Guardrails(ledger=ledger, status=store)
    # WHEN a round runs
    before = guardrails.before_round(rails, NOW)
    errors = guardrails.after_round(
        rails, settings, before, nodes=[_node("m5.2xlarge", "m5.2xlarge")], offers=offers_for(settings),
        demand={SHAPE: DemandCount(running=1)}, now=NOW,
    ).errors  # fmt: skip
    # THEN the decision saw $11.10, the ledger keeps it with the fleet's rate (the m5.2xlarge and its 50 GiB root
    # volume), and the status says so
    assert errors == [] and before.spent == pytest.approx(11.1)
    assert ledger.load().spent == pytest.approx(11.1) and ledger.load().rate == pytest.approx(
        0.384 + 50 * 0.08 / 730, abs=1e-6
    )
    status = store.get_status()
    assert status is not None and status.status is ClusterStatus.BUDGET_EXHAUSTED
    assert status.reason == "spent $11.10 of the $10 budget"


def _machine(client: Any) -> str:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    return str(
        client.create_state_machine(
            name="shoal-t-TeardownCluster",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
    )


def test_a_lease_starts_one_teardown_per_expiry(mocked_aws: None) -> None:
    client = aws.client("stepfunctions", REGION)
    teardown = StepFunctionsTeardown(_machine(client), REGION, client=client)
    # WHEN two rounds find the same lease expired  THEN one execution, named after the expiry, with the reason
    teardown.start_teardown(reason="lease expired", key=NOW)
    teardown.start_teardown(reason="lease expired", key=NOW)  # Step Functions: the same name and input is a no-op
    (execution,) = client.list_executions(stateMachineArn=teardown.machine_arn)["executions"]
    assert execution["name"] == "lease-20231114T221320Z"
    described = client.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"reason": "lease expired"}


def test_a_teardown_that_cannot_start_is_one_line_naming_the_machine(mocked_aws: None) -> None:
    missing = f"arn:aws:states:{REGION}:123456789012:stateMachine:shoal-t-TeardownCluster"
    with pytest.raises(TeardownStartError, match=r"StartExecution of arn:aws:states:.*TeardownCluster"):
        StepFunctionsTeardown(missing, REGION).start_teardown(reason="lease expired", key=NOW)


def test_the_spot_placement_scores_a_round_used_reach_status_and_the_dashboards_metric(table: StateTable) -> None:
    # GIVEN a round that ranked its spot launches by Spot Placement Scores
    settings = ClusterSettings(name="c", node_types="c5.4xlarge:0.3").validate()
    ledger = DynamoSpendLedger(table)
    rails = Guardrails(ledger=ledger, status=DynamoClusterStore(table))
    scores = {"c5.4xlarge:spot": {"us-west-2a": 3, "us-west-2b": 9}}
    saved = guardrails.after_round(
        rails, settings, guardrails.before_round(rails, NOW), nodes=[], offers=offers_for(settings), demand={},
        now=NOW, placement_scores=scores,
    ).view  # fmt: skip
    # WHEN status reads what the real ledger wrote
    shown = ledger.view()
    # THEN the scores come back as written, best zone first in status, and one metric point per offer and zone
    assert shown is not None and shown.placement_scores == scores and saved is not None
    lines = status_lines(shown, NOW)
    assert "spot placement scores (1-10; spot launches go to the best-scored zone first):" in lines
    assert "  c5.4xlarge:spot: us-west-2b 9, us-west-2a 3" in lines
    decision = decide(
        Snapshot(demand={}, nodes=(), instances=()), settings, offers_for(settings), ScalerState(), (), now=NOW
    )
    result = RoundResult(round_id="r", trigger="t", ran=True, decision=decision, guard=shown)
    points = [(p.value, dict(p.dimensions)) for p in _guard_points(result)]
    assert (9, {"offer": "c5.4xlarge:spot", "zone": "us-west-2b"}) in points
    # AND a round with no scores known says so; an older ledger shows nothing of them
    guardrails.after_round(
        rails, settings, guardrails.before_round(rails, NOW + 60), nodes=[], offers=offers_for(settings),
        demand={}, now=NOW + 60,
    )  # fmt: skip
    later = ledger.view()
    assert later is not None and later.placement_scores == {}
    assert "spot placement scores: none known (spot launches in price order)" in status_lines(later, NOW + 60)
    assert not [line for line in status_lines(GuardView(spent=0.0), NOW) if "placement" in line]


def _guard_points(result: RoundResult) -> list[MetricPoint]:
    return [p for p in round_metrics(result) if p.name == telemetry.METRIC_SPOT_PLACEMENT_SCORE]
