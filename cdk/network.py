"""The workers' network: a VPC of public subnets, no NAT gateway, flow logs on.

Cheap and closed: workers get public addresses for outbound traffic (image pulls, SQS, EC2 APIs)
without a NAT gateway's hourly cost, and nothing can reach them because their security group has no
inbound rule. DynamoDB traffic stays inside AWS through a free gateway endpoint. Shell access is SSM
Session Manager, not SSH.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk import constants


class ClusterNetwork(Construct):
    """``vpc`` and ``subnets`` (the public subnets workers launch into, one per zone)."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, zone: str | None = None) -> None:
        super().__init__(scope, construct_id)
        self.vpc = self._build_vpc(cluster_name, zone)
        self.subnets = self.vpc.public_subnets
        self.flow_logs = self._build_flow_logs()

    def _build_vpc(self, cluster_name: str, zone: str | None) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            vpc_name=f"shoal-{cluster_name}",
            ip_addresses=ec2.IpAddresses.cidr(constants.VPC_CIDR),
            # A cluster pinned to a zone gets one subnet there; otherwise the first zones of the region
            # (Fn::GetAZs at deploy time: naming more would need an AZ lookup, and synth must stay offline).
            availability_zones=[zone] if zone else None,
            max_azs=None if zone else constants.VPC_MAX_AZS,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="workers", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=constants.SUBNET_CIDR_MASK
                )
            ],
            # True would add a custom resource (a Lambda) that moto's CloudFormation cannot run; the
            # workers use their own security group, never the default one.
            restrict_default_security_group=False,
        )
        vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        return vpc

    def _build_flow_logs(self) -> ec2.FlowLog:
        log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=constants.LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        return self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,  # nothing may reach a worker: rejects are the signal
        )
