"""The cluster's leader instance, as Toil's ``launch-cluster --leaderNodeType`` starts one.

Launched from the stack's leader launch template (its role may submit jobs and use the job store, nothing
more) and tagged ``shoal:cluster=NAME`` and ``shoal:role=leader``: the cluster tag puts it in the teardown's
inventory, so ``destroy-cluster`` terminates it with the workers; the role tag keeps the scaler from adopting
it as a worker (``Ec2Fleet.describe``). Launching is idempotent per cluster: a running leader is reused.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.adapters.ec2_fleet import CLUSTER_TAG, LEADER_ROLE, ROLE_TAG

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

LIVE = ("pending", "running")


class LeaderError(RuntimeError):
    """EC2 refused or could not be asked; the message says what and why, on one line."""


class Ec2Leader:
    def __init__(self, region: str, *, client: EC2Client | None = None) -> None:
        self.region = region
        self.client: EC2Client = client if client is not None else aws.client("ec2", region)

    def find(self, cluster: str) -> str | None:
        """The instance id of the cluster's pending or running leader, if it has one."""
        try:
            pages = self.client.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
                    {"Name": f"tag:{ROLE_TAG}", "Values": [LEADER_ROLE]},
                    {"Name": "instance-state-name", "Values": list(LIVE)},
                ]
            )
            ids = sorted(i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"])
        except (ClientError, BotoCoreError) as error:
            raise LeaderError(f"could not look for the leader of {cluster}: {error}") from None
        return ids[0] if ids else None

    def launch(self, cluster: str, *, launch_template_id: str, instance_type: str, subnet_id: str | None) -> str:
        """Start the leader (or return the one already running); its instance id."""
        existing = self.find(cluster)
        if existing is not None:
            return existing
        tags = [
            {"Key": CLUSTER_TAG, "Value": cluster},
            {"Key": ROLE_TAG, "Value": LEADER_ROLE},
            {"Key": "Name", "Value": f"shoal-{cluster}-leader"},
        ]
        request: dict[str, object] = {
            "LaunchTemplate": {"LaunchTemplateId": launch_template_id, "Version": "$Default"},
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            # One token per call: botocore's retries of this call launch nothing twice; a later launch (after a
            # teardown) must not be answered with the terminated leader, so the token is never reused.
            "ClientToken": f"shoal-{cluster}-leader-{uuid.uuid4().hex[:16]}",
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": [{"Key": CLUSTER_TAG, "Value": cluster}]},
            ],
        }
        if subnet_id:
            request["SubnetId"] = subnet_id
        try:
            response = self.client.run_instances(**request)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as error:
            raise LeaderError(f"could not start the leader ({instance_type}) of {cluster}: {error}") from None
        return response["Instances"][0]["InstanceId"]
