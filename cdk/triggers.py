"""What wakes the control plane: EventBridge rules, the schedule and the queue-depth alarm.

Every trigger runs the same level-triggered round, so the rules only decide *when*, never *what*:

- the schedule, every ``scale_interval``;
- the queue-depth alarm entering ALARM (jobs waiting), through its state-change event;
- Shoal's own "demand changed" event for this cluster (``shoal submit``);
- EC2 state changes, spot interruption warnings and rebalance recommendations → ``on_instance_event``
  (EventBridge cannot filter EC2 events by tag; the handler ignores other clusters' instances).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk import constants
from cdk.functions import failure_queue
from shared.services import telemetry


class ScalingTriggers(Construct):
    """``scaling_rules`` (wake ``evaluate_scaling``), ``instance_rules`` (wake ``on_instance_event``), ``alarm``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        scale_interval_minutes: int,
        queue: sqs.IQueue,
        evaluate_scaling: lambda_.IFunction,
        on_instance_event: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self._cluster_name = cluster_name
        # Events EventBridge could not deliver to a function (throttled past the retry policy, the function
        # deleted, permissions): kept with the error for a person, and alarmed on (observability).
        self.dead_letter_queue = failure_queue(
            self, "UndeliveredEvents", f"shoal-{cluster_name}-undelivered-events", "the EventBridge rules' targets"
        )

        def target(function: lambda_.IFunction) -> targets.LambdaFunction:
            return targets.LambdaFunction(
                function,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=constants.TARGET_RETRY_ATTEMPTS,
                max_event_age=Duration.minutes(constants.TARGET_MAX_EVENT_AGE_MINUTES),
            )

        self.schedule_rule = events.Rule(
            self,
            "Schedule",
            rule_name=f"shoal-{cluster_name}-schedule",
            description=f"Shoal cluster {cluster_name}: a scaling round every scale_interval",
            schedule=events.Schedule.rate(Duration.minutes(scale_interval_minutes)),
            enabled=constants.SCALING_RULES_ENABLED,
            targets=[target(evaluate_scaling)],
        )
        self.alarm = self._build_queue_alarm(queue)
        self.alarm_rule = events.Rule(
            self,
            "QueueDepthAlarmRule",
            rule_name=f"shoal-{cluster_name}-jobs-waiting",
            description=f"Shoal cluster {cluster_name}: a scaling round as soon as jobs wait in the queue",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[self.alarm.alarm_arn],
                detail={"state": {"value": ["ALARM"]}},
            ),
            enabled=constants.SCALING_RULES_ENABLED,
            targets=[target(evaluate_scaling)],
        )
        self.demand_rule = events.Rule(
            self,
            "DemandChangedRule",
            rule_name=f"shoal-{cluster_name}-demand-changed",
            description=f"Shoal cluster {cluster_name}: a scaling round when submitted demand changes",
            event_pattern=events.EventPattern(
                source=[telemetry.EVENT_SOURCE],
                detail_type=[telemetry.EVENT_DEMAND_CHANGED],
                detail={"cluster": [cluster_name]},
            ),
            enabled=constants.SCALING_RULES_ENABLED,
            targets=[target(evaluate_scaling)],
        )
        self.instance_rules = [
            events.Rule(
                self,
                "".join(word.capitalize() for word in short_name.split("-")) + "Rule",
                rule_name=f"shoal-{cluster_name}-{short_name}",
                description=f"Shoal cluster {cluster_name}: {detail_type} events",
                event_pattern=events.EventPattern(source=["aws.ec2"], detail_type=[detail_type]),
                targets=[target(on_instance_event)],
            )
            for detail_type, short_name in constants.EC2_EVENTS.items()
        ]

    @property
    def scaling_rules(self) -> list[events.Rule]:
        """The rules LaunchCluster enables and TeardownCluster disables (issue 5)."""
        return [self.schedule_rule, self.alarm_rule, self.demand_rule]

    def _build_queue_alarm(self, queue: sqs.IQueue) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            "JobsWaitingAlarm",
            alarm_name=f"shoal-{self._cluster_name}-jobs-waiting",
            alarm_description="Jobs are visible in the queue: wakes the scaler through EventBridge.",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.seconds(constants.ALARM_PERIOD_SECONDS), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
