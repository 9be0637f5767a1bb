"""What an agent talks to: its cluster's queue (and dead-letter queue), job and node stores, and where it
sends learned runtimes. ``shoal-worker`` (``shared.worker.main``) and the local cloud's agents build it here;
the agent itself is built by its edge (this package imports no edge)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.services.ports import JobStore, NodeStore
from shared.services.worker_ports import RuntimeRecorder, WorkerQueue


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPorts:
    queue: WorkerQueue
    jobs: JobStore
    nodes: NodeStore
    runtimes: RuntimeRecorder


def build_agent_ports(*, queue_url: str, dead_letter_queue_url: str, table_name: str, region: str | None) -> AgentPorts:
    table = StateTable(table_name, region=region)
    return AgentPorts(
        queue=SqsJobQueue(queue_url, dead_letter_queue_url=dead_letter_queue_url, region=region),
        jobs=DynamoJobStore(table),
        nodes=DynamoNodeStore(table),
        runtimes=DynamoClusterStore(table),
    )
