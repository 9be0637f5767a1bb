"""The control plane's Lambda functions and the one role they share.

Code: the repository root as an asset, restricted to the handlers and the packages they import
(``LAMBDA_PACKAGES``: no local cloud, no in-memory twins). No Docker, no bundling: the Lambda runtime
has boto3, and Powertools with its extras comes from its public layer. Environment: exactly what
``FunctionEnvironment.to_env()`` produces from the same settings model the functions read back, plus
the Powertools names from ``shared.services.telemetry``.

The role is written out statement by statement and the functions get it immutable, so no grant can
widen it behind the tests' back. EC2 mutations are scoped by the cluster tag: launches must tag the instance and
its volumes with it, start/stop/terminate only touch instances that carry it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_dynamodb import ITable
from constructs import Construct

from cdk import constants
from cdk.guardrails import scaler_statements, teardown_state_machine_arn
from cdk.nag import acknowledge
from cdk.workers import LOG_WRITE_ACTIONS, TABLE_ITEM_ACTIONS
from shared.domain.quotas import GP3_QUOTA_CODE, QUOTA_CODES
from shared.domain.settings import ClusterSettings
from shared.services import telemetry
from shared.services.environment import FunctionEnvironment

REPO_ROOT = Path(__file__).resolve().parent.parent
# What runs in Lambda: the handlers and the shared packages they import. Not the local cloud (shared/local),
# the in-memory twins of the stores, the CLI, the agent or the appliance rule: they never run there.
# tests/cdk/test_functions.py imports the handlers from the asset alone, so a package missing here fails it.
LAMBDA_PACKAGES = (
    "functions",
    "shared/domain",
    "shared/formats",
    "shared/services",
    "shared/adapters",
    "shared/wiring",
)
LEFT_OUT_OF_LAMBDA = ("shared/adapters/memory_*.py",)  # the in-memory twins (tests, the local cloud)
# Glob patterns (CDK's ignore syntax, later ones win) that leave only those in the asset.
CODE_EXCLUDES = (
    "*",
    ".*",  # "*" does not match dotfiles (.git, .venv, caches)
    "!shared",
    "shared/*",
    "!shared/__init__.py",
    *(f"!{package}" for package in LAMBDA_PACKAGES),
    *(f"!{package}/**" for package in LAMBDA_PACKAGES),
    *LEFT_OUT_OF_LAMBDA,
    "**/__pycache__",
    "**/*.pyc",
)

# handler module in functions/ → what it does (the function's description)
FUNCTIONS: Mapping[str, str] = {
    "evaluate_scaling": "One scaling round (observe, decide, act, record) on the schedule, alarm or demand event.",
    "on_instance_event": "EC2 state changes, spot interruption warnings and rebalance recommendations.",
    "lifecycle_step": "The steps of LaunchCluster and TeardownCluster that need Shoal's code.",
}


class ControlPlaneFunctions(Construct):
    """``evaluate_scaling`` and ``on_instance_event`` (``functions`` by module name) and their ``role``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ClusterSettings,
        powertools_layer_version: int,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        table: ITable,
        launch_template: ec2.LaunchTemplate,
        worker_role: iam.IRole,
        worker_security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet],
        machine_image_id: str,
        scaler_reserved_concurrency: int = constants.SCALER_RESERVED_CONCURRENCY,
        cached_repository: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._reserved = scaler_reserved_concurrency
        # Asynchronous invocations (EventBridge's) that fail after Lambda's retries, or grow too old, land here
        # with the event and the error, instead of vanishing; an alarm (observability) watches its depth.
        self.failure_queue = failure_queue(
            self, "FailedInvocations", f"shoal-{settings.name}-failed-invocations", "the control plane's Lambda"
        )
        self.environment = FunctionEnvironment(
            cluster=settings,
            table_name=table.table_name,
            queue_url=queue.queue_url,
            dead_letter_queue_url=dead_letter_queue.queue_url,
            launch_template_id=str(launch_template.launch_template_id),
            subnet_ids=tuple(subnet.subnet_id for subnet in subnets),
            teardown_state_machine_arn=teardown_state_machine_arn(Stack.of(self), settings.name),
            cached_repository=cached_repository or "",
        ).to_env() | {
            "POWERTOOLS_SERVICE_NAME": telemetry.SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": telemetry.METRICS_NAMESPACE,
        }
        self.log_groups = {
            module: logs.LogGroup(
                self,
                f"{_camel(module)}Logs",
                log_group_name=f"/shoal/{settings.name}/{module.replace('_', '-')}",
                retention=constants.LOG_RETENTION,
                removal_policy=RemovalPolicy.DESTROY,
            )
            for module in FUNCTIONS
        }
        self.role = self._build_role(
            queue=queue,
            table=table,
            launch_template=launch_template,
            worker_role=worker_role,
            worker_security_group=worker_security_group,
            subnets=subnets,
            machine_image_id=machine_image_id,
            cached_repository=cached_repository,
        )
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            Stack.of(self).format_arn(
                service="lambda",
                account=constants.POWERTOOLS_LAYER_ACCOUNT,
                resource="layer",
                resource_name=f"{constants.POWERTOOLS_LAYER_NAME}:{powertools_layer_version}",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        )
        # Immutable to CDK: no grant or feature (tracing, log groups) can add statements behind the tests' back.
        self._function_role = self.role.without_policy_updates()
        code = lambda_.Code.from_asset(str(REPO_ROOT), exclude=list(CODE_EXCLUDES))
        self.functions = {module: self._build_function(module, code, layer) for module in FUNCTIONS}

    @property
    def evaluate_scaling(self) -> lambda_.Function:
        return self.functions["evaluate_scaling"]

    @property
    def on_instance_event(self) -> lambda_.Function:
        return self.functions["on_instance_event"]

    @property
    def lifecycle_step(self) -> lambda_.Function:
        return self.functions["lifecycle_step"]

    def _build_function(self, module: str, code: lambda_.Code, layer: lambda_.ILayerVersion) -> lambda_.Function:
        function = lambda_.Function(
            self,
            _camel(module),
            function_name=f"shoal-{self._settings.name}-{module.replace('_', '-')}",
            description=f"Shoal cluster {self._settings.name}: {FUNCTIONS[module]}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=f"functions.{module}.lambda_handler",
            code=code,
            layers=[layer],
            role=self._function_role,
            environment=dict(self.environment),
            timeout=Duration.seconds(constants.FUNCTION_TIMEOUT_SECONDS),
            memory_size=constants.FUNCTION_MEMORY_MB,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_groups[module],
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=constants.FUNCTION_ASYNC_RETRIES,
            max_event_age=Duration.minutes(constants.FUNCTION_MAX_EVENT_AGE_MINUTES),
            reserved_concurrent_executions=(self._reserved or None) if module == "evaluate_scaling" else None,
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "python3.12 matches the Powertools layer build referenced by ARN "
            f"({constants.POWERTOOLS_LAYER_NAME}); runtime and layer are upgraded together.",
        )
        return function

    # ---- the role ------------------------------------------------------------------------------------

    def _build_role(
        self,
        *,
        queue: sqs.IQueue,
        table: ITable,
        launch_template: ec2.LaunchTemplate,
        worker_role: iam.IRole,
        worker_security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet],
        machine_image_id: str,
        cached_repository: str | None,
    ) -> iam.Role:
        stack = Stack.of(self)
        name = self._settings.name

        def ec2_arn(resource: str, resource_name: str, *, account: str | None = None) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=resource_name, account=account)

        cluster_request_tag = {f"aws:RequestTag/{constants.CLUSTER_TAG}": name}
        statements = [
            iam.PolicyStatement(
                sid="DescribeFleet",
                actions=[
                    "ec2:DescribeInstances",
                    "ec2:DescribeSpotInstanceRequests",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVolumes",  # the gp3 storage outside the cluster, against the gp3 quota
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                # The account's vCPU quotas and the region's gp3 storage quota, read so that the fleet is never
                # planned past them.
                sid="ReadQuotas",
                actions=["servicequotas:GetServiceQuota"],
                resources=[
                    *(
                        stack.format_arn(service="servicequotas", resource="ec2", resource_name=code)
                        for code in sorted(set(QUOTA_CODES.values()))
                    ),
                    stack.format_arn(service="servicequotas", resource="ebs", resource_name=GP3_QUOTA_CODE),
                ],
            ),
            iam.PolicyStatement(
                sid="SpotPlacementScores",  # spot launches go first to the zones where capacity is likeliest
                actions=["ec2:DescribeAvailabilityZones", "ec2:GetSpotPlacementScores"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="LaunchFromTheTemplate",
                actions=["ec2:RunInstances"],
                resources=[
                    ec2_arn("launch-template", str(launch_template.launch_template_id)),
                    ec2_arn("image", machine_image_id, account=""),
                    ec2_arn("security-group", worker_security_group.security_group_id),
                    *(ec2_arn("subnet", subnet.subnet_id) for subnet in subnets),
                    ec2_arn("network-interface", "*"),
                    ec2_arn("spot-instances-request", "*"),
                ],
            ),
            iam.PolicyStatement(
                sid="LaunchOnlyTaggedWorkers",
                actions=["ec2:RunInstances"],
                resources=[ec2_arn("instance", "*"), ec2_arn("volume", "*")],
                conditions={"StringEquals": cluster_request_tag},
            ),
            iam.PolicyStatement(
                sid="TagOnlyAtLaunch",
                actions=["ec2:CreateTags"],
                # A spot launch tags its one-time request too, so the teardown can find and cancel it.
                resources=[ec2_arn("instance", "*"), ec2_arn("volume", "*"), ec2_arn("spot-instances-request", "*")],
                conditions={"StringEquals": {"ec2:CreateAction": "RunInstances", **cluster_request_tag}},
            ),
            iam.PolicyStatement(
                sid="StartStopTerminateOwnWorkers",
                actions=["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"],
                resources=[ec2_arn("instance", "*")],
                conditions={"StringEquals": {f"aws:ResourceTag/{constants.CLUSTER_TAG}": name}},
            ),
            iam.PolicyStatement(
                sid="PassOnlyTheWorkerRole",
                actions=["iam:PassRole"],
                resources=[worker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="QueueDepthAndReturns",
                actions=["sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
                resources=[queue.queue_arn],
            ),
            iam.PolicyStatement(sid="ClusterState", actions=list(TABLE_ITEM_ACTIONS), resources=[table.table_arn]),
            iam.PolicyStatement(
                sid="OnFailureDestination",  # the role is immutable: the destination's own grant would be dropped
                actions=["sqs:SendMessage"],
                resources=[self.failure_queue.queue_arn],
            ),
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=list(LOG_WRITE_ACTIONS),
                resources=[group.log_group_arn for group in self.log_groups.values()],
            ),
            iam.PolicyStatement(
                sid="Tracing",
                actions=["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
                resources=["*"],
            ),
            *scaler_statements(self._settings, stack),  # with a lease: start TeardownCluster
        ]
        if cached_repository:
            # ECR creates the appliance's cached repository, not the stack: the teardown deletes it, and only it.
            statements.append(
                iam.PolicyStatement(
                    sid="DeleteCachedAppliance",
                    actions=["ecr:DeleteRepository"],
                    resources=[stack.format_arn(service="ecr", resource="repository", resource_name=cached_repository)],
                )
            )
        role = iam.Role(
            self,
            "Role",
            description=f"Shoal cluster {name} control plane: scale the cluster's tagged workers",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            inline_policies={"scaler": iam.PolicyDocument(statements=statements)},
        )
        for finding, reason in _role_wildcards(stack.region).items():
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{finding}]", reason=reason)
        return role


def _role_wildcards(region: str) -> dict[str, str]:
    prefix = f"arn:<AWS::Partition>:ec2:{region}:<AWS::AccountId>"
    return {
        "*": "ec2:DescribeInstances/DescribeSpotInstanceRequests/DescribeSubnets/DescribeAvailabilityZones/"
        "GetSpotPlacementScores and X-Ray's "
        "PutTraceSegments/PutTelemetryRecords have no "
        "resource-level permissions.",
        f"{prefix}:instance/*": "Instance ids are unknown before launch: RunInstances and CreateTags require the "
        "cluster tag in the request, Start/Stop/Terminate require it on the instance.",
        f"{prefix}:volume/*": "Root volumes are created by the launch: RunInstances and CreateTags require the "
        "cluster tag in the request.",
        f"{prefix}:network-interface/*": "The launch creates the worker's network interface, so its id is unknown; "
        "the instance it belongs to must carry the cluster tag.",
        f"{prefix}:spot-instances-request/*": "A spot launch creates its one-time request, so its id is unknown; "
        "the instance it belongs to must carry the cluster tag.",
    }


def failure_queue(scope: Construct, construct_id: str, name: str, what: str) -> sqs.Queue:
    """A queue that only holds failures for a person to read: encrypted, HTTPS only, kept 14 days."""
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(constants.FAILURE_QUEUE_RETENTION_DAYS),
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue is itself the dead-letter destination for {what}; nothing consumes it but a person, "
        "and an alarm fires on its first message.",
    )
    return queue


def _camel(module: str) -> str:
    return "".join(part.capitalize() for part in module.split("_"))
