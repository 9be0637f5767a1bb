"""What the cluster commands and the Toil plugin build on a user's machine, and the errors they catch from it.

The edges assemble no adapter themselves (``tests/unit/test_layers.py``): ``launch-cluster``,
``destroy-cluster``, ``status``, ``list``, ``ssh-cluster``/``rsync-cluster`` and ``renew`` find the cluster's
stack, its leader, its executions, its file transfer and its spend ledger here, and the plugin its job store,
feed and cluster settings; ``AWS_ERRORS`` is every error those can raise that is the cloud's answer (printed
on one line, exit status 1), not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.adapters import aws
from shared.adapters.aws import AwsConfigError
from shared.adapters.cluster_directory import (
    CloudFormationClusterDirectory,
    ClusterDirectoryError,
    ClusterNotFoundError,
    ClusterOutputs,
    stack_name,
)
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.executions import ExecutionsError, StepFunctionsExecutions
from shared.adapters.job_feed import DynamoJobFeed
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.leader import Ec2Leader, LeaderError
from shared.adapters.spend_ledger import DynamoSpendLedger
from shared.adapters.ssm_session import S3Staging, SsmCommands, TransferError
from shared.adapters.state_table import StateTable
from shared.services.ports import JobQueueError, StoreError

__all__ = [
    "AWS_ERRORS",
    "AwsConfigError",
    "ClusterNotFoundError",
    "ClusterOutputs",
    "S3Staging",
    "SsmCommands",
    "ToilPorts",
    "TransferError",
    "build_toil_ports",
    "cluster_directory",
    "default_region",
    "executions",
    "file_transfer",
    "leader",
    "spend_ledger",
    "stack_name",
]

AWS_ERRORS = (ClusterDirectoryError, ExecutionsError, StoreError, JobQueueError, AwsConfigError, LeaderError)


def cluster_directory(region: str) -> CloudFormationClusterDirectory:
    """The deployed clusters' stacks and their outputs."""
    return CloudFormationClusterDirectory(region)


def leader(region: str) -> Ec2Leader:
    return Ec2Leader(region)


def executions(region: str) -> StepFunctionsExecutions:
    """LaunchCluster's and TeardownCluster's executions."""
    return StepFunctionsExecutions(region)


def file_transfer(region: str) -> tuple[S3Staging, SsmCommands]:
    """rsync-cluster's two halves: the staging bucket, and commands run on a node."""
    return S3Staging(region), SsmCommands(region)


def spend_ledger(outputs: ClusterOutputs) -> DynamoSpendLedger:
    return DynamoSpendLedger(StateTable(outputs.table_name, region=outputs.region))


def default_region() -> str:
    """The region the AWS SDK's default chain names (the environment, the profile)."""
    return str(aws.client("sts").meta.region_name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToilPorts:
    """What the Toil plugin reads besides its submit client: the job records, its completion feed, the settings."""

    jobs: DynamoJobStore
    feed: DynamoJobFeed
    clusters: DynamoClusterStore


def build_toil_ports(table_name: str, region: str | None, feed: str) -> ToilPorts:
    table = StateTable(table_name, region=region)
    return ToilPorts(jobs=DynamoJobStore(table), feed=DynamoJobFeed(table, feed), clusters=DynamoClusterStore(table))
