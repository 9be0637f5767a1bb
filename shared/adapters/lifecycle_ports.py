"""The lifecycle steps' adapters, built from a function's environment."""

from __future__ import annotations

from shared.adapters.capacity_cache import DynamoCapacityCache
from shared.adapters.ec2_fleet import Ec2Fleet
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.services.environment import FunctionEnvironment
from shared.services.lifecycle import LifecyclePorts


def build_lifecycle_ports(env: FunctionEnvironment) -> LifecyclePorts:
    region = env.cluster.region
    table = StateTable(env.table_name, region=region)
    fleet = Ec2Fleet(
        cluster=env.cluster.name,
        launch_template_id=env.launch_template_id,
        subnet_ids=env.subnet_ids,
        zone=env.cluster.zone,
        region=region,
    )
    return LifecyclePorts(
        fleet=fleet, inventory=fleet, nodes=DynamoNodeStore(table), capacity=DynamoCapacityCache(table)
    )
