"""The staging bucket ``rsync-cluster`` copies through (Toil's rsync-cluster, without SSH).

Files pass through ``shoal/<cluster>/staging/<token>/``: the CLI uploads (or downloads) there and an
SSM command on the node copies between the prefix and the node's disk. Objects are transient: the CLI
deletes its prefix when done and a lifecycle rule expires anything left after a day, so the bucket is
empty when the stack is destroyed.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.nag import acknowledge

STAGING_PREFIX = "shoal/{cluster}/staging/"  # shared.cli.cluster_access_cmd.staging_prefix builds the same


class StagingBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str) -> None:
        super().__init__(scope, construct_id)
        self.prefix = STAGING_PREFIX.format(cluster=cluster_name)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(prefix=self.prefix, expiration=Duration.days(1)),
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Only transient rsync-cluster copies pass through this bucket and expire within a day; access "
            "logs would need a second bucket that outlives the cluster, which destroy-cluster must not leave.",
        )
