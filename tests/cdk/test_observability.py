"""The dashboard and the alarms that need a person."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from cdk import constants
from cdk.observability import scaler_dimensions
from functions import observability
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Snapshot
from shared.domain.policy import ScalerState
from shared.domain.quotas import QuotaUse
from shared.domain.scaling import decide, offers_for
from shared.domain.settings import ClusterSettings
from shared.services import telemetry
from shared.services.guardrails import GuardView
from shared.services.round_report import RoundResult
from tests.cdk.conftest import CLUSTER, Synthesized


def _dashboard_body(s: Synthesized) -> dict[str, Any]:
    (dashboard,) = s.resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "REF" for p in parts)
    body: dict[str, Any] = json.loads(text)
    return body


def test_the_dashboard_shows_queue_nodes_decisions_cost_wait_and_dead_letters(synthesized: Synthesized) -> None:
    body = json.dumps(_dashboard_body(synthesized))
    for shown in (
        "ApproximateNumberOfMessagesVisible",  # queue depth (and dead letters)
        "ApproximateAgeOfOldestMessage",  # queue age
        f'MetricName=\\"{telemetry.METRIC_NODES}\\"',  # nodes by type, market and state
        telemetry.METRIC_DECISIONS,
        telemetry.METRIC_LAUNCH_FAILURES,
        telemetry.METRIC_HOURLY_COST,
        f'MetricName=\\"{telemetry.METRIC_JOB_WAIT}\\"',
        telemetry.METRIC_QUEUED_JOBS,
        "Dead-lettered jobs",
    ):
        assert shown in body, shown
    assert f'cluster=\\"{CLUSTER}\\"' in body


def test_the_alarms_watch_dead_letters_and_repeated_launch_failures(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"shoal-{CLUSTER}-dead-letters",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {"Name": "QueueName", "Value": synthesized.resolve(stack.state.dead_letter_queue.queue_name)}
            ],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"shoal-{CLUSTER}-launch-failures",
            "Namespace": telemetry.METRICS_NAMESPACE,
            "MetricName": telemetry.METRIC_LAUNCH_FAILURES,
            "Dimensions": [{"Name": "cluster", "Value": CLUSTER}, {"Name": "service", "Value": telemetry.SERVICE_NAME}],
            "Statistic": "Sum",
            "Period": constants.LAUNCH_FAILURE_ALARM_WINDOW_MINUTES * 60,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Threshold": constants.LAUNCH_FAILURE_ALARM_THRESHOLD,
        },
    )


def test_the_alarm_dimensions_are_the_ones_powertools_emits() -> None:
    # GIVEN metrics emitted the way the handlers do (service name, then the cluster as a default dimension)
    metrics = Metrics(namespace=telemetry.METRICS_NAMESPACE, service=telemetry.SERVICE_NAME)
    metrics.set_default_dimensions(cluster=CLUSTER)
    metrics.add_metric(name=telemetry.METRIC_LAUNCH_FAILURES, unit=MetricUnit.Count, value=1)
    # WHEN they are serialized to EMF
    emitted = metrics.serialize_metric_set()
    metrics.clear_metrics()
    # THEN CloudWatch files them under exactly the dimensions the alarm watches
    (dimension_names,) = emitted["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert {name: emitted[name] for name in dimension_names} == scaler_dimensions(CLUSTER)


def test_the_outputs_users_need(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert set(outputs) >= {
        "QueueUrl",
        "DeadLetterQueueUrl",
        "TableName",
        "LaunchTemplateId",
        "DashboardUrl",
        "ClusterName",
    }
    stack = synthesized.stack
    assert outputs["QueueUrl"]["Value"] == synthesized.resolve(stack.state.queue.queue_url)
    assert outputs["TableName"]["Value"] == synthesized.resolve(stack.state.table.table_name)
    assert outputs["ClusterName"]["Value"] == CLUSTER
    url = outputs["DashboardUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name="


def _powertools_environment(s: Synthesized) -> dict[str, str]:
    """The POWERTOOLS_* variables the stack gives its functions (they decide the dimensions EMF carries)."""
    found: dict[str, str] = {}
    for function in s.resources("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        found |= {k: v for k, v in variables.items() if k.startswith("POWERTOOLS_") and isinstance(v, str)}
    assert "POWERTOOLS_SERVICE_NAME" in found
    return found


def _emitted_by_a_round(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, dict[str, str]]]:
    """(metric, dimensions) of every point ``report_round`` prints for a round with every guardrail known."""
    settings = ClusterSettings(name=CLUSTER, node_types="m5.2xlarge").validate()
    decision = decide(
        Snapshot(demand={}, nodes=(), instances=()), settings, offers_for(settings), ScalerState(), (), now=0.0
    )
    node = NodeRecord(
        instance_id="i-1", offer_key="m5.2xlarge", instance_type="m5.2xlarge", market=Market.ON_DEMAND,
        state=NodeState.ACTIVE,
    )  # fmt: skip
    quota = QuotaUse(code="L-1216C47A", limit=640.0, elsewhere=8.0, cluster=8.0)
    guard = GuardView(
        spent=1.0, quotas=(quota,), preempted_jobs=2, on_demand_only_jobs=1, max_preemptions=2,
        lease_expires_at=7200.0, at=0.0, placement_scores={"c5.4xlarge:spot": {"us-west-2a": 7}},
    )  # fmt: skip
    result = RoundResult(round_id="r", trigger="t", ran=True, decision=decision, nodes=(node,), spent=1.0, guard=guard)
    observability.metrics.set_default_dimensions(cluster=CLUSTER)
    capsys.readouterr()
    observability.report_round(result)
    observability.metrics.flush_metrics()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    observability.metrics.clear_default_dimensions()
    out = []
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            (dims,) = directive["Dimensions"]
            out += [(m["Name"], {d: doc[d] for d in dims}) for m in directive["Metrics"]]
    return out


def _graphed(body: dict[str, Any]) -> tuple[set[tuple[str, frozenset[tuple[str, str]]]], list[tuple[str, set[str]]]]:
    """The dashboard's plain metrics (name, dimensions) and its SEARCH expressions (metric, schema's dimensions)."""
    plain, searches = set(), []
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if isinstance(entry[-1], dict) and "expression" in entry[-1]:
                found = re.search(r"SEARCH\('\{([^}]*)\} MetricName=\"([^\"]+)\"", entry[-1]["expression"])
                if found:
                    namespace, *names = found.group(1).split(",")
                    assert namespace == telemetry.METRICS_NAMESPACE
                    searches.append((found.group(2), set(names)))
                continue
            fields = [e for e in entry if isinstance(e, str)]
            if fields and fields[0] == telemetry.METRICS_NAMESPACE:
                plain.add((fields[1], frozenset(zip(fields[2::2], fields[3::2], strict=True))))
    return plain, searches


def test_every_metric_a_round_emits_for_the_guardrails_is_graphed_under_its_exact_dimensions(
    synthesized: Synthesized, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN what the functions' real EMF writer prints for a round that knows every guardrail, in the
    # environment the stack gives the functions
    for name, value in _powertools_environment(synthesized).items():
        monkeypatch.setenv(name, value)
    emitted = _emitted_by_a_round(capsys)
    names = {name for name, _ in emitted}
    guard_metrics = {
        telemetry.METRIC_SPENT,
        telemetry.METRIC_PREEMPTED_JOBS,
        telemetry.METRIC_ON_DEMAND_ONLY_JOBS,
        telemetry.METRIC_VCPU_QUOTA_USED,
        telemetry.METRIC_NODES,
        telemetry.METRIC_LEASE_HOURS_LEFT,
        telemetry.METRIC_SPOT_PLACEMENT_SCORE,
    }
    assert guard_metrics <= names
    # WHEN the dashboard is read
    plain, searches = _graphed(_dashboard_body(synthesized))
    # THEN each is on it: a plain metric with exactly its dimensions, or a SEARCH whose schema is its dimensions
    for name, dims in emitted:
        if name not in guard_metrics:
            continue
        shown = (name, frozenset(dims.items())) in plain or (name, set(dims)) in searches
        assert shown, (name, dims, plain, searches)
