"""Workers: IMDSv2, encrypted storage, nothing inbound, tagged at launch, and user data that runs the appliance."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from cdk.staging import StagingBucket
from cdk.workers import WorkerFleet
from shared.domain.settings import ClusterSettings
from shared.worker.config import WorkerConfig, WorkerConfigError
from tests.cdk.conftest import CLUSTER, Synthesized


def _launch_template_data(s: Synthesized) -> dict[str, Any]:
    (template,) = s.resources("AWS::EC2::LaunchTemplate").values()
    data: dict[str, Any] = template["Properties"]["LaunchTemplateData"]
    return data


def _user_data(s: Synthesized) -> str:
    """The user data script with each CloudFormation reference shown as <Ref:LogicalId>."""
    parts = _launch_template_data(s)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<Ref:{p['Ref']}>" for p in parts)


def test_workers_require_imdsv2_with_a_hop_for_the_container(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {"MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}}
            )
        },
    )


def test_the_root_volume_is_encrypted_gp3_of_node_storage(synthesized: Synthesized) -> None:
    assert _launch_template_data(synthesized)["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 64, "VolumeType": "gp3"},
        }
    ]


def test_the_image_is_amazon_linux_2023_from_the_public_ssm_parameter(synthesized: Synthesized) -> None:
    image = _launch_template_data(synthesized)["ImageId"]
    parameter = synthesized.template_json["Parameters"][image["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameter["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-ami-")
    assert parameter["Default"].endswith("-x86_64")


def test_launched_instances_and_volumes_carry_the_cluster_tag(synthesized: Synthesized) -> None:
    tag_specifications = _launch_template_data(synthesized)["TagSpecifications"]
    assert {spec["ResourceType"] for spec in tag_specifications} == {"instance", "volume"}
    for spec in tag_specifications:
        assert {"Key": "shoal:cluster", "Value": CLUSTER} in spec["Tags"]


def test_nothing_can_reach_a_worker(synthesized: Synthesized) -> None:
    # THEN no security group has an inbound rule, inline or as a separate resource
    synthesized.template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
    groups = synthesized.resources("AWS::EC2::SecurityGroup")
    assert groups
    for group in groups.values():
        assert "SecurityGroupIngress" not in group["Properties"]
    # AND the workers' group allows outbound traffic (image pulls, AWS APIs)
    synthesized.template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"SecurityGroupEgress": [Match.object_like({"CidrIp": "0.0.0.0/0", "IpProtocol": "-1"})]},
    )
    # AND the VPC logs rejected traffic
    synthesized.template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_a_worker_that_powers_itself_off_is_terminated(synthesized: Synthesized) -> None:
    assert _launch_template_data(synthesized)["InstanceInitiatedShutdownBehavior"] == "terminate"


def test_user_data_installs_docker_and_runs_the_default_appliance(synthesized: Synthesized) -> None:
    script = _user_data(synthesized)
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert "dnf install -y docker" in script
    assert "systemctl enable --now docker" in script
    assert script.rstrip().endswith(" ghcr.io/shoal-project/shoal-appliance:0.1.0")
    assert "--log-driver awslogs" in script
    assert "X-aws-ec2-metadata-token" in script  # IMDSv2 from the host, too
    assert "ecr get-login-password" not in script  # a public registry needs no login


def test_user_data_gives_the_agent_every_variable_it_requires(synthesized: Synthesized) -> None:
    # GIVEN the -e flags of the docker run line, references replaced by placeholder values
    script = _user_data(synthesized)
    run_line = next(line for line in script.splitlines() if line.startswith("docker run"))
    flags = run_line.split(" -e ")[1:]
    environ = {}
    for flag in flags:
        key, _, value = flag.split(" ")[0].partition("=")
        environ[key] = value.strip("'\"") or "x"
    # WHEN the worker reads its configuration from exactly these (IMDS off, as in a test)
    environ |= {"SHOAL_IMDS_URL": "off", "SHOAL_WORK_DIR": "/tmp/shoal-cdk-test-work"}
    # THEN nothing it needs is missing
    try:
        config = WorkerConfig.from_env(environ)
    except WorkerConfigError as error:  # pragma: no cover - the message names the variable
        pytest.fail(str(error))
    assert config.region == "us-east-1"
    for name in ("SHOAL_QUEUE_URL", "SHOAL_DLQ_URL", "SHOAL_TABLE_NAME", "SHOAL_NODE_ID", "AWS_REGION"):
        assert name in environ
    assert config.agent.max_preemptions == 2  # the cluster's setting, for the reclaims the agent counts


def test_an_ecr_appliance_gets_a_login_and_pull_rights_for_that_repository_only() -> None:
    # GIVEN the worker construct alone with an image in a private ECR repository
    app = App()
    stack = Stack(app, "Ecr", env={"region": "us-west-2"})
    image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/shoal-appliance:1.0"
    vpc = ec2.Vpc(stack, "Vpc", nat_gateways=0, restrict_default_security_group=False)
    table = dynamodb.Table(stack, "T", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING))
    WorkerFleet(
        stack,
        "Workers",
        settings=ClusterSettings.from_mapping({"name": "ecr", "node_types": "m5.large"}),
        appliance_image=image,
        vpc=vpc,
        queue=sqs.Queue(stack, "Q"),
        dead_letter_queue=sqs.Queue(stack, "D"),
        table=table,
        staging=StagingBucket(stack, "Staging", cluster_name="ecr"),
    )
    # WHEN it synthesizes
    template = Template.from_stack(stack)
    # THEN the role may log in to ECR and pull from that one repository
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "Policies": [
                {
                    "PolicyName": "agent",
                    "PolicyDocument": Match.object_like(
                        {
                            "Statement": Match.array_with(
                                [
                                    {
                                        "Sid": "EcrLogin",
                                        "Effect": "Allow",
                                        "Action": "ecr:GetAuthorizationToken",
                                        "Resource": "*",
                                    },
                                    {
                                        "Sid": "PullAppliance",
                                        "Effect": "Allow",
                                        "Action": [
                                            "ecr:BatchCheckLayerAvailability",
                                            "ecr:BatchGetImage",
                                            "ecr:GetDownloadUrlForLayer",
                                        ],
                                        "Resource": {
                                            "Fn::Join": [
                                                "",
                                                [
                                                    "arn:",
                                                    {"Ref": "AWS::Partition"},
                                                    ":ecr:us-west-2:123456789012:repository/team/shoal-appliance",
                                                ],
                                            ]
                                        },
                                    },
                                ]
                            )
                        }
                    ),
                }
            ]
        },
    )
    # AND the user data logs in to that registry before pulling
    user_data = json.dumps(template.find_resources("AWS::EC2::LaunchTemplate"))
    assert (
        "aws ecr get-login-password --region us-west-2 | docker login --username AWS --password-stdin "
        "123456789012.dkr.ecr.us-west-2.amazonaws.com" in user_data
    )
    assert f"retry docker pull {image}" in user_data
