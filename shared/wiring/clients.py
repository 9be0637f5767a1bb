"""The clients a user's machine builds: the submitter (``shoal submit``, the Python API, the Toil plugin) and
what the cluster commands read (``shoal status``, ssh/rsync-cluster's node list)."""

from __future__ import annotations

from shared.adapters.cluster_directory import ClusterOutputs
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.events import EventBridgeDemandEvents
from shared.adapters.executions import StepFunctionsExecutions
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.spend_ledger import DynamoSpendLedger
from shared.adapters.state_table import StateTable
from shared.services.cluster_utils import StatusSources
from shared.services.ports import NodeStore, Now
from shared.services.submit import ShoalClient, SubmitConfig


def build_submit_client(config: SubmitConfig, *, clock: Now | None = None) -> ShoalClient:
    """``ShoalClient`` on the cluster's table, queue and event bus (``clock``: now, if not the wall clock)."""
    table = StateTable(config.table_name, region=config.region)
    return ShoalClient(
        store=DynamoJobStore(table),
        queue=SqsJobQueue(config.queue_url, region=config.region),
        events=EventBridgeDemandEvents(config.event_bus_name, region=config.region),
        cluster=config.cluster,
        **({} if clock is None else {"clock": clock}),
    )


def build_status_sources(outputs: ClusterOutputs) -> StatusSources:
    """What ``shoal status`` reads: the cluster's status, nodes, queue depth, decisions and executions."""
    table = StateTable(outputs.table_name, region=outputs.region)
    return StatusSources(
        status=DynamoClusterStore(table),
        nodes=DynamoNodeStore(table),
        queue=SqsJobQueue(outputs.queue_url, region=outputs.region),
        decisions=DynamoDecisionLog(table),
        executions=StepFunctionsExecutions(outputs.region),
        machines=outputs.machines,
        guard=DynamoSpendLedger(table),
    )


def build_node_store(table_name: str, region: str | None) -> NodeStore:
    """The cluster's node records (ssh-cluster and rsync-cluster choose a node from them)."""
    return DynamoNodeStore(StateTable(table_name, region=region))
