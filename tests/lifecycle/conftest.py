"""The synthesized LaunchCluster/TeardownCluster definitions, executed by moto's Step Functions.

The definitions are taken from the CDK template (the same synthesis as tests/cdk), with their
references resolved to resources created in moto. moto runs the Amazon States Language for real
(``execute_state_machine``); its Lambda tasks reach the real ``functions.lifecycle_step`` handler
in-process; its direct SDK integrations (DynamoDB, EventBridge, EC2) hit moto. A small thread plays
the agents: it heartbeats every node that has not reported yet.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)

from functions import lifecycle_step
from shared.adapters import aws
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.services.environment import FunctionEnvironment
from tests.cdk.conftest import CLUSTER, NODE_TYPES, REGION, Synthesized, synthesized  # noqa: F401 - the fixture

TABLE = "shoal-lifecycle-state"
STATIC_NODES = (1, 2, 0)  # three static nodes: one of the spot class, two m5.2xlarge
ACCOUNT = "123456789012"


@dataclass
class LifecycleCloud:
    sfn: Any
    ec2: Any
    events: Any
    nodes: DynamoNodeStore
    table: StateTable
    launch_arn: str
    teardown_arn: str
    rule_names: list[str]
    agents_silent: set[str] = field(default_factory=set)  # instance ids whose agent never reports

    def run(self, machine_arn: str, payload: dict[str, Any], *, timeout: float = 90.0) -> dict[str, Any]:
        execution = self.sfn.start_execution(
            stateMachineArn=machine_arn, name=f"test-{uuid.uuid4().hex[:12]}", input=json.dumps(payload)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            description = self.sfn.describe_execution(executionArn=execution)
            if description["status"] != "RUNNING":
                return dict(description)
            time.sleep(0.05)
        raise AssertionError(f"execution {execution} still running after {timeout} s")

    def states_entered(self, execution_arn: str) -> list[str]:
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]

    def tagged_instances(self) -> list[tuple[str, str]]:
        reservations = self.ec2.describe_instances(Filters=[{"Name": "tag:shoal:cluster", "Values": [CLUSTER]}])
        return [
            (i["InstanceId"], i["State"]["Name"])
            for r in reservations["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ]

    def status(self) -> dict[str, Any]:
        item = self.table.get({"pk": {"S": "CLUSTER"}, "sk": {"S": "STATUS"}}) or {}
        return {k: next(iter(v.values())) for k, v in item.items()}

    def rules_enabled(self) -> list[bool]:
        return [self.events.describe_rule(Name=name)["State"] == "ENABLED" for name in self.rule_names]


def _resolve(value: Any, refs: dict[str, str]) -> Any:
    """A CloudFormation value with Ref/Fn::GetAtt/Fn::Join, resolved against resources made in moto."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_resolve(part, refs)) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return refs[value["Ref"]]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return refs[f"{logical_id}.{attribute}"]
    return value


def _route_lambda_to_the_real_handler() -> Any:
    original = LambdaSimpleBackend.invoke

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body or "{}")
        try:
            result = lifecycle_step.lambda_handler(event, _Context())
        except Exception as error:  # what Lambda does with an unhandled exception
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    return original


class _Context:
    function_name = "shoal-lifecycle-step"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:shoal-lifecycle-step"
    aws_request_id = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def cloud(synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch) -> Iterator[LifecycleCloud]:  # noqa: F811
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "shoal",
    }.items():
        monkeypatch.setenv(name, value)
    # moto hands the aws-sdk service name to boto3 as is; Step Functions says "eventbridge" where boto3 says "events".
    monkeypatch.setitem(StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES, "eventbridge", "events")  # type: ignore[attr-defined]
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):  # type: ignore[arg-type]
        original_invoke = _route_lambda_to_the_real_handler()
        try:
            yield from _build(synthesized, monkeypatch)
        finally:
            LambdaSimpleBackend.invoke = original_invoke  # type: ignore[method-assign]
            lifecycle_step._dependencies.cache_clear()


def _build(synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch) -> Iterator[LifecycleCloud]:  # noqa: F811
    resources = synthesized.template_json["Resources"]
    ec2, sqs, events, lam, iam, sfn = (
        aws.client(s, REGION) for s in ("ec2", "sqs", "events", "lambda", "iam", "stepfunctions")
    )
    dynamodb = aws.client("dynamodb", REGION)
    make_table(dynamodb, TABLE)
    queue = sqs.create_queue(QueueName="shoal-lifecycle-jobs")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="shoal-lifecycle-dlq")["QueueUrl"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template_id = ec2.create_launch_template(
        LaunchTemplateName="shoal-lifecycle", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplate"]["LaunchTemplateId"]
    role = iam.create_role(RoleName="shoal-lifecycle", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    refs: dict[str, str] = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    rule_names = []
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            refs[logical_id] = TABLE
            refs[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
        elif kind == "AWS::Events::Rule":
            name = f"rule-{logical_id}"[:64]
            events.put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="ENABLED")
            refs[logical_id] = name
            refs[f"{logical_id}.Arn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
            rule_names.append(name)
        elif kind == "AWS::Lambda::Function":
            created = lam.create_function(
                FunctionName=logical_id, Runtime="python3.12", Role=role, Handler="x.handler", Code={"ZipFile": b"x"}
            )
            refs[logical_id] = logical_id
            refs[f"{logical_id}.Arn"] = created["FunctionArn"]

    settings = ClusterSettings(
        name=CLUSTER, node_types=NODE_TYPES, region=REGION, static_nodes=STATIC_NODES, max_nodes=(10, 4, 4)
    ).validate()
    for key, value in (
        FunctionEnvironment(
            cluster=settings,
            table_name=TABLE,
            queue_url=queue,
            dead_letter_queue_url=dlq,
            launch_template_id=template_id,
        )
        .to_env()
        .items()
    ):
        monkeypatch.setenv(key, value)
    lifecycle_step._dependencies.cache_clear()

    arns = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        definition = _resolve(resource["Properties"]["DefinitionString"], refs)
        name = resource["Properties"]["StateMachineName"]
        arns[name.rsplit("-", 1)[-1]] = sfn.create_state_machine(name=name, definition=definition, roleArn=role)[
            "stateMachineArn"
        ]
    table = StateTable(TABLE, region=REGION)
    cloud = LifecycleCloud(
        sfn=sfn, ec2=ec2, events=events, nodes=DynamoNodeStore(table), table=table,
        launch_arn=arns["LaunchCluster"], teardown_arn=arns["TeardownCluster"], rule_names=rule_names,
    )  # fmt: skip
    stop = threading.Event()
    agents = threading.Thread(target=_play_agents, args=(cloud, stop), daemon=True)
    agents.start()
    try:
        yield cloud
    finally:
        stop.set()
        agents.join(timeout=5)


def _play_agents(cloud: LifecycleCloud, stop: threading.Event) -> None:
    """Every node whose agent has not reported gets a first heartbeat, as a starting appliance would send."""
    free = Resources(cores=8, memory=30 * 2**30, disk=40 * 2**30)
    while not stop.wait(0.05):
        try:
            for node in cloud.nodes.list_nodes():
                if node.heartbeat_at is None and node.instance_id not in cloud.agents_silent:
                    cloud.nodes.heartbeat(node.instance_id, free=free, running_jobs={}, now=time.time())
        except Exception:
            continue
