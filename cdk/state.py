"""The cluster's durable state: the job queue with its dead-letter queue, and the state table."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk import constants


class ClusterState(Construct):
    """``queue`` (jobs), ``dead_letter_queue`` and ``table`` (jobs, demand, nodes, decisions, lease, ...).

    Both queues use SQS-managed encryption and refuse plain HTTP; the table is on demand, encrypted with
    the AWS-managed key, point-in-time recoverable, and forgets expired items through ``expires_at``.
    Everything is destroyed with the stack: destroy-cluster leaves nothing behind.
    """

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, visibility_timeout: Duration) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = self._build_dead_letter_queue(cluster_name)
        self.queue = self._build_queue(cluster_name, visibility_timeout)
        self.table = self._build_table(cluster_name)

    def _build_dead_letter_queue(self, cluster_name: str) -> sqs.Queue:
        return sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"shoal-{cluster_name}-dead-letters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_queue(self, cluster_name: str, visibility_timeout: Duration) -> sqs.Queue:
        return sqs.Queue(
            self,
            "JobQueue",
            queue_name=f"shoal-{cluster_name}-jobs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=constants.MAX_RECEIVE_COUNT
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_table(self, cluster_name: str) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "StateTable",
            table_name=f"shoal-{cluster_name}-state",
            partition_key=dynamodb.Attribute(name=constants.PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=constants.SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=constants.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )
