"""The Lambda functions' adapters, built from their environment: the scaler, the instance-event handler and
the lifecycle step. Each is built once per warm function (the handlers cache it)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from shared.adapters import aws
from shared.adapters.capacity_cache import DynamoCapacityCache
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.demand_store import DynamoDemandStore
from shared.adapters.ec2_fleet import Ec2Fleet
from shared.adapters.ec2_quotas import ServiceQuotaReader, SpotPlacementScorer
from shared.adapters.image_cache import EcrImageCache
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore
from shared.adapters.spend_ledger import DynamoSpendLedger, StepFunctionsTeardown
from shared.adapters.state_table import PK, SK, TTL_ATTRIBUTE, StateTable
from shared.services.environment import FunctionEnvironment
from shared.services.guardrails import Guardrails
from shared.services.lifecycle import LifecyclePorts
from shared.services.reconcile import ControlPlane

IDEMPOTENCY_PARTITION = "IDEMPOTENCY#{function}"


def _fleet(env: FunctionEnvironment) -> Ec2Fleet:
    return Ec2Fleet(
        cluster=env.cluster.name,
        launch_template_id=env.launch_template_id,
        subnet_ids=env.subnet_ids,
        zone=env.cluster.zone,
        region=env.cluster.region,
    )


def build_control_plane(env: FunctionEnvironment) -> ControlPlane:
    """What a scaling round talks to: evaluate_scaling's, and on_instance_event's (its actions, then a round)."""
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
        fleet=_fleet(env),
        guardrails=build_guardrails(env, table),
        quotas=ServiceQuotaReader(cluster=env.cluster.name, region=region, ttl=env.cluster.quota_ttl),
        placement=SpotPlacementScorer(region=region, ttl=env.cluster.quota_ttl),
        demand=DynamoDemandStore(table),
    )


def build_guardrails(env: FunctionEnvironment, table: StateTable) -> Guardrails:
    """The spend ledger, the status record and (when the stack names one) the TeardownCluster a lease starts."""
    arn = env.teardown_state_machine_arn
    return Guardrails(
        ledger=DynamoSpendLedger(table),
        status=DynamoClusterStore(table),
        teardown=StepFunctionsTeardown(arn, env.cluster.region) if arn else None,
    )


def build_lifecycle_step(env: FunctionEnvironment) -> LifecyclePorts:
    """The LaunchCluster/TeardownCluster steps' ports."""
    table = StateTable(env.table_name, region=env.cluster.region)
    fleet = _fleet(env)
    cache = EcrImageCache(env.cached_repository, env.cluster.region) if env.cached_repository else None
    return LifecyclePorts(
        fleet=fleet,
        inventory=fleet,
        nodes=DynamoNodeStore(table),
        capacity=DynamoCapacityCache(table),
        image_cache=cache,
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
