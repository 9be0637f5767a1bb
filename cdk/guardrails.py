"""The stack's side of the dollar and time guardrails (``shared.domain.budget``): the budget alarm at 80 %, the
dashboard's spend widgets, and what lets the scaler start TeardownCluster when a lease runs out.

The scaler learns the teardown's ARN from its name (``teardown_state_machine_arn``), not from a reference
to the state machine: the machine already refers to the scaling rules, which refer to the scaler, so a
reference back would be a dependency cycle.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.observability import scaler_dimensions
from shared.domain.settings import ClusterSettings
from shared.services import telemetry

BUDGET_ALARM_FRACTION = 0.8
TEARDOWN_MACHINE = "TeardownCluster"  # cdk/lifecycle.py names its machines shoal-{cluster}-{this}


def teardown_state_machine_arn(stack: Stack, cluster_name: str) -> str:
    return stack.format_arn(
        service="states",
        resource="stateMachine",
        resource_name=f"shoal-{cluster_name}-{TEARDOWN_MACHINE}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def scaler_statements(settings: ClusterSettings, stack: Stack) -> list[iam.PolicyStatement]:
    """With a lease, the scaler may start (only) this cluster's TeardownCluster."""
    if settings.lease is None and settings.idle_lease is None:
        return []
    return [
        iam.PolicyStatement(
            sid="StartTheTeardownWhenTheLeaseEnds",
            actions=["states:StartExecution"],
            resources=[teardown_state_machine_arn(stack, settings.name)],
        )
    ]


class ClusterGuardrails(Construct):
    """``budget_alarm`` (None without a budget) and the spend widgets on ``dashboard``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: ClusterSettings, dashboard: cloudwatch.Dashboard
    ) -> None:
        super().__init__(scope, construct_id)
        name = settings.name
        spent = cloudwatch.Metric(
            namespace=telemetry.METRICS_NAMESPACE,
            metric_name=telemetry.METRIC_SPENT,
            dimensions_map=scaler_dimensions(name),
            statistic=cloudwatch.Stats.MAXIMUM,
            period=Duration.minutes(5),
        )  # no label: a labelled metric would make the alarm a metric-math alarm
        self.budget_alarm: cloudwatch.Alarm | None = None
        annotations = []
        if settings.budget is not None:
            threshold = round(settings.budget * BUDGET_ALARM_FRACTION, 2)
            self.budget_alarm = cloudwatch.Alarm(
                self,
                "BudgetAlarm",
                alarm_name=f"shoal-{name}-budget-80-percent",
                alarm_description=f"Cluster {name} has spent 80 % of its ${settings.budget:g} budget; at 100 % it "
                "launches nothing more and drains (BUDGET_EXHAUSTED). Raise the budget (cdk deploy -c budget=...) "
                "or let it finish.",
                metric=spent,
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            annotations.append(cloudwatch.HorizontalAnnotation(value=settings.budget, label="budget"))
        cost_annotations = (
            [cloudwatch.HorizontalAnnotation(value=settings.max_hourly_cost, label="maxHourlyCost")]
            if settings.max_hourly_cost is not None
            else []
        )
        hourly = cloudwatch.Metric(
            namespace=telemetry.METRICS_NAMESPACE,
            metric_name=telemetry.METRIC_HOURLY_COST,
            dimensions_map=scaler_dimensions(name),
            statistic=cloudwatch.Stats.MAXIMUM,
            period=Duration.minutes(1),
            label="Fleet USD/h",
        )
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(
                title="Spend against the budget (BUDGET_EXHAUSTED at the line)",
                left=[spent.with_(label="Spent (USD, the scaler's ledger)")],
                left_annotations=annotations,
                width=12,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title="Fleet price per hour against maxHourlyCost",
                left=[hourly],
                left_annotations=cost_annotations,
                width=12,
                height=6,
            ),
        ]
        if self.budget_alarm is not None:
            widgets.append(cloudwatch.AlarmStatusWidget(title="Budget", alarms=[self.budget_alarm], width=24))
        dashboard.add_widgets(*widgets)
