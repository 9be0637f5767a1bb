"""What ``shoal-worker`` reads from its environment (read by ``shared.wiring.settings``), as the agent's settings.

The worker user data sets these on the appliance container. Capacity defaults to what the machine
(or the container's cgroup) has; ``SHOAL_CORES``/``SHOAL_MEMORY``/``SHOAL_DISK``/``SHOAL_ACCELERATORS``
override it, with sizes in human units (``30GiB``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.domain.cheaper_first import NodeCost
from shared.domain.node_types import NodeTypeSpecError, build_offers, parse_node_types
from shared.wiring.settings import (
    DEFAULT_WORK_DIR,
    IMDS_OFF,
    IMDS_URL_VARIABLE,
    WorkerEnvironment,
    read_worker_environment,
)
from shared.worker.agent import AgentSettings, AgentSettingsError
from shared.worker.imds import ImdsClient, ImdsError
from shared.worker.isolation import JOB_CREDENTIALS, JOB_IMAGE, JOB_NETWORK, JOBS_MAY_REACH, Isolation

__all__ = ["DEFAULT_WORK_DIR", "IMDS_OFF", "VARIABLES", "WorkerConfig", "WorkerConfigError"]

VARIABLES = (
    "SHOAL_QUEUE_URL",
    "SHOAL_DLQ_URL",
    "SHOAL_TABLE_NAME",
    "SHOAL_NODE_ID",
    "SHOAL_WORK_DIR",
    "SHOAL_CORES",
    "SHOAL_MEMORY",
    "SHOAL_DISK",
    "SHOAL_ACCELERATORS",
    "SHOAL_VISIBILITY_TIMEOUT",
    "SHOAL_POLL_WAIT",
    "SHOAL_HEARTBEAT_INTERVAL",
    "SHOAL_ENFORCE_MEMORY",
    "SHOAL_MAX_PREEMPTIONS",
    "SHOAL_NODE_TYPES",
    "SHOAL_NODE_STORAGE",
    "SHOAL_INSTANCE_TYPE",
    "SHOAL_MARKET",
    IMDS_URL_VARIABLE,
    JOB_IMAGE,
    JOB_NETWORK,
    JOB_CREDENTIALS,
    JOBS_MAY_REACH,
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


class WorkerConfigError(ValueError):
    """A worker setting missing or malformed; the message names the variable and how to fix it."""


class _Metadata:
    """``ImdsClient`` as the settings reader asks it: a lookup that fails with ``LookupError``."""

    def __init__(self, client: ImdsClient) -> None:
        self.client, self.base_url = client, client.base_url

    def instance_id(self) -> str:
        return self._ask(ImdsClient.instance_id)

    def region(self) -> str:
        return self._ask(ImdsClient.region)

    def instance_type(self) -> str:
        return self._ask(ImdsClient.instance_type)

    def lifecycle(self) -> str:
        return self._ask(ImdsClient.lifecycle)

    def _ask(self, read: Callable[[ImdsClient], str]) -> str:
        try:
            return read(self.client)
        except ImdsError as error:
            raise LookupError(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    region: str
    agent: AgentSettings
    imds_url: str | None  # None: IMDS off

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        imds: ImdsClient | None = None,
        meminfo: Path = Path("/proc/meminfo"),
        cgroup_memory: Path = Path("/sys/fs/cgroup/memory.max"),
    ) -> WorkerConfig:
        def metadata(url: str | None) -> _Metadata:
            return _Metadata(imds or ImdsClient(url, environ=environ))

        try:
            Isolation.from_env(os.environ if environ is None else environ)  # each job's runner reads it again
        except ValueError as error:  # a bad value must stop the agent here, not fail every job
            raise WorkerConfigError(str(error)) from None
        read = read_worker_environment(
            environ, error=WorkerConfigError, metadata=metadata, meminfo=meminfo, cgroup_memory=cgroup_memory
        )
        try:
            agent = AgentSettings(
                node_id=read.node_id,
                capacity=read.capacity,
                work_root=read.work_root,
                visibility_timeout=read.visibility_timeout,
                poll_wait=read.poll_wait,
                heartbeat_interval=read.heartbeat_interval,
                enforce_memory=read.enforce_memory,
                max_preemptions=read.max_preemptions,
                cheaper_first=_node_cost(read),
            )
        except AgentSettingsError as error:
            raise WorkerConfigError(str(error)) from None
        return cls(
            queue_url=read.queue_url,
            dead_letter_queue_url=read.dead_letter_queue_url,
            table_name=read.table_name,
            region=read.region,
            agent=agent,
            imds_url=read.imds_url,
        )


def _node_cost(read: WorkerEnvironment) -> NodeCost | None:
    """This node's side of ``cheaper_first``, from the cluster's node types (None: not set, or this node's type
    and market are not among them: it takes any job that fits)."""
    if not read.node_types:
        return None
    try:
        offers = build_offers(parse_node_types(read.node_types), region=read.region, node_storage=read.node_storage)
    except (NodeTypeSpecError, KeyError, ValueError) as error:
        raise WorkerConfigError(f"SHOAL_NODE_TYPES={read.node_types[:80]!r}: {error}") from None
    return NodeCost.of(offers, read.instance_type, spot=read.spot)
