"""The workers' network, by the ``worker_network`` setting; flow logs on in every form.

- ``public`` (default, cheapest): public subnets; workers get public addresses for outbound traffic
  (image pulls, SQS, EC2 APIs) without a NAT gateway's hourly cost, and nothing can reach them because
  their security group has no inbound rule.
- ``nat``: private subnets whose default route is one NAT gateway in a public subnet: no worker has a
  public address; outbound internet (any registry, any package mirror) goes through the NAT.
- ``endpoints``: isolated private subnets with interface endpoints for exactly the AWS services a worker
  calls (SQS, STS, SSM and Session Manager, ECR, CloudWatch Logs): no internet at all, so the appliance
  comes from ECR (Toil's quay.io image through a pull-through cache rule, cdk/workers.py) and boto3 from a
  stack asset (cdk/node_code.py); tests/cdk/test_worker_reach.py checks every host the boot contacts.

DynamoDB and S3 are gateway endpoints (free) in every form. docs/deploy.md prices each form.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk import constants


class ClusterNetwork(Construct):
    """``vpc`` and ``subnets`` (the public subnets workers launch into, one per zone)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        zone: str | None = None,
        worker_network: str = "public",
    ) -> None:
        super().__init__(scope, construct_id)
        self.worker_network = worker_network
        self.vpc = self._build_vpc(cluster_name, zone)
        self.subnets = self.vpc.public_subnets if worker_network == "public" else self._private_subnets()
        self.endpoints = self._build_interface_endpoints() if worker_network == "endpoints" else {}
        self.flow_logs = self._build_flow_logs()

    def _private_subnets(self) -> list[ec2.ISubnet]:
        return list(self.vpc.private_subnets if self.worker_network == "nat" else self.vpc.isolated_subnets)

    def _subnet_configuration(self) -> list[ec2.SubnetConfiguration]:
        mask = constants.SUBNET_CIDR_MASK
        public = ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=mask)
        if self.worker_network == "public":
            return [ec2.SubnetConfiguration(name="workers", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=mask)]
        if self.worker_network == "nat":  # the NAT gateway lives in a public subnet; workers never do
            return [public, ec2.SubnetConfiguration(name="workers", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                                    cidr_mask=mask)]  # fmt: skip
        return [ec2.SubnetConfiguration(name="workers", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=mask)]

    def _build_interface_endpoints(self) -> dict[str, ec2.InterfaceVpcEndpoint]:
        subnets = ec2.SubnetSelection(subnets=self.subnets)
        # One group for every endpoint: HTTPS from inside the VPC only (the literal CIDR, so cdk-nag can read it).
        group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Shoal VPC endpoints: HTTPS from the VPC of the cluster",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(ec2.Peer.ipv4(constants.VPC_CIDR), ec2.Port.tcp(443), "AWS API calls from workers")
        return {
            service: self.vpc.add_interface_endpoint(
                "".join(part.capitalize() for part in service.split(".")),
                service=ec2.InterfaceVpcEndpointAwsService(service),
                subnets=subnets,
                private_dns_enabled=True,  # the SDKs' default endpoint names resolve to the endpoint
                security_groups=[group],
                open=False,
            )
            for service in constants.INTERFACE_ENDPOINTS
        }

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
            nat_gateways=constants.NAT_GATEWAYS if self.worker_network == "nat" else 0,
            subnet_configuration=self._subnet_configuration(),
            # True would add a custom resource (a Lambda) that moto's CloudFormation cannot run; the
            # workers use their own security group, never the default one.
            restrict_default_security_group=False,
        )
        vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        if self.worker_network != "public":  # job data and ECR's image layers: free, and no NAT charge per GB
            vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
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
