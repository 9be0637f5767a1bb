"""launch-cluster --leaderNodeType, ssh-cluster to the leader, destroy-cluster ending it: moto, real state machines."""

from __future__ import annotations

import io
from typing import Any, NoReturn

import pytest

from shared.adapters import aws
from shared.adapters.leader import Ec2Leader
from shared.cli import cluster_access_cmd
from shared.cli.main import build_parser
from tests.cdk.conftest import CLUSTER, REGION, synthesized  # noqa: F401 - the fixture
from tests.cli.test_cluster_commands import FAST, empty_region, shoal, stack_template  # noqa: F401 - fixture
from tests.lifecycle.conftest import LifecycleCloud, cloud  # noqa: F401 - the fixture


class ExecCalledError(Exception):
    """Raised instead of replacing the test process."""


@pytest.fixture
def deployed_with_leader(cloud: LifecycleCloud) -> LifecycleCloud:  # noqa: F811
    # A stack whose outputs include the leader's launch template and subnet (as cdk/stack.py writes them)
    sqs = aws.client("sqs", REGION)
    image = cloud.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = cloud.ec2.create_launch_template(LaunchTemplateName="leader", LaunchTemplateData={"ImageId": image})
    subnet = cloud.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    outputs = {
        "ClusterName": CLUSTER,
        "QueueUrl": sqs.get_queue_url(QueueName="shoal-lifecycle-jobs")["QueueUrl"],
        "DeadLetterQueueUrl": sqs.get_queue_url(QueueName="shoal-lifecycle-dlq")["QueueUrl"],
        "TableName": cloud.table.name,
        "LaunchTemplateId": "lt-0123",
        "LaunchClusterStateMachineArn": cloud.launch_arn,
        "TeardownClusterStateMachineArn": cloud.teardown_arn,
        "LeaderLaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"],
        "LeaderSubnetId": subnet,
    }
    aws.client("cloudformation", REGION).create_stack(
        StackName=f"shoal-{CLUSTER}", TemplateBody=stack_template(outputs)
    )
    return cloud


def ssh(*argv: str) -> list[str]:
    args = build_parser().parse_args(["ssh-cluster", CLUSTER, "--region", REGION, *argv])
    execs: list[list[str]] = []

    def fake_exec(file: str, command: list[str]) -> NoReturn:
        execs.append(command)
        raise ExecCalledError

    with pytest.raises(ExecCalledError):
        cluster_access_cmd.run_ssh(args, io.StringIO(), io.StringIO(), exec_fn=fake_exec, which=lambda n: f"/bin/{n}")
    return execs[0]


def test_launch_with_a_leader_then_ssh_to_it_then_destroy_leaves_nothing(deployed_with_leader: LifecycleCloud) -> None:
    shoal_cloud = deployed_with_leader
    # WHEN launch-cluster runs with --leaderNodeType
    code, out, err = shoal("launch-cluster", CLUSTER, "--leaderNodeType", "t3.medium", *FAST)
    # THEN the cluster is up and its leader starts, in the stack's subnet, on that type
    assert code == 0, err
    leader = Ec2Leader(REGION).find(CLUSTER)
    assert leader is not None
    assert f"leader {leader} (t3.medium) is starting" in out
    (instance,) = shoal_cloud.ec2.describe_instances(InstanceIds=[leader])["Reservations"][0]["Instances"]
    assert instance["InstanceType"] == "t3.medium"
    assert instance["SubnetId"] == shoal_cloud.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    # WHEN ssh-cluster names no node
    argv = ssh()
    # THEN it opens a login shell (Toil and the plugin on PATH) on the leader through Session Manager
    assert argv == [
        "aws", "ssm", "start-session", "--target", leader, "--region", REGION,
        "--document-name", "AWS-StartInteractiveCommand", "--parameters", '{"command":["bash -l"]}',
    ]  # fmt: skip
    # AND a node named Toil style (--node) is a worker, as before
    worker = ssh("--node", "0")
    assert worker[4] != leader and "--document-name" not in worker
    # WHEN launch-cluster runs again: the running leader is kept, not doubled
    code, _, err = shoal("launch-cluster", CLUSTER, "--leaderNodeType", "t3.medium", *FAST)
    assert code == 0, err
    leaders = shoal_cloud.ec2.describe_instances(
        Filters=[
            {"Name": "tag:shoal:role", "Values": ["leader"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    assert [i["InstanceId"] for r in leaders for i in r["Instances"]] == [leader]
    # WHEN destroy-cluster runs
    code, _, err = shoal("destroy-cluster", CLUSTER, "--force", *FAST)
    # THEN the leader is gone with the workers and nothing tagged for the cluster is left
    assert code == 0, err
    assert Ec2Leader(REGION).find(CLUSTER) is None
    assert shoal_cloud.tagged_instances() == []


def test_a_leader_type_not_in_the_catalog_exits_2_before_aws_is_asked(empty_region: Any) -> None:  # noqa: F811
    code, out, err = shoal("launch-cluster", "genomics", "--leaderNodeType", "t3.mediun", "--region", REGION)
    assert code == 2, out
    assert err == "shoal launch-cluster: --leaderNodeType: unknown instance type 't3.mediun'; did you mean t3.medium?\n"
