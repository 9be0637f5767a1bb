"""EventBridge: the schedule, the queue-depth alarm, demand events and EC2 events, each wired to its function."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from shared.services import telemetry
from tests.cdk.conftest import CLUSTER, Synthesized


def _function_arn(s: Synthesized, module: str) -> Any:
    return s.resolve(s.stack.control_plane.functions[module].function_arn)


def _rule(s: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    matches = [(i, r) for i, r in s.resources("AWS::Events::Rule").items() if r["Properties"]["Name"] == name]
    assert len(matches) == 1, name
    return matches[0]


def test_the_schedule_runs_a_round_every_scale_interval(synthesized: Synthesized) -> None:
    # GIVEN scale_interval = "2m" in the settings
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "Name": f"shoal-{CLUSTER}-schedule",
            "ScheduleExpression": "rate(2 minutes)",
            "State": "ENABLED",
            "Targets": [{"Arn": _function_arn(synthesized, "evaluate_scaling"), "Id": Match.any_value()}],
        },
    )


def test_the_queue_depth_alarm_fires_when_jobs_wait(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"shoal-{CLUSTER}-jobs-waiting",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {"Name": "QueueName", "Value": synthesized.resolve(synthesized.stack.state.queue.queue_name)}
            ],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "Period": 60,
        },
    )


@pytest.mark.parametrize(
    ("rule_name", "pattern", "module"),
    [
        (
            "jobs-waiting",
            {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]},
            "evaluate_scaling",
        ),
        (
            "demand-changed",
            {
                "source": [telemetry.EVENT_SOURCE],
                "detail-type": [telemetry.EVENT_DEMAND_CHANGED],
                "detail": {"cluster": [CLUSTER]},
            },
            "evaluate_scaling",
        ),
        (
            "instance-state",
            {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
            "on_instance_event",
        ),
        (
            "spot-interruption",
            {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
            "on_instance_event",
        ),
        (
            "rebalance",
            {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
            "on_instance_event",
        ),
    ],
)
def test_each_rule_matches_its_events_and_wakes_the_right_function(
    synthesized: Synthesized, rule_name: str, pattern: dict[str, Any], module: str
) -> None:
    # WHEN the rule is looked up by name
    logical_id, rule = _rule(synthesized, f"shoal-{CLUSTER}-{rule_name}")
    properties = rule["Properties"]
    # THEN its pattern is the expected one and its only target is the function
    for key, value in pattern.items():
        assert properties["EventPattern"][key] == value
    assert [target["Arn"] for target in properties["Targets"]] == [_function_arn(synthesized, module)]
    # AND EventBridge may invoke that function for this rule only
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "FunctionName": _function_arn(synthesized, module),
            "SourceArn": {"Fn::GetAtt": [logical_id, "Arn"]},
        },
    )


def test_the_alarm_rule_listens_to_this_alarm_entering_alarm_only(synthesized: Synthesized) -> None:
    _, rule = _rule(synthesized, f"shoal-{CLUSTER}-jobs-waiting")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["resources"] == [synthesized.resolve(synthesized.stack.triggers.alarm.alarm_arn)]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}


def test_every_rule_has_exactly_one_target_and_every_function_is_woken(synthesized: Synthesized) -> None:
    rules = synthesized.resources("AWS::Events::Rule")
    assert len(rules) == 6  # schedule, alarm, demand, three EC2 events
    targets = [t["Arn"] for r in rules.values() for t in r["Properties"]["Targets"]]
    assert len(targets) == len(rules)
    assert targets.count(_function_arn(synthesized, "evaluate_scaling")) == 3
    assert targets.count(_function_arn(synthesized, "on_instance_event")) == 3


def test_the_scaling_rules_are_the_ones_lifecycle_toggles(synthesized: Synthesized) -> None:
    # The rules LaunchCluster enables and TeardownCluster disables are those that wake evaluate_scaling.
    refs = [synthesized.resolve(rule.rule_name) for rule in synthesized.stack.triggers.scaling_rules]
    expected = [
        {"Ref": _rule(synthesized, f"shoal-{CLUSTER}-{name}")[0]}
        for name in ("schedule", "jobs-waiting", "demand-changed")
    ]
    assert refs == expected
