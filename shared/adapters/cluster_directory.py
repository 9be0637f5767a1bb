"""Which Shoal clusters are deployed: CloudFormation stacks named ``shoal-*`` whose outputs name a cluster."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

STACK_PREFIX = "shoal-"


class ClusterDirectoryError(RuntimeError):
    """CloudFormation could not be asked (credentials, network, permissions)."""


class ClusterNotFoundError(LookupError):
    """No deployed stack for the cluster; the message says how to see the deployed ones."""


def stack_name(cluster: str) -> str:
    return f"{STACK_PREFIX}{cluster}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterOutputs:
    name: str
    region: str
    stack_name: str
    stack_status: str
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    launch_template_id: str
    launch_state_machine_arn: str
    teardown_state_machine_arn: str
    dashboard_url: str | None = None
    worker_log_group: str | None = None
    staging_bucket: str | None = None  # rsync-cluster's staging bucket
    leader_launch_template_id: str | None = None  # launch-cluster --leaderNodeType starts a leader from it
    leader_subnet_id: str | None = None

    @property
    def machines(self) -> dict[str, str]:
        return {"LaunchCluster": self.launch_state_machine_arn, "TeardownCluster": self.teardown_state_machine_arn}

    @classmethod
    def from_stack(cls, stack: Mapping[str, Any], region: str) -> ClusterOutputs | None:
        """The outputs of a described stack, or None if it is not (yet) a complete Shoal stack."""
        values = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
        required = (
            "ClusterName",
            "QueueUrl",
            "DeadLetterQueueUrl",
            "TableName",
            "LaunchTemplateId",
            "LaunchClusterStateMachineArn",
            "TeardownClusterStateMachineArn",
        )
        if not all(values.get(k) for k in required):
            return None
        return cls(
            name=values["ClusterName"],
            region=region,
            stack_name=stack["StackName"],
            stack_status=stack.get("StackStatus", ""),
            queue_url=values["QueueUrl"],
            dead_letter_queue_url=values["DeadLetterQueueUrl"],
            table_name=values["TableName"],
            launch_template_id=values["LaunchTemplateId"],
            launch_state_machine_arn=values["LaunchClusterStateMachineArn"],
            teardown_state_machine_arn=values["TeardownClusterStateMachineArn"],
            dashboard_url=values.get("DashboardUrl") or None,
            worker_log_group=values.get("WorkerLogGroup") or None,
            staging_bucket=values.get("StagingBucketName") or None,
            leader_launch_template_id=values.get("LeaderLaunchTemplateId") or None,
            leader_subnet_id=values.get("LeaderSubnetId") or None,
        )


class CloudFormationClusterDirectory:
    def __init__(self, region: str, *, client: CloudFormationClient | None = None) -> None:
        self.region = region
        self.client: CloudFormationClient = client if client is not None else aws.client("cloudformation", region)

    def list_clusters(self) -> list[ClusterOutputs]:
        """Every deployed Shoal cluster in the region, by name."""
        found: list[ClusterOutputs] = []
        with self._errors("DescribeStacks"):
            for page in self.client.get_paginator("describe_stacks").paginate():
                for stack in page.get("Stacks", []):
                    if not stack["StackName"].startswith(STACK_PREFIX):
                        continue
                    outputs = ClusterOutputs.from_stack(stack, self.region)
                    if outputs is not None:
                        found.append(outputs)
        return sorted(found, key=lambda o: o.name)

    def find(self, name: str) -> ClusterOutputs | None:
        """The cluster's outputs, or None when its stack is not deployed (or has no outputs yet)."""
        try:
            with self._errors("DescribeStacks"):
                stacks = self.client.describe_stacks(StackName=stack_name(name)).get("Stacks", [])
        except _StackMissingError:
            return None
        if not stacks or stacks[0].get("StackStatus") == "DELETE_COMPLETE":
            return None
        return ClusterOutputs.from_stack(stacks[0], self.region)

    def outputs(self, name: str) -> ClusterOutputs:
        found = self.find(name)
        if found is None:
            raise ClusterNotFoundError(
                f"no cluster {name!r} in {self.region}; `shoal list-clusters` shows the deployed ones"
            )
        return found

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message", "")
            # CloudFormation answers a missing stack with a ValidationError and no more specific code.
            if code == "ValidationError" and "does not exist" in message:
                raise _StackMissingError(message) from None
            raise ClusterDirectoryError(f"CloudFormation {action} in {self.region} failed: {code}: {message}") from None
        except BotoCoreError as error:
            raise ClusterDirectoryError(f"CloudFormation {action} in {self.region} failed: {error}") from None


class _StackMissingError(Exception):
    pass
