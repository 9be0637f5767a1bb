"""Issue 13: what a worker's boot contacts, and whether ``worker_network = "endpoints"`` lets each through.

The stack is synthesized for real (cdk-nag included); the worker's user data is rendered from the launch
template with the deploy-time references filled in (account 123456789012, the settings' region), and every
host its commands contact is judged against the network the template builds: its interface endpoints
(private DNS), its gateway endpoints (routed from the workers' subnets), a NAT gateway or public addresses.
The same judge applied to the default (public) stack's boot must find what that boot needs from the
internet, so the check can fail. The packages asset is installed for real, without pip, and the agent starts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from cfnlint.api import ManualArgs, lint

from cdk import constants, node_boot
from cdk.stack import ShoalStack, build_app
from cdk.workers import pull_through_prefix
from tests.cdk.conftest import Synthesized, write_settings

ACCOUNT = "123456789012"
REGION = "us-east-1"
IMDS = "169.254.169.254"
# Amazon Linux 2023's dnf repositories (/etc/yum.repos.d/amazonlinux.repo: the mirror list and the packages are
# objects of this S3 bucket, on its dual-stack name), reached through an S3 gateway endpoint like any bucket.
AL2023_REPOS = "al2023-repos-{region}-de612dc2.s3.dualstack.{region}.amazonaws.com"
ECR_LAYERS = "prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com"  # ECR serves image layers from S3
# Commands that would reach the network in a way this judge does not model: a boot that adds one must teach it.
UNMODELLED = re.compile(r"\b(wget|git clone|npm install|gem install|apt-get|yum)\b")


@dataclass(frozen=True, slots=True)
class Built:
    stack: ShoalStack
    template: dict[str, Any]
    outdir: Path


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Built:
    # GIVEN worker_network = "endpoints" and no TOIL_* variable: Toil's default appliance, on quay.io
    directory = tmp_path_factory.mktemp("endpoints")
    settings = write_settings(
        directory, f'name = "net"\nnode_types = "m5.large"\nregion = "{REGION}"\nworker_network = "endpoints"\n'
    )
    app = App(context={"settings": str(settings)}, outdir=str(directory / "out"))
    stack = build_app(app, environ={}, base_dir=directory)
    assembly = app.synth()  # cdk-nag fails synthesis on any unacknowledged finding
    return Built(stack=stack, template=assembly.get_stack_by_name(stack.stack_name).template, outdir=directory / "out")


# ---- rendering ---------------------------------------------------------------------------------------------


def render(value: Any) -> str:
    """A CloudFormation value as deployed: pseudo parameters filled in, other references as <LogicalId>."""
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::Partition": "aws",
    }
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return pseudo.get(value["Ref"], f"<{value['Ref']}>")
    if "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo.get(m[1], f"<{m[1]}>"), value["Fn::Sub"])
    if "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part) for part in parts)
    raise AssertionError(f"cannot render {value}")


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {key: r.get("Properties", {}) for key, r in template["Resources"].items() if r["Type"] == kind}


def worker_user_data(stack: ShoalStack, template: dict[str, Any]) -> str:
    logical_id = stack.get_logical_id(stack.workers.launch_template.node.default_child)  # type: ignore[arg-type]
    data = template["Resources"][logical_id]["Properties"]["LaunchTemplateData"]
    return render(data["UserData"]["Fn::Base64"])


# ---- what the boot contacts ------------------------------------------------------------------------------


def contacted(script: str) -> dict[str, str]:
    """Every host the worker's boot and the daemons it starts contact → the command that does."""
    hosts: dict[str, str] = {}
    for line in script.splitlines():
        assert not UNMODELLED.search(line), f"the boot reaches the network in a way this test does not model: {line}"
        if line.startswith("retry dnf install"):
            hosts[AL2023_REPOS.format(region=REGION)] = line
        if "pip install" in line:
            hosts["pypi.org"] = hosts["files.pythonhosted.org"] = line
        if match := re.search(r"aws s3 cp --region (\S+) s3://([^/\s]+)/", line):
            hosts[f"{match[2]}.s3.{match[1]}.amazonaws.com"] = line
        if match := re.search(r"aws (sts|ecr) \S+ --region (\S+)", line):
            hosts[f"{'api.ecr' if match[1] == 'ecr' else 'sts'}.{match[2]}.amazonaws.com"] = line
        if match := re.search(r"docker (?:pull|login .*--password-stdin) '?([^\s']+)", line):
            registry = match[1].split("/", 1)[0]
            hosts[registry] = line
            if ".dkr.ecr." in registry:
                hosts[ECR_LAYERS.format(region=REGION)] = line
        for url in re.findall(r"https?://([^/\s\"']+)", line):
            hosts[url] = line
        if "amazon-cloudwatch-agent-ctl" in line:
            hosts[f"logs.{REGION}.amazonaws.com"] = line
        if line.startswith("echo 'SHOAL_QUEUE_URL="):
            hosts[f"sqs.{REGION}.amazonaws.com"] = "the agent takes and settles jobs"
        if line.startswith("echo 'SHOAL_TABLE_NAME="):
            hosts[f"dynamodb.{REGION}.amazonaws.com"] = "the agent records jobs and nodes"
    for service in ("ssm", "ssmmessages", "ec2messages"):  # the AMI's SSM agent (Session Manager, ssh-cluster)
        hosts[f"{service}.{REGION}.amazonaws.com"] = "amazon-ssm-agent"
    return hosts


def service_of(host: str) -> str | None:
    """The AWS service a host name belongs to in the cluster's region; None: outside AWS."""
    region = re.escape(REGION)
    if re.fullmatch(rf"(?:[a-z0-9.-]+\.)?s3(?:\.dualstack)?(?:\.{region})?\.amazonaws\.com", host):
        return "s3"
    if re.fullmatch(rf"\d{{12}}\.dkr\.ecr\.{region}\.amazonaws\.com", host):
        return "ecr.dkr"
    if host == f"api.ecr.{REGION}.amazonaws.com":
        return "ecr.api"
    match = re.fullmatch(rf"([a-z0-9]+)\.{region}\.amazonaws\.com", host)
    return match[1] if match else None


# ---- what the network lets through -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reach:
    internet: bool  # a default route to a NAT gateway, or to an internet gateway with public addresses
    interface: frozenset[str]  # interface endpoints with private DNS
    gateway: frozenset[str]  # gateway endpoints on every worker subnet's route table

    def reaches(self, host: str) -> bool:
        if host == IMDS or self.internet:
            return True
        service = service_of(host)
        return service is not None and service in self.interface | self.gateway


def reach(template: dict[str, Any]) -> Reach:
    subnets = [
        p["Ref"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if "SHOAL_SUBNET_IDS" in f.get("Environment", {}).get("Variables", {})
        for p in f["Environment"]["Variables"]["SHOAL_SUBNET_IDS"]["Fn::Join"][1]
        if isinstance(p, dict)
    ]
    assert subnets, "the scaler names the workers' subnets"
    tables = {
        a["SubnetId"]["Ref"]: a["RouteTableId"]["Ref"]
        for a in resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    worker_tables = {tables[s] for s in subnets}
    public = any(resources(template, "AWS::EC2::Subnet")[s].get("MapPublicIpOnLaunch") for s in subnets)
    internet = any(
        route.get("DestinationCidrBlock") == "0.0.0.0/0"
        and route["RouteTableId"]["Ref"] in worker_tables
        and ("NatGatewayId" in route or ("GatewayId" in route and public))
        for route in resources(template, "AWS::EC2::Route").values()
    )
    endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()

    def name(endpoint: dict[str, Any]) -> str:
        return render(endpoint["ServiceName"]).removeprefix(f"com.amazonaws.{REGION}.")

    interface = {name(e) for e in endpoints if e.get("VpcEndpointType") == "Interface" and e.get("PrivateDnsEnabled")}
    gateway = {
        name(e)
        for e in endpoints
        if e.get("VpcEndpointType", "Gateway") == "Gateway"
        and worker_tables <= {t["Ref"] for t in e.get("RouteTableIds", [])}
    }
    return Reach(internet=internet, interface=frozenset(interface), gateway=frozenset(gateway))


# ---- the tests -------------------------------------------------------------------------------------------


def test_every_host_an_endpoints_worker_boot_contacts_is_reachable_without_internet(endpoints: Built) -> None:
    # GIVEN the endpoints network and the worker boot it launches
    network = reach(endpoints.template)
    hosts = contacted(worker_user_data(endpoints.stack, endpoints.template))
    # THEN the workers have no way out but the endpoints
    assert not network.internet
    # AND the boot contacts only AWS services of the region, each through an endpoint of the stack
    unreachable = {host: why for host, why in hosts.items() if not network.reaches(host)}
    assert unreachable == {}
    services = {service_of(host) for host in hosts} - {None}
    assert services == {
        "s3",
        "sts",
        "ecr.api",
        "ecr.dkr",
        "sqs",
        "dynamodb",
        "logs",
        "ssm",
        "ssmmessages",
        "ec2messages",
    }
    # AND no endpoint is paid for that nothing uses (interface endpoints cost by the hour)
    assert network.interface == services - {"s3", "dynamodb"} == set(constants.INTERFACE_ENDPOINTS)
    assert network.gateway == {"s3", "dynamodb"}


def test_the_judge_finds_what_the_default_boot_needs_from_the_internet(
    synthesized: Synthesized, endpoints: Built
) -> None:
    # GIVEN the default (public) stack's worker boot, judged against the endpoints network
    network = reach(endpoints.template)
    hosts = contacted(worker_user_data(synthesized.stack, synthesized.template_json))
    # THEN PyPI and quay.io are out of reach: what made the endpoints network unbootable before
    assert {host for host in hosts if not network.reaches(host)} == {"pypi.org", "files.pythonhosted.org", "quay.io"}
    # AND the public network itself reaches them (its workers have public addresses)
    assert reach(synthesized.template_json).internet


def test_the_appliance_is_pulled_through_an_ecr_cache_of_quay(endpoints: Built) -> None:
    template = endpoints.template
    # THEN one pull-through cache rule, this cluster's prefix, upstream quay.io (no credentials needed)
    [rule] = resources(template, "AWS::ECR::PullThroughCacheRule").values()
    assert rule == {
        "EcrRepositoryPrefix": "shoal-net-quay",
        "UpstreamRegistry": "quay",
        "UpstreamRegistryUrl": "quay.io",
    }
    # AND workers log in to their own registry and pull Toil's image under the prefix
    script = worker_user_data(endpoints.stack, template)
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    tag = endpoints.stack.settings.appliance_image.rsplit(":", 1)[1]
    assert f"aws ecr get-login-password --region {REGION} | docker login --username AWS --password-stdin " in script
    assert f"retry docker pull '{registry}/shoal-net-quay/ucsc_cgl/toil:{tag}'" in script
    assert f"SHOAL_JOB_IMAGE={registry}/shoal-net-quay/ucsc_cgl/toil:{tag}" in script
    # AND the worker role may pull that one repository, create it and import into it on the first pull
    role_id = endpoints.stack.get_logical_id(endpoints.stack.workers.role.node.default_child)  # type: ignore[arg-type]
    role = template["Resources"][role_id]["Properties"]
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    pull = statements["PullAppliance"]
    assert set(pull["Action"]) == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage",
        "ecr:CreateRepository",
    }
    assert render(pull["Resource"]) == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/shoal-net-quay/ucsc_cgl/toil"
    assert statements["EcrLogin"]["Resource"] == "*"  # GetAuthorizationToken has no resource-level permission
    # AND it may read the packages asset, exactly that object
    packages = endpoints.stack.workers.packages
    assert packages is not None
    assert render(statements["ReadShoalPackages"]["Resource"]).endswith(
        f"/{render(endpoints.stack.resolve(packages.asset.s3_object_key))}"
    )


def _control_plane(built: ShoalStack, template: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The lifecycle function's environment, and its role's statements by Sid."""
    function = built.control_plane.lifecycle_step.node.default_child
    properties = template["Resources"][built.get_logical_id(function)]["Properties"]  # type: ignore[arg-type]
    role = template["Resources"][built.get_logical_id(built.control_plane.role.node.default_child)]  # type: ignore[arg-type]
    statements = {s["Sid"]: s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]}
    return properties["Environment"]["Variables"], statements


def test_the_teardown_may_delete_the_cached_appliance_and_nothing_else(
    endpoints: Built, synthesized: Synthesized
) -> None:
    # GIVEN the endpoints stack: ECR creates shoal-net-quay/ucsc_cgl/toil on the first pull
    environment, statements = _control_plane(endpoints.stack, endpoints.template)
    # THEN the control plane knows the repository and may delete exactly it
    assert environment["SHOAL_CACHED_REPOSITORY"] == "shoal-net-quay/ucsc_cgl/toil"
    delete = statements["DeleteCachedAppliance"]
    assert delete["Action"] == "ecr:DeleteRepository"
    assert render(delete["Resource"]) == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/shoal-net-quay/ucsc_cgl/toil"
    # AND the default stack has no cache: nothing to delete, no permission
    environment, statements = _control_plane(synthesized.stack, synthesized.template_json)
    assert environment["SHOAL_CACHED_REPOSITORY"] == ""
    assert "DeleteCachedAppliance" not in statements


def test_the_default_network_keeps_pypi_and_quay(synthesized: Synthesized) -> None:
    # GIVEN the public network: unchanged, PyPI for boto3 and quay.io for the appliance, no cache rule
    script = worker_user_data(synthesized.stack, synthesized.template_json)
    assert "/opt/shoal/venv/bin/pip install" in script and "retry docker pull quay.io/ucsc_cgl/toil:" in script
    assert synthesized.stack.workers.packages is None
    assert not resources(synthesized.template_json, "AWS::ECR::PullThroughCacheRule")


def test_the_packages_asset_installs_boto3_without_pip_and_the_agent_starts(endpoints: Built, tmp_path: Path) -> None:
    # GIVEN the two assets zipped as the CDK publishes them
    workers = endpoints.stack.workers
    assert workers.packages is not None
    packages = shutil.make_archive(
        str(tmp_path / "packages"), "zip", endpoints.outdir / workers.packages.asset.asset_path
    )
    code = shutil.make_archive(str(tmp_path / "agent"), "zip", endpoints.outdir / endpoints.stack.code.asset.asset_path)
    venv = tmp_path / "venv"
    # WHEN the boot's venv-and-agent lines run (this Python stands in for the node's python3.11), no PYTHONPATH
    lines = [
        *node_boot.vendored_python_runtime(zip_path=packages, venv=str(venv), python=sys.executable),
        *node_boot.unpack_agent(zip_path=code, target=str(tmp_path / "agent"), python=str(venv / "bin" / "python")),
        f"{venv}/bin/python -c 'import boto3, botocore; print(boto3.__version__, botocore.__version__)'",
    ]
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", "\n".join(["set -euo pipefail", *lines])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    # THEN boto3 imports from the venv at the versions the stack was synthesized with, and there is no pip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{metadata.version('boto3')} {metadata.version('botocore')}"
    assert not list(venv.glob("bin/pip*"))
    # AND the agent runs from there: without its settings it stops with one line, exit 2
    started = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "shared.worker.main"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "agent"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert started.stderr.strip().startswith("shoal-worker: environment variable SHOAL_QUEUE_URL is not set")


@pytest.mark.parametrize(
    ("cluster", "prefix"),
    [("net", "shoal-net-quay"), ("a" * 32, None), ("a--b", None)],
)
def test_the_cache_prefix_is_a_valid_ecr_prefix_for_every_cluster_name(cluster: str, prefix: str | None) -> None:
    # GIVEN names too long for ECR's 30 characters or with a doubled separator: a hashed prefix instead
    made = pull_through_prefix(cluster)
    assert made == prefix if prefix else re.fullmatch(r"shoal-[0-9a-f]{12}-quay", made)
    assert 2 <= len(made) <= 30


def test_cfn_lint_finds_nothing_in_the_endpoints_template(endpoints: Built) -> None:
    # The endpoints' security group once had "cluster's" in its description, which EC2 refuses (E3031).
    matches = lint(json.dumps(endpoints.template), config=ManualArgs(regions=[REGION]))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id != "W3005"] == []
