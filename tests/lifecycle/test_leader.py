"""The leader (launch-cluster --leaderNodeType) under the real LaunchCluster/TeardownCluster definitions on moto."""

from __future__ import annotations

from shared.adapters.ec2_fleet import Ec2Fleet
from shared.adapters.leader import Ec2Leader
from tests.cdk.conftest import CLUSTER, REGION
from tests.lifecycle.conftest import LifecycleCloud
from tests.lifecycle.test_lifecycle import launch, teardown


def _leader_template(cloud: LifecycleCloud) -> str:
    image = cloud.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    created = cloud.ec2.create_launch_template(LaunchTemplateName="shoal-leader", LaunchTemplateData={"ImageId": image})
    return str(created["LaunchTemplate"]["LaunchTemplateId"])


def test_the_leader_is_not_a_worker_and_teardown_leaves_nothing(cloud: LifecycleCloud) -> None:
    # GIVEN a launched cluster with its 3 static workers
    assert launch(cloud)["status"] == "SUCCEEDED"
    workers = {instance_id for instance_id, _ in cloud.tagged_instances()}
    # WHEN launch-cluster --leaderNodeType starts the leader (twice: the second finds the first)
    leaders = Ec2Leader(REGION, client=cloud.ec2)
    template = _leader_template(cloud)
    leader = leaders.launch(CLUSTER, launch_template_id=template, instance_type="t3.medium", subnet_id=None)
    again = leaders.launch(CLUSTER, launch_template_id=template, instance_type="t3.medium", subnet_id=None)
    # THEN one leader runs, tagged for the cluster, and is found by ssh-cluster's lookup
    assert again == leader and leaders.find(CLUSTER) == leader
    (described,) = cloud.ec2.describe_instances(InstanceIds=[leader])["Reservations"][0]["Instances"]
    assert described["InstanceType"] == "t3.medium"
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["shoal:cluster"] == CLUSTER and tags["shoal:role"] == "leader"
    # AND the scaler does not see it as a worker to adopt or scale in; the teardown's inventory does see it
    fleet = Ec2Fleet(cluster=CLUSTER, launch_template_id="lt-unused", region=REGION, client=cloud.ec2)
    assert {i.instance_id for i in fleet.describe()} == workers
    assert {i.instance_id for i in fleet.all_instances()} == workers | {leader}
    # WHEN TeardownCluster runs
    destroyed = teardown(cloud)
    # THEN the leader is terminated with the workers and nothing tagged for the cluster is left
    assert destroyed["status"] == "SUCCEEDED", destroyed
    assert cloud.tagged_instances() == []
    state = cloud.ec2.describe_instances(InstanceIds=[leader])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"
    assert leaders.find(CLUSTER) is None
    assert cloud.status()["status"] == "DESTROYED"
