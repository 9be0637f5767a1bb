"""Workers: IMDSv2, encrypted storage, nothing inbound, tagged at launch, and user data that runs the agent."""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from cdk.node_code import NodeCode
from cdk.staging import StagingBucket
from cdk.workers import WorkerFleet
from shared.adapters.ec2_fleet import root_block_device
from shared.appliance import toil_image_defaults
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB
from shared.worker.config import WorkerConfig, WorkerConfigError
from tests.cdk.conftest import CLUSTER, NODE_TYPES, Synthesized


def _launch_template_data(s: Synthesized) -> dict[str, Any]:
    template = s.resources("AWS::EC2::LaunchTemplate")[
        s.stack.get_logical_id(s.stack.workers.launch_template.node.default_child)
    ]  # type: ignore[arg-type]
    data: dict[str, Any] = template["Properties"]["LaunchTemplateData"]
    return data


def _user_data(s: Synthesized) -> str:
    """The user data script with each CloudFormation reference shown as <Ref:LogicalId>."""
    parts = _launch_template_data(s)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(_shown(p) for p in parts)


def _shown(part: Any) -> str:
    if isinstance(part, str):
        return part
    if "Ref" in part:
        return f"<Ref:{part['Ref']}>"
    if "Fn::GetAtt" in part:
        return f"<GetAtt:{'.'.join(part['Fn::GetAtt'])}>"
    return f"<{json.dumps(part, sort_keys=True)}>"


def test_workers_require_imdsv2_that_no_container_can_reach(synthesized: Synthesized) -> None:
    # A hop limit of 1: the token's reply cannot cross into a job container (the agent is on the host).
    assert _launch_template_data(synthesized)["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
    }


def test_the_root_volume_is_encrypted_gp3_of_node_storage(synthesized: Synthesized) -> None:
    assert _launch_template_data(synthesized)["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 64, "VolumeType": "gp3"},
        }
    ]


def test_a_launch_that_sizes_the_root_volume_asks_for_the_templates_volume_resized(synthesized: Synthesized) -> None:
    # The fleet adapter overrides the root device for a larger node: same device, type, encryption, only the size.
    assert _launch_template_data(synthesized)["BlockDeviceMappings"] == [root_block_device(64 * GiB)]


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


def test_user_data_installs_the_agent_from_the_code_asset_and_pulls_the_toil_appliance(
    synthesized: Synthesized,
) -> None:
    script = _user_data(synthesized)
    code = synthesized.stack.code.asset
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert "retry dnf install -y python3.11 python3.11-pip amazon-cloudwatch-agent docker" in script
    assert "systemctl enable --now docker" in script
    # the agent's code is the stack's own asset (no registry of ours), and its one dependency is pinned
    bucket = synthesized.resolve(code.s3_bucket_name)
    assert f"s3://{_shown(bucket)}/{code.s3_object_key} /opt/shoal/agent.zip" in script
    assert f"pip install --quiet --disable-pip-version-check boto3=={metadata.version('boto3')}" in script
    # jobs run in Toil's own appliance, tagged with the installed Toil's version
    image = f"quay.io/ucsc_cgl/toil:{toil_image_defaults().tag}"
    assert f"retry docker pull {image}" in script
    assert f"SHOAL_JOB_IMAGE={image}" in script
    assert "X-aws-ec2-metadata-token" in script  # IMDSv2 from the host
    assert "ecr get-login-password" not in script  # a public registry needs no login
    assert "systemctl enable --now shoal-agent.service" in script.splitlines()[-1]


def test_jobs_reach_neither_the_metadata_service_nor_the_docker_socket(synthesized: Synthesized) -> None:
    script = _user_data(synthesized)
    # the job network drops traffic to IMDS (v4, and v6 where there is IPv6)
    assert "iptables -I DOCKER-USER -i shoaljobs -d 169.254.169.254 -j DROP" in script
    assert "ip6tables -I DOCKER-USER -i shoaljobs -d fd00:ec2::254 -j DROP" in script
    assert "SHOAL_JOB_NETWORK=shoal-jobs" in script
    # no socket is handed to anything, and nothing runs with the host's network
    assert "docker.sock" not in script and "--network host" not in script
    assert "SHOAL_JOBS_MAY_REACH" not in script
    # jobs get the job role's credentials from a file the host refreshes
    job_role = synthesized.resolve(synthesized.stack.workers.job_role.role.role_arn)
    assert f"--role-arn {_shown(job_role)} " in script
    assert "SHOAL_JOB_CREDENTIALS=/run/shoal/job-credentials" in script
    assert "credential_process = cat /run/shoal/job-credentials/credentials.json" in script


def test_user_data_gives_the_agent_every_variable_it_requires(synthesized: Synthesized) -> None:
    # GIVEN the lines the user data writes to the agent's environment file, references as placeholders
    script = _user_data(synthesized)
    environ = {}
    for line in script.splitlines():
        if line.startswith("echo ") and line.endswith(">> /etc/shoal/agent.env"):
            key, _, value = line.removeprefix("echo ").rsplit(" >> ", 1)[0].strip("'\"").partition("=")
            environ[key] = value or "x"
    # WHEN the worker reads its configuration from exactly these (IMDS off, as in a test)
    environ |= {"SHOAL_IMDS_URL": "off", "SHOAL_WORK_DIR": "/tmp/shoal-cdk-test-work", "SHOAL_NODE_ID": "i-1"}
    environ |= {"SHOAL_INSTANCE_TYPE": "m5.2xlarge", "SHOAL_MARKET": "on-demand"}  # from IMDS on a node
    # THEN nothing it needs is missing
    try:
        config = WorkerConfig.from_env(environ)
    except WorkerConfigError as error:  # pragma: no cover - the message names the variable
        pytest.fail(str(error))
    assert config.region == "us-east-1"
    for name in ("SHOAL_QUEUE_URL", "SHOAL_DLQ_URL", "SHOAL_TABLE_NAME", "AWS_REGION", "SHOAL_JOB_IMAGE"):
        assert name in environ
    assert config.agent.max_preemptions == 2  # the cluster's setting, for the reclaims the agent counts
    # AND the cluster's node types: an on-demand m5.2xlarge leaves a young small preemptible job to spot c5
    assert environ["SHOAL_NODE_TYPES"] == NODE_TYPES
    cost = config.agent.cheaper_first
    assert cost is not None and cost.leave(Resources(cores=1, memory=GiB, disk=GiB), True, waited=0.0) is not None


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
        code=NodeCode(stack, "Code"),
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
