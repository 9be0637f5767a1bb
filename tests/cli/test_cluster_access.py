"""ssh-cluster (the Session Manager argv, never exec'd) and rsync-cluster (S3 staging + SSM Run Command) on moto."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from moto import mock_aws

from shared.adapters import aws
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.cli import cluster_access_cmd
from shared.cli.main import build_parser
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from tests.cli.test_cluster_commands import stack_template

REGION = "us-west-2"
NAME = "genomics"
BUCKET = "shoal-staging"


class ExecCalledError(Exception):
    """Raised instead of replacing the test process."""


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        make_table(aws.client("dynamodb", REGION), "shoal-genomics-state")
        nodes = DynamoNodeStore(StateTable("shoal-genomics-state", region=REGION))
        # No EC2 instances: moto's SendCommand adds every instance it knows to a command without Targets.
        ids = ["i-0pending", "i-0active"]
        for at, (instance_id, state) in enumerate(zip(ids, (NodeState.PENDING, NodeState.ACTIVE), strict=True)):
            nodes.put_node(
                NodeRecord(instance_id=instance_id, offer_key="m5.large", instance_type="m5.large",
                           market=Market.ON_DEMAND, state=state, launched_at=float(at))
            )  # fmt: skip
        outputs = {
            "ClusterName": NAME, "QueueUrl": "q", "DeadLetterQueueUrl": "d", "TableName": "shoal-genomics-state",
            "LaunchTemplateId": "lt", "LaunchClusterStateMachineArn": "a", "TeardownClusterStateMachineArn": "b",
        }  # fmt: skip
        aws.client("cloudformation", REGION).create_stack(
            StackName=f"shoal-{NAME}", TemplateBody=stack_template(outputs)
        )
        aws.client("s3", REGION).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield {"pending": ids[0], "active": ids[1]}


def ssh(*argv: str, which: Any = lambda name: f"/usr/bin/{name}") -> tuple[list[str] | None, int, str]:
    args = build_parser().parse_args(["ssh-cluster", NAME, *argv])
    execs: list[list[str]] = []

    def fake_exec(file: str, command: list[str]) -> NoReturn:
        execs.append(command)
        raise ExecCalledError

    err = io.StringIO()
    try:
        code = cluster_access_cmd.run_ssh(args, io.StringIO(), err, exec_fn=fake_exec, which=which)
    except ExecCalledError:
        return execs[0], 0, err.getvalue()
    return None, code, err.getvalue()


def test_ssh_defaults_to_the_first_active_node(cluster: dict[str, Any]) -> None:
    # WHEN ssh-cluster names no node
    argv, _, _ = ssh()
    # THEN a Session Manager session to the first ACTIVE node is exec'd
    assert argv == ["aws", "ssm", "start-session", "--target", cluster["active"], "--region", REGION]


def test_ssh_resolves_an_index_or_takes_an_instance_id(cluster: dict[str, Any]) -> None:
    assert ssh("0")[0] == cluster_access_cmd.ssh_argv(cluster["pending"], REGION)
    assert ssh(cluster["active"])[0] == cluster_access_cmd.ssh_argv(cluster["active"], REGION)
    # WHEN the index is out of range  THEN exit 2 naming NODE
    argv, code, err = ssh("7")
    assert argv is None and code == 2 and "NODE 7 is out of range" in err


@pytest.mark.parametrize("node", ["i-0abc", "i-", "i-0active\n", "\u0661", "99999999999999999999"])
def test_ssh_refuses_a_node_that_is_not_the_clusters(cluster: dict[str, Any], node: str) -> None:
    # GIVEN an instance id of no node of this cluster (issue 13 item 9: any "i-..." was taken as is)
    # WHEN ssh-cluster is asked for it
    argv, code, err = ssh(node)
    # THEN nothing is exec'd: exit 2 with one line naming NODE
    assert argv is None and code == 2
    assert err.count("\n") == 1 and "NODE" in err


def test_rsync_refuses_a_node_that_is_not_the_clusters(cluster: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_text("x")
    code, _, err = rsync(str(source), ":/data", "--node", "i-0abc", "--bucket", BUCKET)
    assert code == 2 and err.count("\n") == 1 and "--node: NODE 'i-0abc' is not one of the cluster's 2 nodes" in err


def test_ssh_says_how_to_install_a_missing_plugin(cluster: dict[str, Any]) -> None:
    # GIVEN the aws CLI but no Session Manager plugin
    argv, code, err = ssh(which=lambda name: "/usr/bin/aws" if name == "aws" else None)
    # THEN exit 1 with how to install it, and nothing exec'd
    assert argv is None and code == 1
    assert "session-manager-plugin" in err and "install the Session Manager plugin" in err


def rsync(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["rsync-cluster", NAME, *argv])
    out, err = io.StringIO(), io.StringIO()
    code = cluster_access_cmd.run_rsync(args, out, err, new_token=lambda: "t0k3n")
    return code, out.getvalue(), err.getvalue()


def test_rsync_upload_stages_in_s3_and_runs_the_copy_on_the_node(cluster: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN a local directory with two files
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("a")
    (tmp_path / "data" / "sub" / "b.txt").write_text("b")
    s3 = aws.client("s3", REGION)
    # WHEN rsync-cluster copies it to the node
    code, out, err = rsync(str(tmp_path / "data"), ":/work/in", "--bucket", BUCKET)
    # THEN it staged both files, ran `aws s3 cp --recursive` on the first ACTIVE node through SSM, and cleaned up
    assert code == 0, err
    assert "staged 2 files at s3://shoal-staging/shoal/genomics/staging/t0k3n/" in out
    commands = aws.client("ssm", REGION).list_commands()["Commands"]
    assert len(commands) == 1
    assert commands[0]["DocumentName"] == "AWS-RunShellScript"
    assert commands[0]["InstanceIds"] == [cluster["active"]]
    assert commands[0]["Parameters"]["commands"] == [
        "mkdir -p /work/in && aws s3 cp --recursive s3://shoal-staging/shoal/genomics/staging/t0k3n/ /work/in"
    ]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_rsync_download_copies_on_the_node_then_from_s3(
    cluster: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the node's copy to S3 (moto runs no command: put what it would have uploaded)
    s3 = aws.client("s3", REGION)
    original_run = cluster_access_cmd.SsmCommands.run

    def run_and_upload(self: Any, instance_id: str, commands: list[str], **kwargs: Any) -> Any:
        s3.put_object(Bucket=BUCKET, Key="shoal/genomics/staging/t0k3n/out/result.txt", Body=b"42")
        return original_run(self, instance_id, commands, **kwargs)

    monkeypatch.setattr(cluster_access_cmd.SsmCommands, "run", run_and_upload)
    # WHEN rsync-cluster copies :/work/out here
    code, _, err = rsync(":/work/out", str(tmp_path / "here"), "--bucket", BUCKET, "--node", "0")
    # THEN the file arrived, the node ran the upload, and the staging prefix is gone
    assert code == 0, err
    assert (tmp_path / "here" / "out" / "result.txt").read_text() == "42"
    command = aws.client("ssm", REGION).list_commands()["Commands"][0]
    assert command["InstanceIds"] == [cluster["pending"]]
    assert (
        "aws s3 cp --recursive /work/out s3://shoal-staging/shoal/genomics/staging/t0k3n/"
        in command["Parameters"]["commands"][0]
    )
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a", "b", "--bucket", BUCKET], "exactly one of SRC and DST"),
        ([":a", ":b", "--bucket", BUCKET], "exactly one of SRC and DST"),
        (["/no/such/file", ":b", "--bucket", BUCKET], "SRC /no/such/file does not exist"),
        ([":a", "b"], "no staging bucket; pass --bucket or set SHOAL_STAGING_BUCKET"),
    ],
)
def test_bad_rsync_input_exits_2(cluster: dict[str, Any], argv: list[str], message: str) -> None:
    code, _, err = rsync(*argv)
    assert code == 2 and message in err


def test_rsync_uses_the_stacks_staging_bucket_by_default(
    cluster: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stack that outputs its staging bucket (as cdk/staging.py's does), and no --bucket
    from shared.adapters.cluster_directory import ClusterOutputs

    original = ClusterOutputs.from_stack

    def with_bucket(stack: Any, region: str) -> ClusterOutputs | None:
        stack = {
            **stack,
            "Outputs": [*stack.get("Outputs", []), {"OutputKey": "StagingBucketName", "OutputValue": BUCKET}],
        }
        return original(stack, region)

    monkeypatch.setattr(ClusterOutputs, "from_stack", staticmethod(with_bucket))
    monkeypatch.delenv("SHOAL_STAGING_BUCKET", raising=False)
    (tmp_path / "one.txt").write_text("1")
    # WHEN rsync-cluster copies a file to the node
    code, out, err = rsync(str(tmp_path / "one.txt"), ":/work/in")
    # THEN it staged through that bucket
    assert code == 0, err
    assert f"s3://{BUCKET}/shoal/genomics/staging/" in out
