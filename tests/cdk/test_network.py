"""Issue 13: ``worker_network`` "nat" and "endpoints" give workers no public address; cdk-nag stays clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from cdk.stack import build_app
from tests.cdk.conftest import write_settings

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shoal-appliance:1"


def synth(tmp_path: Path, network: str) -> dict[str, Any]:
    settings = write_settings(
        tmp_path, f'name = "net"\nnode_types = "m5.large"\nregion = "us-east-1"\nworker_network = "{network}"\n'
    )
    app = App(context={"settings": str(settings)}, outdir=str(tmp_path / "out"))
    stack = build_app(app, environ={"TOIL_APPLIANCE_SELF": ECR_IMAGE}, base_dir=tmp_path)
    app.synth()  # cdk-nag's AwsSolutions checks fail synthesis on any unacknowledged finding
    return Template.from_stack(stack).to_json()


@pytest.mark.parametrize(
    ("network", "nat_gateways", "interface_endpoints"),
    [
        ("nat", 1, set()),
        ("endpoints", 0, {"sqs", "sts", "ssm", "ssmmessages", "ec2messages", "ecr.api", "ecr.dkr", "logs"}),
    ],
)
def test_private_workers_have_no_public_address(
    tmp_path: Path, network: str, nat_gateways: int, interface_endpoints: set[str]
) -> None:
    template = synth(tmp_path, network)
    resources = template["Resources"].values()
    by_type = lambda kind: [r["Properties"] for r in resources if r["Type"] == kind]  # noqa: E731
    assert len(by_type("AWS::EC2::NatGateway")) == nat_gateways
    [scaler] = [f for f in by_type("AWS::Lambda::Function") if "evaluate-scaling" in str(f["FunctionName"])]
    refs = [p["Ref"] for p in scaler["Environment"]["Variables"]["SHOAL_SUBNET_IDS"]["Fn::Join"][1] if p != ","]
    assert refs
    for ref in refs:
        assert template["Resources"][ref]["Properties"]["MapPublicIpOnLaunch"] is False  # the scaler's subnets
    interface = [e for e in by_type("AWS::EC2::VPCEndpoint") if e.get("VpcEndpointType") == "Interface"]
    assert len(interface) == len(interface_endpoints)
    gateways = [e for e in by_type("AWS::EC2::VPCEndpoint") if e.get("VpcEndpointType", "Gateway") == "Gateway"]
    assert len(gateways) == 2  # DynamoDB and S3, free
