"""Issue 13, the deployed system: no failed invocation or undelivered event is silent, and the scaler has a
reserved concurrency. Template assertions on the session's one synthesis (cdk-nag ran on it: see
test_compliance.py)."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from cdk import constants
from tests.cdk.conftest import CLUSTER, Synthesized


def _function(s: Synthesized, module: str) -> tuple[str, dict[str, Any]]:
    logical_id = s.stack.get_logical_id(s.stack.control_plane.functions[module].node.default_child)  # type: ignore[arg-type]
    return logical_id, s.template_json["Resources"][logical_id]["Properties"]


def test_every_function_sends_failed_async_invocations_to_the_failure_queue(synthesized: Synthesized) -> None:
    queue_arn = synthesized.resolve(synthesized.stack.control_plane.failure_queue.queue_arn)
    configs = synthesized.resources("AWS::Lambda::EventInvokeConfig")
    for module in ("evaluate_scaling", "on_instance_event", "lifecycle_step"):
        logical_id, _ = _function(synthesized, module)
        [config] = [c["Properties"] for c in configs.values() if c["Properties"]["FunctionName"] == {"Ref": logical_id}]
        assert config["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
        assert config["MaximumRetryAttempts"] == constants.FUNCTION_ASYNC_RETRIES
        assert config["MaximumEventAgeInSeconds"] == constants.FUNCTION_MAX_EVENT_AGE_MINUTES * 60


def test_only_the_scaler_has_a_reserved_concurrency(synthesized: Synthesized) -> None:
    assert _function(synthesized, "evaluate_scaling")[1]["ReservedConcurrentExecutions"] == (
        constants.SCALER_RESERVED_CONCURRENCY
    )
    for module in ("on_instance_event", "lifecycle_step"):
        assert "ReservedConcurrentExecutions" not in _function(synthesized, module)[1]


def test_every_rule_target_has_a_retry_policy_and_a_dead_letter_queue(synthesized: Synthesized) -> None:
    dlq_arn = synthesized.resolve(synthesized.stack.triggers.dead_letter_queue.queue_arn)
    rules = synthesized.resources("AWS::Events::Rule")
    lambda_targets = [t for r in rules.values() for t in r["Properties"]["Targets"] if "Fn::GetAtt" in str(t["Arn"])]
    assert len(lambda_targets) == 3 + len(constants.EC2_EVENTS)
    for target in lambda_targets:
        assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": constants.TARGET_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": constants.TARGET_MAX_EVENT_AGE_MINUTES * 60,
        }


def test_eventbridge_may_send_to_its_dead_letter_queue_and_nothing_else_may(synthesized: Synthesized) -> None:
    queue_ref = synthesized.resolve(synthesized.stack.triggers.dead_letter_queue.queue_url)
    [policy] = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
        if queue_ref in p["Properties"]["Queues"]
    ]
    allows = [s for s in policy if s["Effect"] == "Allow"]
    assert allows and all(s["Principal"] == {"Service": "events.amazonaws.com"} for s in allows)
    assert all(s["Action"] == "sqs:SendMessage" and "aws:SourceArn" in str(s["Condition"]) for s in allows)


def test_an_alarm_watches_each_failure_queue_and_the_scalers_throttles(synthesized: Synthesized) -> None:
    for name, queue in (
        ("failed-invocations", synthesized.stack.control_plane.failure_queue),
        ("undelivered-events", synthesized.stack.triggers.dead_letter_queue),
    ):
        synthesized.template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "AlarmName": f"shoal-{CLUSTER}-{name}",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": synthesized.resolve(queue.queue_name)}],
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
        )
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"shoal-{CLUSTER}-scaler-throttled",
            "Namespace": "AWS/Lambda",
            "MetricName": "Throttles",
            "Dimensions": [{"Name": "FunctionName", "Value": Match.any_value()}],
        },
    )
