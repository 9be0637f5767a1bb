"""Shoal's code for the nodes: one S3 asset the CDK publishes at deploy time, read by workers and the leader.

The asset is the repository restricted to ``shared/`` (without the CLI, the local cloud and the simulator,
which never run on a node) and the Toil plugin's top-level shim. No image of ours, no registry: a node
downloads it with its own role (``s3:GetObject`` on exactly this object) and unpacks it (cdk/node_boot.py).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("shared/cli", "shared/local", "shared/sim")  # tests/cdk/test_node_boot.py checks the agent runs without
SHIM = "toil_batch_system_shoal.py"
CODE_EXCLUDES = (
    "*",
    ".*",
    "!shared",
    "!shared/**",
    f"!{SHIM}",
    *LEFT_OUT,
    *(f"{package}/**" for package in LEFT_OUT),
    "shared/adapters/memory_*.py",  # the in-memory twins (tests, the local cloud)
    "**/__pycache__",
    "**/*.pyc",
)


def pinned(package: str) -> str:
    """``package==VERSION`` of the version installed where the stack is synthesized (what the tests ran with)."""
    return f"{package}=={metadata.version(package)}"


class NodeCode(Construct):
    """``asset``: the zipped code; ``grant_read(role)`` lets a node role fetch exactly this object."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.asset = s3_assets.Asset(self, "Asset", path=str(REPO_ROOT), exclude=list(CODE_EXCLUDES))

    @property
    def bucket_name(self) -> str:
        return self.asset.s3_bucket_name

    @property
    def object_key(self) -> str:
        return self.asset.s3_object_key

    def read_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ReadShoalCode",
            actions=["s3:GetObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{self.bucket_name}/{self.object_key}"],
        )
