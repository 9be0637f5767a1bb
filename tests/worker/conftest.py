"""A small cluster for agent tests: moto SQS (job queue + DLQ), the job and node stores, real work dirs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.services.job_message import decode_job_message, encode_job_message
from shared.worker.agent import Agent, AgentSettings

REGION = "us-east-1"
NODE_CAPACITY = Resources(cores=2, memory=4 * GiB, disk=20 * GiB)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def serialized(*clients: Any) -> None:
    """One moto call at a time: moto's in-process backends are not thread-safe (a DynamoDB transaction
    deep-copies the table while another thread writes to it), and the agent calls from several threads."""
    lock = threading.Lock()
    for client in clients:
        call = client._make_api_call

        def locked(operation: str, params: Any, call: Any = call) -> Any:
            with lock:
                return call(operation, params)

        client._make_api_call = locked


def make_job(job_id: str, command: str | None, **fields: Any) -> Job:
    resources = fields.pop("resources", Resources(cores=1, memory=256 * MiB, disk=GiB))
    return Job(id=job_id, shape=Shape(resources=resources, wall_time=60), command=command, **fields)


@dataclass
class Cluster:
    sqs: Any
    queue_url: str
    dlq_url: str
    queue: SqsJobQueue
    jobs: Any
    nodes: Any
    runtimes: Any
    work_root: Path
    dynamodb: Any = None
    agents: list[Agent] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def submit(self, *jobs: Job) -> None:
        self.jobs.put_jobs(list(jobs), 0.0)
        for job in jobs:
            self.send_raw(encode_job_message(job))

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages on the job queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict[str, str]]:
        """Every dead-lettered message: its body, reason and job id (read, then made visible again)."""
        response = self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        )
        out = []
        for message in response.get("Messages", []):
            attributes = message.get("MessageAttributes", {})
            out.append(
                {
                    "body": message["Body"],
                    "reason": attributes.get("reason", {}).get("StringValue", ""),
                    "job_id": attributes.get("job_id", {}).get("StringValue", ""),
                }
            )
        return out

    def add_node(self, node_id: str, state: NodeState = NodeState.ACTIVE) -> None:
        self.nodes.put_node(
            NodeRecord(
                instance_id=node_id, offer_key="c5.large", instance_type="c5.large", market=Market.SPOT, state=state
            )
        )

    def agent(
        self,
        node_id: str = "i-node1",
        capacity: Resources = NODE_CAPACITY,
        interruption_check: Callable[[], str | None] | None = None,
        **settings: Any,
    ) -> Agent:
        agent = Agent(
            self.settings(node_id, capacity, **settings),
            queue=self.queue,
            jobs=self.jobs,
            nodes=self.nodes,
            decode=decode_job_message,
            runtimes=self.runtimes,
            interruption_check=interruption_check,
            base_env={"PATH": os.environ["PATH"]},
        )
        self.agents.append(agent)
        return agent

    def settings(self, node_id: str, capacity: Resources = NODE_CAPACITY, **settings: Any) -> AgentSettings:
        """A test agent's settings on ``node_id`` (its node recorded if it is not yet): quick to poll, retry and give
        up, heartbeating hourly unless ``settings`` say otherwise."""
        if self.nodes.get_node(node_id) is None:
            self.add_node(node_id)
        defaults: dict[str, Any] = {
            "poll_wait": 0,
            "retry_delay": 0,
            "kill_grace": 1.0,
            "declined_backoff": 0.01,
            "heartbeat_interval": 3600,
        }
        defaults.update(settings)
        return AgentSettings(node_id=node_id, capacity=capacity, work_root=self.work_root / node_id, **defaults)

    def start(self, agent: Agent) -> threading.Thread:
        """Run ``agent.run()`` in a background thread, as ``shoal-worker`` runs it in the foreground."""
        thread = threading.Thread(target=agent.run, name=f"agent-{agent.node_id}", daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        for agent in self.agents:
            agent.evacuate("test over")
            agent.wait_idle(timeout=10)


@pytest.fixture
def cluster(aws_credentials: None, tmp_path: Path) -> Iterator[Cluster]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        dlq_url = sqs.create_queue(QueueName="shoal-dlq")["QueueUrl"]
        queue_url = sqs.create_queue(QueueName="shoal-jobs")["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        serialized(sqs, dynamodb)
        make_table(dynamodb, "shoal-state")
        table = StateTable("shoal-state", client=dynamodb)
        cluster = Cluster(
            sqs=sqs,
            queue_url=queue_url,
            dlq_url=dlq_url,
            queue=SqsJobQueue(queue_url, dead_letter_queue_url=dlq_url, client=sqs),
            jobs=DynamoJobStore(table),
            nodes=DynamoNodeStore(table),
            runtimes=DynamoClusterStore(table),
            work_root=tmp_path / "work",
            dynamodb=dynamodb,
        )
        try:
            yield cluster
        finally:
            cluster.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for something a background agent does; polls with a short, event-based pause."""
    pause = threading.Event()
    deadline = timeout / 0.02
    for _ in range(int(deadline)):
        if condition():
            return
        pause.wait(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
