"""One stack per cluster. It only composes the constructs, tags everything and runs cdk-nag."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Duration, Environment, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from cdk import constants
from cdk.functions import ControlPlaneFunctions
from cdk.guardrails import ClusterGuardrails
from cdk.leader import Leader
from cdk.lifecycle import ClusterLifecycle
from cdk.network import ClusterNetwork
from cdk.node_code import NodeCode
from cdk.observability import ClusterObservability
from cdk.settings_loader import StackSettings, load_stack_settings
from cdk.staging import StagingBucket
from cdk.state import ClusterState
from cdk.triggers import ScalingTriggers
from cdk.workers import WorkerFleet

REPO_ROOT = Path(__file__).resolve().parent.parent


class ShoalStack(Stack):
    """Everything one cluster needs: state, network, workers, control plane, triggers, observability."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        cluster = settings.cluster
        name = cluster.name
        Tags.of(self).add(constants.CLUSTER_TAG, name)

        visibility = Duration.seconds(constants.VISIBILITY_TIMEOUT_FACTOR * constants.FUNCTION_TIMEOUT_SECONDS)
        self.state = ClusterState(self, "State", cluster_name=name, visibility_timeout=visibility)
        self.network = ClusterNetwork(
            self, "Network", cluster_name=name, zone=cluster.zone, worker_network=cluster.worker_network
        )
        self.staging = StagingBucket(self, "Staging", cluster_name=name)
        self.code = NodeCode(self, "NodeCode")
        self.workers = WorkerFleet(
            self,
            "Workers",
            settings=cluster,
            appliance_image=settings.appliance_image,
            vpc=self.network.vpc,
            queue=self.state.queue,
            dead_letter_queue=self.state.dead_letter_queue,
            table=self.state.table,
            staging=self.staging,
            code=self.code,
        )
        self.leader = Leader(
            self,
            "Leader",
            settings=cluster,
            vpc=self.network.vpc,
            queue=self.state.queue,
            table=self.state.table,
            code=self.code,
        )
        self.control_plane = ControlPlaneFunctions(
            self,
            "ControlPlane",
            settings=cluster,
            powertools_layer_version=settings.powertools_layer_version,
            queue=self.state.queue,
            dead_letter_queue=self.state.dead_letter_queue,
            table=self.state.table,
            launch_template=self.workers.launch_template,
            worker_role=self.workers.role,
            worker_security_group=self.workers.security_group,
            subnets=self.network.subnets,
            machine_image_id=self.workers.image_id,
            scaler_reserved_concurrency=settings.scaler_reserved_concurrency,
            cached_repository=self.workers.cached_repository,
        )
        self.triggers = ScalingTriggers(
            self,
            "Triggers",
            cluster_name=name,
            scale_interval_minutes=settings.scale_interval_minutes,
            queue=self.state.queue,
            evaluate_scaling=self.control_plane.evaluate_scaling,
            on_instance_event=self.control_plane.on_instance_event,
        )
        self.lifecycle = ClusterLifecycle(
            self,
            "Lifecycle",
            cluster_name=name,
            table=self.state.table,
            step_function=self.control_plane.lifecycle_step,
            # Every rule that runs a round, EC2 events included: a teardown must not be scaled back up.
            scaling_rules=[*self.triggers.scaling_rules, *self.triggers.instance_rules],
        )
        self.observability = ClusterObservability(
            self,
            "Observability",
            cluster_name=name,
            queue=self.state.queue,
            dead_letter_queue=self.state.dead_letter_queue,
            functions=list(self.control_plane.functions.values()),
            failure_queues={
                "FailedInvocations": self.control_plane.failure_queue,
                "UndeliveredEvents": self.triggers.dead_letter_queue,
            },
            scaler=self.control_plane.evaluate_scaling,
        )
        self.guardrails = ClusterGuardrails(
            self, "Guardrails", settings=cluster, dashboard=self.observability.dashboard
        )  # the budget alarm and the spend widgets
        self._outputs()

    def _outputs(self) -> None:
        region = self.region
        dashboard = self.observability.dashboard.dashboard_name
        outputs = {
            "QueueUrl": (self.state.queue.queue_url, "Job queue: shoal submit sends jobs here"),
            "DeadLetterQueueUrl": (self.state.dead_letter_queue.queue_url, "Dead-lettered jobs, with their reason"),
            "TableName": (self.state.table.table_name, "Cluster state: jobs, nodes, decisions"),
            "LaunchTemplateId": (str(self.workers.launch_template.launch_template_id), "Worker launch template"),
            "LeaderLaunchTemplateId": (
                str(self.leader.launch_template.launch_template_id),
                "launch-cluster --leaderNodeType starts the leader from this",
            ),
            "LeaderSubnetId": (self.network.subnets[0].subnet_id, "The leader's subnet"),
            "StagingBucketName": (self.staging.bucket.bucket_name, "rsync-cluster copies through this bucket"),
            "WorkerLogGroup": (self.workers.log_group.log_group_name, "Worker (agent) logs, one stream per node"),
            "ClusterName": (self.settings.cluster.name, "Cluster name (SHOAL_CLUSTER_NAME for shoal submit)"),
            "LaunchClusterStateMachineArn": (self.lifecycle.launch.state_machine_arn, "shoal launch-cluster runs this"),
            "TeardownClusterStateMachineArn": (
                self.lifecycle.teardown.state_machine_arn,
                "shoal destroy-cluster runs this",
            ),
            "DashboardUrl": (
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={dashboard}",
                "CloudWatch dashboard",
            ),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)


def build_app(app: App, *, environ: Mapping[str, str] | None = None, base_dir: Path = REPO_ROOT) -> ShoalStack:
    """The app's one stack, with cdk-nag's AwsSolutions checks on every synth.

    Raises ``SettingsError`` (one line, naming the setting) before any construct exists.
    """
    env = os.environ if environ is None else environ
    settings = load_stack_settings(app.node.try_get_context, base_dir=base_dir, environ=env)
    stack = ShoalStack(
        app,
        constants.STACK_NAME.format(cluster=settings.cluster.name),
        settings=settings,
        # The region is the cluster's; the account stays the deploying one's, so synth needs no AWS lookup.
        env=Environment(region=settings.cluster.region),
        description=f"Shoal cluster {settings.cluster.name} ({settings.cluster.node_types}); settings from "
        f"{settings.source}",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack
