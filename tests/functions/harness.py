"""The cluster the handler tests drive, and the JSON event fixtures they send.

The handlers run as Lambda runs them (``lambda_handler(event, context)``) with JSON event fixtures from
``tests/events/``, a tiny fake context and a simulated clock. ``Cluster`` plays the other actors:
the submitter, the worker agents (receive, start, heartbeat, finish) and EC2's own events.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from functions import evaluate_scaling, on_instance_event
from shared.adapters import aws
from shared.adapters.ec2_fleet import CLUSTER_TAG
from shared.adapters.events import EventBridgeDemandEvents
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.cli.main import build_parser
from shared.domain.cluster_state import DemandCount, JobStatus, NodeRecord, NodeState
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.services.environment import FunctionEnvironment
from shared.services.job_message import decode_job_message
from shared.services.submit import submit_jobs

REGION = "us-west-2"
EVENTS = Path(__file__).resolve().parents[1] / "events"
START = 1_795_521_600.0  # 2026-11-24T12:00:00Z
GiB = 2**30
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,c5.4xlarge,m5.2xlarge,r5.2xlarge"


def load_event(name: str, *, detail: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A fixture from tests/events/, with a fresh id unless one is given and ``detail`` keys replaced."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    event["id"] = fields.pop("id", str(uuid.uuid4()))
    event.update(fields)
    if detail:
        event["detail"] = {**event["detail"], **detail}
    return event


def sqs_batch(*bodies: str) -> dict[str, Any]:
    template = load_event("sqs_batch")["Records"][0]
    return {"Records": [{**template, "messageId": f"msg-{n}", "body": body} for n, body in enumerate(bodies)]}


@dataclass
class FakeContext:
    function_name: str = "shoal-test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-west-2:123456789012:function:shoal-test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def shape(cores: float, memory_gib: float, wall: float, *, preemptible: bool = False) -> Shape:
    return Shape(
        resources=Resources(cores=cores, memory=int(memory_gib * GiB), disk=2 * GiB),
        wall_time=wall,
        preemptible=preemptible,
    )


FOUR_SHAPES = {  # 500 jobs of 4 shapes
    shape(1, 2, 600, preemptible=True): 200,
    shape(4, 16, 1800): 100,
    shape(2, 28, 1200, preemptible=True): 100,
    shape(8, 30, 3600): 100,
}


class Cluster:
    """The cluster under test and the actors around the control plane."""

    def __init__(self, settings: ClusterSettings, env: FunctionEnvironment, clock: Clock) -> None:
        self.settings, self.env, self.clock = settings, env, clock
        self.ec2 = aws.client("ec2", REGION)
        self.table = StateTable(env.table_name, region=REGION)
        self.jobs = DynamoJobStore(self.table)
        self.nodes = DynamoNodeStore(self.table)
        self.queue = SqsJobQueue(env.queue_url, dead_letter_queue_url=env.dead_letter_queue_url, region=REGION)
        self.submitted: list[Job] = []

    # --- the functions ------------------------------------------------------------------------

    def scale(self, name: str = "scheduled_event", **fields: Any) -> dict[str, Any]:
        return self.invoke(evaluate_scaling, load_event(name, **fields))

    def instance_event(self, name: str, instance_id: str, **detail: Any) -> dict[str, Any]:
        event = load_event(name, detail={"instance-id": instance_id, **detail})
        return self.invoke(on_instance_event, event)

    def shoal(self, *argv: str) -> tuple[int, str, str]:
        """The ``shoal`` command line, run in-process against this cluster (``deploy_stack`` first)."""
        args = build_parser().parse_args(list(argv))
        out, err = io.StringIO(), io.StringIO()
        code = args.run(args, out, err)
        return code, out.getvalue(), err.getvalue()

    def deploy_stack(self) -> None:
        """What ``cdk deploy`` leaves for the CLI to find: the stack's outputs (and its two state machines)."""
        sfn = aws.client("stepfunctions", REGION)
        machines = {
            name: sfn.create_state_machine(
                name=f"shoal-{self.settings.name}-{name}",
                definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
                roleArn="arn:aws:iam::123456789012:role/shoal-test",
            )["stateMachineArn"]
            for name in ("LaunchCluster", "TeardownCluster")
        }
        outputs = {
            "ClusterName": self.settings.name,
            "QueueUrl": self.env.queue_url,
            "DeadLetterQueueUrl": self.env.dead_letter_queue_url,
            "TableName": self.env.table_name,
            "LaunchTemplateId": self.env.launch_template_id,
            "LaunchClusterStateMachineArn": machines["LaunchCluster"],
            "TeardownClusterStateMachineArn": machines["TeardownCluster"],
        }
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "placeholder"}}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        aws.client("cloudformation", REGION).create_stack(
            StackName=f"shoal-{self.settings.name}", TemplateBody=json.dumps(template)
        )

    @staticmethod
    def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
        handler: Callable[[dict[str, Any], FakeContext], dict[str, Any]] = module.lambda_handler
        return handler(event, FakeContext(function_name=module.FUNCTION))

    # --- the submitter and the workers ------------------------------------------------------------

    def submit(self, demand: dict[Shape, int], *, prefix: str = "job") -> list[Job]:
        jobs = [
            Job(id=f"{prefix}-{n}-{k:05d}", shape=s, command="true")
            for n, (s, count) in enumerate(demand.items())
            for k in range(count)
        ]
        submit_jobs(
            jobs,
            store=self.jobs,
            queue=self.queue,
            events=EventBridgeDemandEvents(region=REGION),
            cluster=self.settings.name,
            now=self.clock.now,
        )
        self.submitted += jobs
        return jobs

    def run_jobs_on(self, instance_id: str, count: int) -> dict[str, str]:
        """A worker on ``instance_id`` takes ``count`` jobs from the queue and reports them running."""
        running: dict[str, str] = {}
        while len(running) < count:
            messages = self.queue.receive(
                max_messages=min(10, count - len(running)), wait_seconds=0, visibility_timeout=900
            )
            assert messages, "the queue ran dry"
            for message in messages:
                job = decode_job_message(message.body)
                assert self.jobs.start_job(job, instance_id, self.clock.now) is not None
                running[job.id] = message.receipt_handle
        self.heartbeat(instance_id, running)
        return running

    def heartbeat(self, instance_id: str, running: dict[str, str] | None = None) -> None:
        """The agent's report, as one that has already learned whether its node drains (its last answer)."""
        node = self.nodes.get_node(instance_id)
        draining = node is not None and node.state is NodeState.DRAINING
        assert self.nodes.heartbeat(
            instance_id, free=Resources(), running_jobs=running or {}, now=self.clock.now, draining=draining
        )

    def finish_queued(self, keep: int = 0) -> None:
        """Every queued job but ``keep`` runs to completion somewhere (demand falls)."""
        queued = [j for j in self.submitted if (r := self.jobs.get_job(j.id)) and r.status is JobStatus.QUEUED]
        for job in queued[keep:]:
            attempt = self.jobs.start_job(job, "i-elsewhere", self.clock.now)
            assert attempt is not None
            assert self.jobs.finish_job(
                job, "i-elsewhere", attempt=attempt, exit_code=0, output_tail="", now=self.clock.now
            )

    # --- looking at the result --------------------------------------------------------------------

    def instances(self, *states: str) -> list[dict[str, Any]]:
        wanted = list(states or ("pending", "running"))
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.settings.name]},
                {"Name": "instance-state-name", "Values": wanted},
            ]
        )
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def fleet_by_offer(self, *states: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for instance in self.instances(*states):
            offer = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get("shoal:offer", "?")
            counts[offer] = counts.get(offer, 0) + 1
        return counts

    def node_states(self) -> dict[str, NodeState]:
        return {n.instance_id: n.state for n in self.nodes.list_nodes()}

    def demand(self) -> dict[Shape, DemandCount]:
        return self.jobs.demand()

    def add_static_node(self, offer_key: str, instance_type: str) -> str:
        """What launch-cluster does for a static worker: an instance tagged static, and its record."""
        response = self.ec2.run_instances(
            LaunchTemplate={"LaunchTemplateId": self.env.launch_template_id},
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": CLUSTER_TAG, "Value": self.settings.name},
                        {"Key": "shoal:offer", "Value": offer_key},
                        {"Key": "shoal:market", "Value": "on-demand"},
                        {"Key": "shoal:static", "Value": "true"},
                    ],
                }
            ],
        )
        instance_id = str(response["Instances"][0]["InstanceId"])
        record = NodeRecord(
            instance_id=instance_id,
            offer_key=offer_key,
            instance_type=instance_type,
            market="on-demand",
            state=NodeState.ACTIVE,
            static=True,  # type: ignore[arg-type]
            launched_at=self.clock.now,
            running_jobs=MappingProxyType({}),
        )
        self.nodes.put_node(replace(record))
        return instance_id
