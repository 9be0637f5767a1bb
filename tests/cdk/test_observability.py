"""The dashboard and the alarms that need a person."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from cdk import constants
from cdk.observability import scaler_dimensions
from shared.services import telemetry
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
