"""Moto-backed AWS for the adapter tests: the state table, the job queue and its DLQ, an event bus.

Store fixtures are parametrized over the DynamoDB store and its in-memory twin, so one suite holds
both to the same contract. Every test gets a fresh, empty mock account.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from shared.adapters import aws
from shared.adapters.capacity_cache import DynamoCapacityCache
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.demand_store import DynamoDemandStore
from shared.adapters.events import EventBridgeDemandEvents
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.memory_state import (
    MemoryCapacityCache,
    MemoryClusterStore,
    MemoryDecisionLog,
    MemoryDemandStore,
    MemoryJobStore,
    MemoryLease,
    MemoryNodeStore,
    MemoryScalerStateStore,
)
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.jobs import Job, parse_job
from shared.services.telemetry import EVENT_SOURCE

REGION = "us-east-1"
TABLE_NAME = "shoal-test-state"
EVENT_BUS = "shoal-test-bus"
BACKENDS = ["dynamodb", "memory"]


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "SHOAL_TABLE_NAME", "SHOAL_QUEUE_URL", "SHOAL_CLUSTER_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mocked_aws(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(mocked_aws: None) -> Any:
    return aws.client("dynamodb", REGION)


@pytest.fixture
def table(dynamodb: Any) -> StateTable:
    make_table(dynamodb, TABLE_NAME)
    return StateTable(TABLE_NAME, client=dynamodb)


@dataclass(frozen=True)
class Queues:
    client: Any
    url: str
    dead_letter_url: str

    def bodies(self, url: str | None = None, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every message on the queue, received (and left in flight) to look at."""
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            batch = self.client.receive_message(
                QueueUrl=url or self.url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                return messages
            messages += batch
        return messages


@pytest.fixture
def queues(mocked_aws: None) -> Queues:
    sqs = aws.client("sqs", REGION)
    dead_letter_url = sqs.create_queue(QueueName="shoal-test-dlq")["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="shoal-test-jobs",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return Queues(client=sqs, url=url, dead_letter_url=dead_letter_url)


@pytest.fixture
def job_queue(queues: Queues) -> SqsJobQueue:
    return SqsJobQueue(queues.url, dead_letter_queue_url=queues.dead_letter_url, client=queues.client)


@dataclass(frozen=True)
class EventCapture:
    """An event bus whose Shoal events a rule copies to an SQS queue, so tests can read what was put."""

    publisher: EventBridgeDemandEvents
    sqs: Any
    url: str

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            out += [json.loads(m["Body"]) for m in batch]
        return out


@pytest.fixture
def event_capture(mocked_aws: None) -> EventCapture:
    events = aws.client("events", REGION)
    sqs = aws.client("sqs", REGION)
    events.create_event_bus(Name=EVENT_BUS)
    url = sqs.create_queue(QueueName="shoal-test-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="shoal-events", EventBusName=EVENT_BUS, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule="shoal-events", EventBusName=EVENT_BUS, Targets=[{"Id": "capture", "Arn": arn}])
    return EventCapture(publisher=EventBridgeDemandEvents(EVENT_BUS, client=events), sqs=sqs, url=url)


# --- stores, each against DynamoDB (moto) and its in-memory twin ------------------------------------


def _backend(request: pytest.FixtureRequest) -> StateTable | None:
    """The moto table for the "dynamodb" parameter, None for "memory"."""
    if request.param == "memory":
        return None
    table: StateTable = request.getfixturevalue("table")
    return table


@pytest.fixture(params=BACKENDS)
def job_store(request: pytest.FixtureRequest) -> DynamoJobStore | MemoryJobStore:
    table = _backend(request)
    return MemoryJobStore() if table is None else DynamoJobStore(table)


@pytest.fixture(params=BACKENDS)
def node_store(request: pytest.FixtureRequest) -> DynamoNodeStore | MemoryNodeStore:
    table = _backend(request)
    return MemoryNodeStore() if table is None else DynamoNodeStore(table)


@pytest.fixture(params=BACKENDS)
def scaler_store(request: pytest.FixtureRequest) -> DynamoScalerStateStore | MemoryScalerStateStore:
    table = _backend(request)
    return MemoryScalerStateStore() if table is None else DynamoScalerStateStore(table)


@pytest.fixture(params=BACKENDS)
def lease(request: pytest.FixtureRequest) -> DynamoLease | MemoryLease:
    table = _backend(request)
    return MemoryLease() if table is None else DynamoLease(table)


@pytest.fixture(params=BACKENDS)
def capacity_cache(request: pytest.FixtureRequest) -> DynamoCapacityCache | MemoryCapacityCache:
    table = _backend(request)
    return MemoryCapacityCache() if table is None else DynamoCapacityCache(table)


@pytest.fixture(params=BACKENDS)
def decision_log(request: pytest.FixtureRequest) -> DynamoDecisionLog | MemoryDecisionLog:
    table = _backend(request)
    return MemoryDecisionLog() if table is None else DynamoDecisionLog(table)


@pytest.fixture(params=BACKENDS)
def cluster_store(request: pytest.FixtureRequest) -> DynamoClusterStore | MemoryClusterStore:
    table = _backend(request)
    return MemoryClusterStore() if table is None else DynamoClusterStore(table)


@pytest.fixture
def missing_table(mocked_aws: None) -> StateTable:
    """A table name that does not exist in the mock account."""
    return StateTable("no-such-table", client=aws.client("dynamodb", REGION))


# --- jobs -------------------------------------------------------------------------------------------

SHAPES: list[dict[str, Any]] = [
    {"cores": 1, "memory": "2GiB", "disk": "10GiB", "wall_time": "10m"},
    {"cores": 4, "memory": "16GiB", "disk": "50GiB", "wall_time": "1h"},
    {"cores": 8, "memory": "32GiB", "disk": "100GiB", "wall_time": "2h", "preemptible": True},
    {"cores": 2, "memory": "4GiB", "disk": "20GiB", "wall_time": "30m", "accelerators": 1},
]


def make_job(job_id: str, shape: int = 0, **fields: Any) -> Job:
    """A valid job with one of the four test ``SHAPES``."""
    return parse_job({"id": job_id, **SHAPES[shape], **fields})


@pytest.fixture
def job() -> Callable[..., Job]:
    return make_job


@dataclass
class DemandStores:
    """A job store, a cluster store and the demand source that reads them, on one backend."""

    jobs: DynamoJobStore | MemoryJobStore
    cluster: DynamoClusterStore | MemoryClusterStore
    demand: DynamoDemandStore | MemoryDemandStore


@pytest.fixture(params=BACKENDS)
def demand_stores(request: pytest.FixtureRequest) -> DemandStores:
    table = _backend(request)
    if table is None:
        jobs, cluster = MemoryJobStore(), MemoryClusterStore()
        return DemandStores(jobs=jobs, cluster=cluster, demand=MemoryDemandStore(jobs, cluster))
    return DemandStores(jobs=DynamoJobStore(table), cluster=DynamoClusterStore(table), demand=DynamoDemandStore(table))
