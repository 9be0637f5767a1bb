"""A small Shoal cluster on the local cloud for the Toil tests: moto on loopback, the queue, DLQ and state table,
the cluster's settings, and real agents running jobs as real processes (one thread each).

The leader side (``ShoalBatchSystem``) finds it exactly as a user's would: through the ``SHOAL_*`` variables,
with ``AWS_ENDPOINT_URL`` pointing at moto. No scaler runs: the fleet is fixed (``shoal local run`` brings
the whole stack up instead).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.catalog import instance_type
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.local import moto_patches
from shared.local.moto_server import LocalCloud
from shared.services.job_message import decode_job_message
from shared.worker.agent import Agent, AgentSettings

REGION = "us-west-2"
CLUSTER = "toil-test"
NODE_TYPE = "c5.xlarge"  # 4 vCPUs: holds every job of Toil's tests (they ask for at most min(cpu_count, 4) cores)


@dataclass
class LocalShoal:
    cloud: LocalCloud
    table: StateTable
    queue_url: str
    dead_letter_url: str
    environ: dict[str, str]
    agents: list[Agent] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    work_roots: list[Path] = field(default_factory=list)

    @property
    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.table)

    def start_agent(self, node_id: str, *, cores: float, work_root: Path, **settings: float) -> Agent:
        """A real agent on a node of ``NODE_TYPE`` with ``cores`` cores, running in a thread."""
        capacity = instance_type(NODE_TYPE).usable()
        capacity = Resources(cores=cores, memory=capacity.memory, disk=capacity.disk, accelerators=0)
        nodes = DynamoNodeStore(self.table)
        nodes.put_node(
            NodeRecord(
                instance_id=node_id,
                offer_key=NODE_TYPE,
                instance_type=NODE_TYPE,
                market=Market.ON_DEMAND,
                state=NodeState.ACTIVE,
            )
        )
        values: dict[str, float] = {
            "poll_wait": 0,  # moto serves one request at a time: a long poll would stall everyone else
            "empty_poll_pause": 0.2,
            "declined_backoff": 0.2,
            "visibility_timeout": 120,
            "heartbeat_interval": 5.0,
            "cancel_check_interval": 0.5,
            "kill_grace": 1.0,
            **settings,
        }
        agent = Agent(
            AgentSettings(
                node_id=node_id,
                capacity=capacity,
                work_root=work_root / node_id,
                enforce_memory=False,  # Toil's tests ask for 1 MiB: an address-space limit would kill Python
                **values,  # type: ignore[arg-type]
            ),
            queue=SqsJobQueue(self.queue_url, dead_letter_queue_url=self.dead_letter_url, region=REGION),
            jobs=self.jobs,
            nodes=nodes,
            decode=decode_job_message,
            base_env=_worker_environment(),
        )
        thread = threading.Thread(target=agent.run, name=f"agent-{node_id}", daemon=True)
        thread.start()
        self.work_roots.append(work_root / node_id)
        self.agents.append(agent)
        self.threads.append(thread)
        return agent

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.stop()
        for agent in self.agents:
            agent.request_interrupt("test over")
        for thread in self.threads:
            thread.join(timeout=15)
        self.agents.clear()
        self.threads.clear()
        for root in self.work_roots:
            _kill_leftovers(root)


def _kill_leftovers(work_root: Path) -> None:
    """Kill what jobs left running (until cancel() ends a job's whole session, Toil's executor's child
    survives a kill): every process of ours whose SHOAL_JOB_WORK_DIR is under ``work_root``."""
    marker = f"SHOAL_JOB_WORK_DIR={work_root}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


def _worker_environment() -> dict[str, str]:
    """The agent's environment for jobs: this one, with the venv's bin first (``_toil_worker`` lives there)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    return env


@contextmanager
def local_shoal(*, node_types: str = NODE_TYPE) -> Iterator[LocalShoal]:
    """The cluster, with ``SHOAL_*`` set for this process while it is up."""
    hooks = moto_patches.Hooks(invoke_lambda=_no_lambdas, deliver_event=lambda *_: None, speed=1.0)
    cloud = LocalCloud(region=REGION, speed=1.0, hooks=hooks)
    cloud.start()
    saved = {name: os.environ.get(name) for name in _SHOAL_VARIABLES}
    shoal: LocalShoal | None = None
    try:
        with _quiet():
            sqs = boto3.client("sqs", region_name=REGION)
            dead_letter_url = sqs.create_queue(QueueName=f"{CLUSTER}-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "1000"})
            queue_url = sqs.create_queue(QueueName=f"{CLUSTER}-jobs", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
            make_table(boto3.client("dynamodb", region_name=REGION), f"{CLUSTER}-state")
        table = StateTable(f"{CLUSTER}-state", region=REGION)
        DynamoClusterStore(table).put_settings(
            ClusterSettings.from_mapping({"name": CLUSTER, "node_types": node_types, "region": REGION})
        )
        environ = {
            "SHOAL_CLUSTER_NAME": CLUSTER,
            "SHOAL_TABLE_NAME": table.name,
            "SHOAL_QUEUE_URL": queue_url,
            "SHOAL_REGION": REGION,
            "SHOAL_TOIL_POLL_INTERVAL": "0.5",
        }
        os.environ.update(environ)
        shoal = LocalShoal(
            cloud=cloud, table=table, queue_url=queue_url, dead_letter_url=dead_letter_url, environ=environ
        )
        yield shoal
    finally:
        if shoal is not None:
            shoal.stop_agents()
        _restore(saved)
        cloud.stop()


_SHOAL_VARIABLES = (
    "SHOAL_CLUSTER_NAME",
    "SHOAL_TABLE_NAME",
    "SHOAL_QUEUE_URL",
    "SHOAL_REGION",
    "SHOAL_TOIL_POLL_INTERVAL",
)


def _no_lambdas(name: str, payload: bytes) -> tuple[bytes, str | None]:
    raise AssertionError(f"no Lambda runs in this local cluster, {name} was invoked")


def _restore(saved: Mapping[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def _quiet() -> Iterator[None]:
    level = logging.getLogger("botocore").level
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        yield
    finally:
        logging.getLogger("botocore").setLevel(level)
