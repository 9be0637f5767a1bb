"""The launch template every Shoal node (the leader and the workers) boots from, built one way.

IMDSv2 only, an encrypted gp3 root volume deleted with the instance, and a node that powers itself off
is terminated: a stopped instance would still cost its volume.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk import constants
from shared.domain.catalog import volume_gib


def node_launch_template(
    scope: Construct,
    *,
    name: str,
    machine_image: ec2.IMachineImage,
    role: iam.IRole,
    security_group: ec2.ISecurityGroup,
    user_data: ec2.UserData,
    storage: int,
    hop_limit: int,
) -> ec2.LaunchTemplate:
    """``scope``'s ``LaunchTemplate`` named ``name``: a root volume of ``storage`` bytes (rounded up to GiB),
    ``hop_limit`` IMDS hops (1: only the host reaches the metadata service)."""
    return ec2.LaunchTemplate(
        scope,
        "LaunchTemplate",
        launch_template_name=name,
        machine_image=machine_image,
        role=role,
        security_group=security_group,
        user_data=user_data,
        require_imdsv2=True,
        http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
        http_endpoint=True,
        http_put_response_hop_limit=hop_limit,
        block_devices=[
            ec2.BlockDevice(
                device_name=constants.ROOT_DEVICE,
                volume=ec2.BlockDeviceVolume.ebs(
                    volume_gib(storage),
                    encrypted=True,
                    volume_type=ec2.EbsDeviceVolumeType.GP3,
                    delete_on_termination=True,
                ),
            )
        ],
        instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
    )
