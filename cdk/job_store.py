"""The Toil job store's bucket: what jobs may do in it (the job role) and what the leader may do to it.

Toil 9's ``aws:REGION:NAME`` job store is the S3 bucket ``NAME--toil``; the setting ``job_store_bucket``
(default ``CLUSTER--toil``, so ``--jobStore aws:REGION:CLUSTER`` just works; ``*`` allowed) names it.
Jobs never get the worker's role: the host assumes the *job role* and hands its short-lived credentials
to job containers (cdk/node_boot.py, shared/worker/isolation.py). The job role reads and writes the job
store's objects and nothing else; the leader's Toil may also create and delete the bucket (``--clean``).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.nag import acknowledge

BUCKET_READ_ACTIONS = ("s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:ListBucket", "s3:ListBucketVersions")
OBJECT_ACTIONS = (
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
)
# What creating an aws: job store (and `--clean` removing it) does to the bucket itself, beyond the above.
BUCKET_MANAGE_ACTIONS = (
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketTagging",
    "s3:GetBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:GetEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
)


def bucket_arn(bucket: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}"


def job_store_statements(bucket: str, *, manage: bool = False) -> list[iam.PolicyStatement]:
    """Read and write the job store's objects; with ``manage``, also create and delete the bucket."""
    bucket_actions = [*BUCKET_READ_ACTIONS, *(BUCKET_MANAGE_ACTIONS if manage else ())]
    return [
        iam.PolicyStatement(sid="JobStoreBucket", actions=bucket_actions, resources=[bucket_arn(bucket)]),
        iam.PolicyStatement(sid="JobStoreObjects", actions=list(OBJECT_ACTIONS), resources=[f"{bucket_arn(bucket)}/*"]),
    ]


def acknowledge_job_store(scope: Construct, bucket: str) -> None:
    acknowledge(
        scope,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/*]",
        "Toil names the objects of its job store itself; access is limited to the job store's own bucket.",
    )
    if "*" in bucket:
        acknowledge(
            scope,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}]",
            "The job_store_bucket setting names a pattern of job store buckets, one per workflow run.",
        )


class JobRole(Construct):
    """``role``: what a job's container acts as; only ``trusted`` (the worker role) may assume it."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, bucket: str, trusted: iam.IRole):
        super().__init__(scope, construct_id)
        self.bucket = bucket
        self.role = iam.Role(
            self,
            "Role",
            description=f"Shoal cluster {cluster_name} jobs: the Toil job store's bucket, nothing else",
            assumed_by=iam.ArnPrincipal(trusted.role_arn),
            inline_policies={"jobs": iam.PolicyDocument(statements=job_store_statements(bucket))},
        )
        acknowledge_job_store(self.role, bucket)
