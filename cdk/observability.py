"""The cluster's dashboard and the alarms that need a person: dead-lettered jobs, repeated launch failures.

Shoal's own metrics are EMF lines from Powertools (``shared.services.telemetry`` names them). Powertools
gives every metric the ``service`` dimension and the functions add ``cluster``, so a round's single
values are ``{cluster, service}`` (the alarm needs the exact set); node counts carry ``node_type``,
``market`` and ``state`` too, known only at run time, so they are graphed with a SEARCH expression that
matches any dimension set containing the cluster; so are the vCPU quotas' use (a ``quota`` dimension). The
guardrails' row shows the preemption budget (jobs reclaimed from spot, those past maxPreemptions), each
vCPU quota's use and the time left on the lease; the spend and price-cap widgets are ``cdk/guardrails.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk import constants
from shared.services import telemetry

PERIOD = Duration.seconds(constants.DASHBOARD_PERIOD_SECONDS)
WIDE, THIRD, HEIGHT = 24, 8, 6


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def scaler_dimensions(cluster_name: str) -> dict[str, str]:
    """The dimensions of a round's single-valued metrics, as Powertools emits them."""
    return {"cluster": cluster_name, "service": telemetry.SERVICE_NAME}


def schema(namespace: str, *extra: str) -> str:
    """A SEARCH schema for a metric with dimensions beyond a round's (cluster and Powertools' service): a
    schema matches only metrics with exactly these dimensions."""
    return "{" + ",".join([namespace, *sorted(["cluster", "service", *extra])]) + "}"


class ClusterObservability(Construct):
    """``dashboard``, ``dead_letter_alarm`` and ``launch_failure_alarm``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        functions: Sequence[lambda_.IFunction],
        extra_alarms: Sequence[cloudwatch.IAlarm] = (),
        failure_queues: Mapping[str, sqs.IQueue] | None = None,
        scaler: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._cluster_name = cluster_name
        self._dimensions = scaler_dimensions(cluster_name)
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_name=f"shoal-{cluster_name}-dead-letters",
            alarm_description="Jobs were dead-lettered: read their 'reason' attribute, fix, then redrive them.",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=constants.DLQ_ALARM_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.launch_failure_alarm = cloudwatch.Alarm(
            self,
            "LaunchFailureAlarm",
            alarm_name=f"shoal-{cluster_name}-launch-failures",
            alarm_description="Worker launches keep failing: check the decision log (shoal status) for the EC2 "
            "error codes (capacity, quotas, permissions).",
            metric=self._metric(
                telemetry.METRIC_LAUNCH_FAILURES,
                statistic=cloudwatch.Stats.SUM,
                period=Duration.minutes(constants.LAUNCH_FAILURE_ALARM_WINDOW_MINUTES),
            ),
            threshold=constants.LAUNCH_FAILURE_ALARM_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # One alarm per failure queue: a failed invocation or an undelivered event is never silent.
        self.failure_alarms = {
            name: cloudwatch.Alarm(
                self,
                f"{name}Alarm",
                alarm_name=f"shoal-{cluster_name}-{_kebab(name)}",
                alarm_description=f"{name}: read the messages of queue {_kebab(name)} (the event and the error), "
                "fix the cause, then purge it.",
                metric=queue_.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=constants.FAILURE_ALARM_THRESHOLD,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            for name, queue_ in (failure_queues or {}).items()
        }
        self.throttle_alarm = (
            None
            if scaler is None
            else cloudwatch.Alarm(
                self,
                "ScalerThrottleAlarm",
                alarm_name=f"shoal-{cluster_name}-scaler-throttled",
                alarm_description="evaluate_scaling was throttled at its reserved concurrency: triggers are "
                "arriving faster than rounds finish (a trigger storm, or rounds slowed by AWS throttling).",
                metric=scaler.metric_throttles(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
                threshold=constants.THROTTLE_ALARM_THRESHOLD,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        extra_alarms = [
            *extra_alarms,
            *self.failure_alarms.values(),
            *([self.throttle_alarm] if self.throttle_alarm else []),
        ]
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"shoal-{cluster_name}",
            default_interval=Duration.hours(3),
            widgets=self._widgets(
                queue, dead_letter_queue, functions, [self.dead_letter_alarm, self.launch_failure_alarm, *extra_alarms]
            ),
        )

    def _metric(
        self,
        name: str,
        *,
        statistic: str,
        period: Duration = PERIOD,
        label: str | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=telemetry.METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map=dict(dimensions if dimensions is not None else self._dimensions),
            statistic=statistic,
            period=period,
            label=label,
        )

    def _search(self, name: str, scope: str, statistic: str, label: str) -> cloudwatch.SearchExpression:
        seconds = int(PERIOD.to_seconds())
        return cloudwatch.SearchExpression(
            expression=(
                f"SEARCH('{scope} MetricName=\"{name}\" cluster=\"{self._cluster_name}\"', '{statistic}', {seconds})"
            ),
            label=label,
        )

    def _widgets(
        self,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        functions: Sequence[lambda_.IFunction],
        alarms: Sequence[cloudwatch.IAlarm],
    ) -> list[list[cloudwatch.IWidget]]:
        ns = telemetry.METRICS_NAMESPACE
        queue_depth = cloudwatch.GraphWidget(
            title="Queue depth",
            width=THIRD,
            height=HEIGHT,
            left=[
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, label="waiting"),
                queue.metric_approximate_number_of_messages_not_visible(period=PERIOD, label="taken by workers"),
            ],
        )
        queue_age = cloudwatch.GraphWidget(
            title="Oldest waiting job (seconds)",
            width=THIRD,
            height=HEIGHT,
            left=[queue.metric_approximate_age_of_oldest_message(period=PERIOD, label="age of oldest job")],
        )
        dead_letters = cloudwatch.GraphWidget(
            title="Dead-lettered jobs",
            width=THIRD,
            height=HEIGHT,
            left=[dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, label="dead letters")],
        )
        nodes = cloudwatch.GraphWidget(
            title="Nodes by type, market and state",
            width=THIRD,
            height=HEIGHT,
            stacked=True,
            left=[self._search(telemetry.METRIC_NODES, schema(ns, "market", "node_type", "state"), "Maximum", "nodes")],
        )
        decisions = cloudwatch.GraphWidget(
            title="Scaling decisions",
            width=THIRD,
            height=HEIGHT,
            left=[
                self._metric(telemetry.METRIC_DECISIONS, statistic=cloudwatch.Stats.SUM, label="actions"),
                self._metric(telemetry.METRIC_LAUNCH_FAILURES, statistic=cloudwatch.Stats.SUM, label="launch failures"),
            ],
            right=[
                self._metric(
                    telemetry.METRIC_DECISION_LATENCY, statistic=cloudwatch.Stats.p(90), label="round latency p90 (ms)"
                )
            ],
        )
        cost = cloudwatch.GraphWidget(
            title="Hourly cost (USD/h)",
            width=THIRD,
            height=HEIGHT,
            left=[self._metric(telemetry.METRIC_HOURLY_COST, statistic=cloudwatch.Stats.MAXIMUM, label="fleet cost")],
        )
        jobs = cloudwatch.GraphWidget(
            title="Jobs: queued and running (scaler's view)",
            width=THIRD,
            height=HEIGHT,
            left=[
                self._metric(telemetry.METRIC_QUEUED_JOBS, statistic=cloudwatch.Stats.MAXIMUM, label="queued"),
                self._metric(telemetry.METRIC_RUNNING_JOBS, statistic=cloudwatch.Stats.MAXIMUM, label="running"),
            ],
        )
        wait = cloudwatch.GraphWidget(
            title="Job wait time (seconds)",
            width=THIRD,
            height=HEIGHT,
            left=[self._search(telemetry.METRIC_JOB_WAIT, f'Namespace="{ns}"', "p90", "wait p90")],
        )
        function_health = cloudwatch.GraphWidget(
            title="Control plane functions",
            width=THIRD,
            height=HEIGHT,
            left=[f.metric_errors(period=PERIOD) for f in functions],
            right=[f.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM) for f in functions],
        )
        status = cloudwatch.AlarmStatusWidget(title="Alarms", width=WIDE, height=3, alarms=list(alarms))
        return [
            [status],
            [queue_depth, queue_age, dead_letters],
            [nodes, decisions, cost],
            [jobs, wait, function_health],
            *self._guardrail_widgets(),
        ]

    def _guardrail_widgets(self) -> tuple[list[cloudwatch.IWidget], list[cloudwatch.IWidget]]:
        """The preemption budget and the vCPU quotas, as each round saw them (``round_report``)."""
        ns = telemetry.METRICS_NAMESPACE
        preemptions = cloudwatch.GraphWidget(
            title="Jobs reclaimed from spot (queued or running)",
            width=THIRD,
            height=HEIGHT,
            left=[
                self._metric(telemetry.METRIC_PREEMPTED_JOBS, statistic=cloudwatch.Stats.MAXIMUM, label="reclaimed"),
                self._metric(
                    telemetry.METRIC_ON_DEMAND_ONLY_JOBS,
                    statistic=cloudwatch.Stats.MAXIMUM,
                    label="past maxPreemptions: on-demand only",
                ),
            ],
        )
        quotas = cloudwatch.GraphWidget(
            title="EC2 vCPU quotas used (%, the whole account)",
            width=THIRD,
            height=HEIGHT,
            left=[self._search(telemetry.METRIC_VCPU_QUOTA_USED, schema(ns, "quota"), "Maximum", "used")],
            left_annotations=[cloudwatch.HorizontalAnnotation(value=100, label="quota")],
        )
        placement = cloudwatch.GraphWidget(
            title="Spot Placement Scores (1-10, per spot offer and zone)",
            width=WIDE,
            height=HEIGHT,
            left=[self._search(telemetry.METRIC_SPOT_PLACEMENT_SCORE, schema(ns, "offer", "zone"), "Minimum", "score")],
        )
        lease = cloudwatch.GraphWidget(
            title="Lease left (hours; TeardownCluster at 0)",
            width=THIRD,
            height=HEIGHT,
            left=[self._metric(telemetry.METRIC_LEASE_HOURS_LEFT, statistic=cloudwatch.Stats.MINIMUM, label="left")],
        )
        return [preemptions, quotas, lease], [placement]
