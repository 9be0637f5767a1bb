"""The leader, as in Toil: one instance where ``toil-cwl-runner --batchSystem shoal`` runs, with submit rights only.

The stack holds its launch template, role and security group (they cost nothing); ``shoal launch-cluster NAME
--leaderNodeType t3.medium`` starts the instance (shared/adapters/leader.py) and ``destroy-cluster`` ends it
with the workers (it carries the cluster tag). Its role sends jobs to the queue and tracks them in the
table, announces demand on the default event bus, reads the code asset, and owns the Toil job store's bucket
(creating it and, with ``--clean``, deleting it), with no AWS key anywhere: Toil on the leader uses the
instance role, so no static key is saved in the job store for workers to inherit.

The leader runs Toil at the version of the workers' appliance (``toil[cwl,aws]==<installed Toil>``), in a
host venv next to Shoal's code from the asset: the Toil appliance's Python (3.10 for Toil 9.6.0) is older
than the plugin's (3.11+). A login shell (``shoal ssh-cluster NAME``) has it on PATH with the cluster's
``SHOAL_*`` variables set, so ``toil-cwl-runner --batchSystem shoal --jobStore aws:REGION:NAME`` just works.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from aws_cdk import Aws, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_dynamodb import ITable
from constructs import Construct

from cdk import node_boot
from cdk.job_store import acknowledge_job_store, job_store_statements
from cdk.launch_template import node_launch_template
from cdk.nag import acknowledge
from cdk.node_code import NodeCode, pinned
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB

LEADER_STORAGE = 50 * GiB  # Toil's leader default is 50 GiB too (--leaderStorage)
LEADER_REQUIREMENTS = ("boto3", "toil")  # toil gets its [cwl,aws] extras below
PROFILE_SCRIPT = "/etc/profile.d/shoal.sh"
SUBMIT_TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)


class Leader(Construct):
    """``launch_template``, ``role`` and ``security_group`` of the cluster's leader."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ClusterSettings,
        vpc: ec2.IVpc,
        queue: sqs.IQueue,
        table: ITable,
        code: NodeCode,
    ) -> None:
        super().__init__(scope, construct_id)
        name = settings.name
        self._settings = settings
        self._code = code
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            security_group_name=f"shoal-{name}-leader",
            description=f"Shoal cluster {name} leader: no inbound traffic (shell through SSM); outbound for AWS APIs",
            allow_all_outbound=True,
        )
        self.role = self._build_role(name, queue, table)
        self.launch_template = node_launch_template(
            self,
            name=f"shoal-{name}-leader",
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            role=self.role,
            security_group=self.security_group,
            user_data=self._build_user_data(queue, table),
            storage=LEADER_STORAGE,
            hop_limit=1,  # Toil runs on the host; no container needs the metadata service
        )

    def _build_role(self, name: str, queue: sqs.IQueue, table: ITable) -> iam.Role:
        bucket = self._settings.job_store_bucket_name
        statements = [
            iam.PolicyStatement(sid="SubmitJobs", actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
            iam.PolicyStatement(sid="TrackJobs", actions=list(SUBMIT_TABLE_ACTIONS), resources=[table.table_arn]),
            iam.PolicyStatement(
                sid="AnnounceDemand",
                actions=["events:PutEvents"],
                resources=[f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:event-bus/default"],
            ),
            *job_store_statements(bucket, manage=True),
            self._code.read_statement(),
        ]
        role = iam.Role(
            self,
            "Role",
            description=f"Shoal cluster {name} leader: submit and track jobs, own the Toil job store, SSM shell",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
            inline_policies={"leader": iam.PolicyDocument(statements=statements)},
        )
        acknowledge_job_store(role, bucket)
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            "Shell access to the leader is SSM Session Manager (no inbound ports); AWS maintains the exact "
            "ssm/ssmmessages/ec2messages actions it needs in this managed policy.",
        )
        return role

    def environment(self, queue: sqs.IQueue, table: ITable) -> Mapping[str, str]:
        """What a login shell on the leader exports: the plugin needs no other flag than --batchSystem shoal."""
        region = Stack.of(self).region
        return {
            "SHOAL_CLUSTER_NAME": self._settings.name,
            "SHOAL_TABLE_NAME": table.table_name,
            "SHOAL_QUEUE_URL": queue.queue_url,
            "SHOAL_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "PYTHONPATH": node_boot.AGENT_DIR,  # the plugin's shim and code, where Toil's loader finds them
            # The image the workers run, so Toil's own checks name the same one.
            **({"TOIL_APPLIANCE_SELF": self._settings.appliance_image} if self._settings.appliance_image else {}),
        }

    def _build_user_data(self, queue: sqs.IQueue, table: ITable) -> ec2.UserData:
        region = Stack.of(self).region
        environment = self.environment(queue, table)
        toil = pinned("toil").replace("toil==", "toil[cwl,aws]==")
        exports = "\n".join(f"export {key}={shlex.quote(value)}" for key, value in environment.items())
        profile = f"{exports}\nexport PATH={node_boot.VENV}/bin:$PATH\n"
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            *node_boot.preamble(),
            *node_boot.install_packages(docker=False),
            *node_boot.python_runtime([pinned("boto3"), toil]),
            *node_boot.download_agent(self._code.bucket_name, self._code.object_key, region),
            *node_boot.unpack_agent(),
            *node_boot.write_file(PROFILE_SCRIPT, profile),
            # Toil's plugin loader finds the shim on PYTHONPATH: prove it before anyone logs in.
            f"sh -c '. {PROFILE_SCRIPT} && toil-cwl-runner --help' > /tmp/toil-help",
            "grep -q shoalCluster /tmp/toil-help",
        )
        return user_data
