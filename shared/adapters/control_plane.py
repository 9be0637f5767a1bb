"""The control plane's adapters, built from a function's environment (the composition root of the handlers)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from shared.adapters import aws
from shared.adapters.capacity_cache import DynamoCapacityCache
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.ec2_fleet import Ec2Fleet
from shared.adapters.ec2_quotas import ServiceQuotaReader, SpotPlacementScorer
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore
from shared.adapters.state_table import PK, SK, TTL_ATTRIBUTE, StateTable
from shared.services.environment import FunctionEnvironment
from shared.services.reconcile import ControlPlane

IDEMPOTENCY_PARTITION = "IDEMPOTENCY#{function}"


def build_control_plane(env: FunctionEnvironment) -> ControlPlane:
    region = env.cluster.region
    table = StateTable(env.table_name, region=region)
    return ControlPlane(
        jobs=DynamoJobStore(table),
        nodes=DynamoNodeStore(table),
        scaler_state=DynamoScalerStateStore(table),
        lease=DynamoLease(table),
        capacity=DynamoCapacityCache(table),
        decisions=DynamoDecisionLog(table),
        queue=SqsJobQueue(env.queue_url, dead_letter_queue_url=env.dead_letter_queue_url, region=region),
        fleet=Ec2Fleet(
            cluster=env.cluster.name,
            launch_template_id=env.launch_template_id,
            subnet_ids=env.subnet_ids,
            zone=env.cluster.zone,
            region=region,
        ),
        quotas=ServiceQuotaReader(cluster=env.cluster.name, region=region, ttl=env.cluster.quota_ttl),
        placement=SpotPlacementScorer(region=region, ttl=env.cluster.quota_ttl),
    )


def idempotency_store(env: FunctionEnvironment, function: str) -> DynamoDBPersistenceLayer:
    """Powertools idempotency records in the cluster's state table, one partition per function.

    Same table, so no extra resource or grant: items ``pk = IDEMPOTENCY#{function}``, ``sk`` = the hashed
    event id, expiring through the table's TTL attribute.
    """
    return DynamoDBPersistenceLayer(
        table_name=env.table_name,
        key_attr=PK,
        sort_key_attr=SK,
        static_pk_value=IDEMPOTENCY_PARTITION.format(function=function),
        expiry_attr=TTL_ATTRIBUTE,
        boto3_client=aws.client("dynamodb", env.cluster.region),
    )
