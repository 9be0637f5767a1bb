"""The workers: launch template, instance role and profile, security group, log group and user data.

The scaler launches workers from this template with RunInstances (instance type, market and subnet per
launch). A worker is Amazon Linux 2023 (the public SSM parameter, resolved at deploy time), IMDSv2 only
with a hop limit of 1 (the agent runs on the host; job containers cannot get a token) unless the
``jobs_may_reach`` setting lets jobs reach the metadata service, an encrypted gp3 root volume of
``node_storage``, no inbound rule at all, and a role with only what the agent uses. Its user data
(cdk/node_boot.py) installs the agent from the stack's code asset and runs jobs in the Toil appliance.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_dynamodb import ITable
from constructs import Construct

from cdk import constants, node_boot
from cdk.job_store import JobRole
from cdk.launch_template import node_launch_template
from cdk.nag import acknowledge
from cdk.node_code import NodeCode, NodePackages, pinned
from cdk.staging import StagingBucket
from shared.appliance import parse_image_reference, pull_through_image
from shared.domain.settings import ClusterSettings

# A private ECR registry: ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]
_ECR_DOMAIN = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")

# Item-level DynamoDB actions. TransactWriteItems and the Powertools idempotency records are authorized
# through these; no table-level action (Scan, DescribeTable, DeleteTable, ...) is needed.
TABLE_ITEM_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
WORKER_QUEUE_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)
LOG_WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
AGENT_LOG_ACTIONS = ("logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")  # the CloudWatch agent
AGENT_REQUIREMENTS = ("boto3",)  # all the agent imports beyond the standard library (checked by test_node_boot)
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# A pull through a cache rule: the first pull creates the repository and imports the image from upstream.
PULL_THROUGH_ACTIONS = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
_ECR_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def pull_through_prefix(cluster_name: str) -> str:
    """The cluster's pull-through cache prefix (ECR: 2-30 characters, no doubled separators), else a hashed one."""
    prefix = constants.PULL_THROUGH_PREFIX.format(cluster=cluster_name)
    if len(prefix) <= 30 and _ECR_NAME.fullmatch(prefix):
        return prefix
    return constants.PULL_THROUGH_PREFIX.format(cluster=hashlib.sha256(cluster_name.encode()).hexdigest()[:12])


class WorkerFleet(Construct):
    """``launch_template`` (with ``image_id``), ``role``, ``security_group`` and ``log_group`` of the workers."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ClusterSettings,
        appliance_image: str,
        vpc: ec2.IVpc,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        table: ITable,
        staging: StagingBucket,
        code: NodeCode,
    ) -> None:
        super().__init__(scope, construct_id)
        name = settings.name
        self._settings = settings
        self._staging = staging
        self._code = code
        self._max_preemptions = settings.max_preemptions
        self.appliance_image = appliance_image
        # With no internet: the agent's Python packages from an asset, the appliance through an ECR cache of quay.io.
        offline = settings.worker_network == "endpoints"
        self.packages = NodePackages(self, "Packages", requirements=AGENT_REQUIREMENTS) if offline else None
        self._cached_repository: str | None = None
        self.cache_rule = self._cache_appliance(name) if offline else None
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/shoal/{name}/workers",
            retention=constants.LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            security_group_name=f"shoal-{name}-workers",
            description=f"Shoal cluster {name} workers: no inbound traffic; outbound for image pulls and AWS APIs",
            allow_all_outbound=True,
        )
        self.role = self._build_role(name, queue, dead_letter_queue, table)
        self.job_role = JobRole(
            self, "Jobs", cluster_name=name, bucket=settings.job_store_bucket_name, trusted=self.role
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ActAsJobRole", actions=["sts:AssumeRole"], resources=[self.job_role.role.role_arn])
        )
        self.allow_metadata = "metadata" in settings.jobs_may_reach
        machine_image = ec2.MachineImage.latest_amazon_linux2023()  # x86_64, like every catalog instance type
        # The AMI id the template launches: a deploy-time parameter read from the public SSM parameter.
        self.image_id = machine_image.get_image(self).image_id
        self.launch_template = node_launch_template(
            self,
            name=f"shoal-{name}-workers",
            machine_image=machine_image,
            role=self.role,
            security_group=self.security_group,
            user_data=self._build_user_data(queue, dead_letter_queue, table),
            storage=settings.node_storage,
            # 1: only the host reaches IMDS (a token's reply dies crossing into a container); 2 when jobs may.
            hop_limit=constants.IMDS_HOP_LIMIT if self.allow_metadata else 1,
        )

    def _cache_appliance(self, name: str) -> ecr.CfnPullThroughCacheRule | None:
        """An ECR pull-through cache rule for quay.io when the appliance is there; workers pull the cached name."""
        prefix = pull_through_prefix(name)
        registry = f"{Aws.ACCOUNT_ID}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}"
        upstream = constants.PULL_THROUGH_UPSTREAM
        cached = pull_through_image(self.appliance_image, upstream=upstream, registry=registry, prefix=prefix)
        if cached is None:
            return None  # already in ECR (the settings loader allows nothing else)
        self._cached_repository = f"{prefix}/{parse_image_reference(self.appliance_image).path}"
        self.appliance_image = cached
        return ecr.CfnPullThroughCacheRule(
            self,
            "ApplianceCache",
            ecr_repository_prefix=prefix,
            upstream_registry=constants.PULL_THROUGH_UPSTREAM_REGISTRY,
            upstream_registry_url=upstream,
        )

    # ---- role ----------------------------------------------------------------------------------------

    def _build_role(self, name: str, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue, table: ITable) -> iam.Role:
        statements = [
            iam.PolicyStatement(
                sid="TakeAndSettleJobs", actions=list(WORKER_QUEUE_ACTIONS), resources=[queue.queue_arn]
            ),
            iam.PolicyStatement(
                sid="DeadLetterJobs", actions=["sqs:SendMessage"], resources=[dead_letter_queue.queue_arn]
            ),
            iam.PolicyStatement(sid="ClusterState", actions=list(TABLE_ITEM_ACTIONS), resources=[table.table_arn]),
            iam.PolicyStatement(
                sid="WriteLogs", actions=list(AGENT_LOG_ACTIONS), resources=[self.log_group.log_group_arn]
            ),
            # rsync-cluster: the node copies between its disk and the cluster's staging prefix.
            iam.PolicyStatement(
                sid="StageFiles",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[self._staging.bucket.arn_for_objects(f"{self._staging.prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ListStagedFiles",
                actions=["s3:ListBucket"],
                resources=[self._staging.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self._staging.prefix}*"]}},
            ),
            self._code.read_statement(),
            *([self.packages.read_statement()] if self.packages else []),
            *self._image_pull_statements(),
        ]
        role = iam.Role(
            self,
            "Role",
            description=f"Shoal cluster {name} workers: the agent's queue, table and log access, SSM shell",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
            inline_policies={"agent": iam.PolicyDocument(statements=statements)},
        )
        bucket_arn = Stack.of(self).get_logical_id(self._staging.bucket.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{bucket_arn}.Arn>/{self._staging.prefix}*]",
            "rsync-cluster's copies get fresh names under the cluster's staging prefix; the node reads and "
            "writes only there.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            "Shell access to workers is SSM Session Manager (no inbound ports); AWS maintains the exact "
            "ssm/ssmmessages/ec2messages actions the agent needs in this managed policy.",
        )
        if self._ecr_repository() is not None:
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are "
                "limited to the appliance repository.",
            )
        return role

    @property
    def cached_repository(self) -> str | None:
        """The ECR repository the appliance's pull-through cache creates on the first pull, if there is a cache."""
        return self._cached_repository

    def _ecr_repository(self) -> tuple[str, str, str] | None:
        """(account, region, repository) when the appliance image is in a private ECR registry."""
        if self._cached_repository is not None:  # this account's registry, named by deploy-time tokens
            return Aws.ACCOUNT_ID, Aws.REGION, self._cached_repository
        reference = parse_image_reference(self.appliance_image)
        match = _ECR_DOMAIN.match(reference.domain or "")
        if match is None:
            return None
        return match["account"], match["region"], reference.path

    def _image_pull_statements(self) -> Sequence[iam.PolicyStatement]:
        repository = self._ecr_repository()
        if repository is None:
            return []  # a public registry: no AWS permission is involved
        account, region, path = repository
        pull_through = PULL_THROUGH_ACTIONS if self._cached_repository else ()
        return [
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="PullAppliance",
                actions=[*ECR_PULL_ACTIONS, *pull_through],
                resources=[f"arn:{Aws.PARTITION}:ecr:{region}:{account}:repository/{path}"],
            ),
        ]

    # ---- user data -----------------------------------------------------------------------------------

    def _build_user_data(self, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue, table: ITable) -> ec2.UserData:
        """Docker and Python, the agent from the code asset, the job network and credentials; then the agent."""
        region = Stack.of(self).region
        image = self.appliance_image
        work = constants.WORKER_WORK_DIR
        environment = {
            "SHOAL_QUEUE_URL": queue.queue_url,
            "SHOAL_DLQ_URL": dead_letter_queue.queue_url,
            "SHOAL_TABLE_NAME": table.table_name,
            "SHOAL_WORK_DIR": work,
            "SHOAL_MAX_PREEMPTIONS": str(self._max_preemptions),  # the agent's reclaims count against it
            # what every node type costs: an agent leaves young jobs to cheaper types (shared.domain.cheaper_first)
            "SHOAL_NODE_TYPES": self._settings.node_types,
            "SHOAL_NODE_STORAGE": str(self._settings.node_storage),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "SHOAL_JOB_IMAGE": image,
            "SHOAL_JOB_NETWORK": node_boot.JOB_NETWORK,
            "SHOAL_JOB_CREDENTIALS": node_boot.JOB_CREDENTIALS_DIR,
        }
        if self._settings.jobs_may_reach:
            environment["SHOAL_JOBS_MAY_REACH"] = self._settings.jobs_may_reach
        login: list[str] = []
        repository = self._ecr_repository()
        if repository is not None:
            registry = image.split("/", 1)[0]  # the ECR registry (with deploy-time tokens when pulled through)
            login = [
                f"aws ecr get-login-password --region {repository[1]} "
                f"| docker login --username AWS --password-stdin {shlex.quote(registry)}"
            ]
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            *node_boot.preamble(),
            *node_boot.install_packages(),
            *node_boot.instance_identity(),
            f"mkdir -p {work}",
            *self._python_runtime(region),
            *node_boot.download_agent(self._code.bucket_name, self._code.object_key, region),
            *node_boot.unpack_agent(),
            *node_boot.job_network(block_metadata=not self.allow_metadata),
            *node_boot.job_credentials(self.job_role.role.role_arn, region),
            *node_boot.log_shipping(self.log_group.log_group_name),
            *login,
            f"retry docker pull {shlex.quote(image)}  # the Toil appliance every job runs in",
            *node_boot.agent_service(environment, stop_seconds=constants.CONTAINER_STOP_TIMEOUT_SECONDS),
        )
        return user_data

    def _python_runtime(self, region: str) -> list[str]:
        """The agent's venv: from PyPI, or from the packages asset on a network without the internet."""
        if self.packages is None:
            return node_boot.python_runtime([pinned(p) for p in AGENT_REQUIREMENTS])
        asset = self.packages.asset
        return [
            *node_boot.download(asset.s3_bucket_name, asset.s3_object_key, region, node_boot.PACKAGES_ZIP),
            *node_boot.vendored_python_runtime(),
        ]
