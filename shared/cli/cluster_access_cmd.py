"""``shoal ssh-cluster`` and ``shoal rsync-cluster``: a shell on a node and file copies, with no SSH at all.

ssh-cluster opens an SSM Session Manager session (no keys, no open port): with no NODE, on the cluster's
leader (``launch-cluster --leaderNodeType``) as a login shell, where Toil and the plugin are set up; without
a leader, on the first ACTIVE worker. rsync-cluster copies through an
S3 staging prefix, ``s3://BUCKET/shoal/NAME/staging/<uuid>/``: one side of SRC/DST starts with ``:`` (Toil's
syntax for "on the node"); the local side goes to or comes from S3 here, and an SSM Run Command on the
node runs ``aws s3 cp --recursive`` for the other half. The staging prefix is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from shared.cli.cluster_common import AWS_ERRORS, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Io, region_of, streams
from shared.domain.cluster_state import NodeRecord, NodeState
from shared.wiring import cluster_cli
from shared.wiring.clients import build_node_store
from shared.wiring.cluster_cli import S3Staging, SsmCommands, TransferError

BUCKET_ENV = "SHOAL_STAGING_BUCKET"
INSTALL_AWS = "install the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
INSTALL_PLUGIN = (
    "install the Session Manager plugin: "
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"
)

Exec = Callable[[str, list[str]], NoReturn]
Which = Callable[[str], str | None]


class NodeChoiceError(ValueError):
    """NODE names no node of the cluster."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ssh = subparsers.add_parser(
        "ssh-cluster", help="open a shell on a node through SSM Session Manager (no SSH keys, no open port)"
    )
    ssh.add_argument("name", metavar="NAME")
    ssh.add_argument(
        "node",
        metavar="NODE",
        nargs="?",
        help="instance id or index in the node list (default: the leader, else the first ACTIVE node)",
    )
    ssh.add_argument("--node", dest="node_option", metavar="NODE", help="the same as NODE, Toil style")
    ssh.add_argument("--region", default=None)
    ssh.set_defaults(run=run_ssh)

    rsync = subparsers.add_parser(
        "rsync-cluster", help="copy files to or from a node through an S3 staging prefix (`:PATH` is on the node)"
    )
    rsync.add_argument("name", metavar="NAME")
    rsync.add_argument("src", metavar="SRC")
    rsync.add_argument("dst", metavar="DST")
    rsync.add_argument("--node", help="instance id or index in the node list (default: first ACTIVE)")
    rsync.add_argument(
        "--bucket", help=f"S3 bucket for the staging prefix (default: ${BUCKET_ENV}, else the stack's staging bucket)"
    )
    rsync.add_argument("--region", default=None)
    rsync.set_defaults(run=run_rsync)


def choose_node(nodes: Sequence[NodeRecord], wanted: str | None) -> str:
    """An instance id from NODE: an instance id as is, an index into the node list, or the first ACTIVE node."""
    listed = sorted((n for n in nodes if n.state is not NodeState.GONE), key=lambda n: (n.launched_at, n.instance_id))
    if wanted and wanted.startswith("i-"):
        if wanted not in {n.instance_id for n in listed}:
            raise NodeChoiceError(
                f"NODE {wanted[:40]!r} is not one of the cluster's {len(listed)} nodes; `shoal status` lists them"
            )
        return wanted
    if wanted is not None:
        if not (wanted.isascii() and wanted.isdigit()):
            raise NodeChoiceError(
                f"NODE {wanted[:40]!r} is neither an instance id (i-...) nor an index into the node list"
            )
        if len(wanted) > 9 or int(wanted) >= len(listed):
            raise NodeChoiceError(f"NODE {wanted[:12]} is out of range; the cluster has {len(listed)} nodes (0-based)")
        return listed[int(wanted)].instance_id
    active = [n for n in listed if n.state is NodeState.ACTIVE]
    if not active:
        raise NodeChoiceError("the cluster has no ACTIVE node; `shoal launch-cluster` starts its static nodes")
    return active[0].instance_id


def _node_for(name: str, region: str, wanted: str | None) -> str:
    outputs = cluster_cli.cluster_directory(region).outputs(name)
    return choose_node(build_node_store(outputs.table_name, region).list_nodes(), wanted)


def ssh_argv(instance_id: str, region: str, *, login_shell: bool = False) -> list[str]:
    """``aws ssm start-session``; a login shell (``bash -l``: /etc/profile.d) on the leader."""
    argv = ["aws", "ssm", "start-session", "--target", instance_id, "--region", region]
    if login_shell:
        argv += ["--document-name", "AWS-StartInteractiveCommand", "--parameters", '{"command":["bash -l"]}']
    return argv


def _target(name: str, region: str, wanted: str | None) -> tuple[str, bool]:
    """(instance id, is the leader): the node asked for, else the running leader, else the first ACTIVE node."""
    if wanted is None:
        leader = cluster_cli.leader(region).find(name)
        if leader is not None:
            return leader, True
    return _node_for(name, region, wanted), False


def _exec(file: str, argv: list[str]) -> NoReturn:
    os.execvp(file, argv)


def run_ssh(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    exec_fn: Exec = _exec,
    which: Which = shutil.which,
) -> int:
    io = streams(out, err)
    region = region_of(args)
    if which("aws") is None:
        return io.fail("ssh-cluster", f"the `aws` command is not on PATH; {INSTALL_AWS}", EXIT_FAILED)
    if which("session-manager-plugin") is None:
        return io.fail("ssh-cluster", f"`session-manager-plugin` is not on PATH; {INSTALL_PLUGIN}", EXIT_FAILED)
    wanted = args.node if args.node is not None else getattr(args, "node_option", None)
    try:
        instance_id, leader = _target(args.name, region, wanted)
    except NodeChoiceError as error:
        return io.fail("ssh-cluster", error, EXIT_USAGE)
    except cluster_cli.ClusterNotFoundError as error:
        return io.fail("ssh-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("ssh-cluster", error, EXIT_FAILED)
    argv = ssh_argv(instance_id, region, login_shell=leader)
    what = f"the leader {instance_id}" if leader else instance_id
    print(f"connecting to {what}: {shlex.join(argv)}", file=io.out, flush=True)
    exec_fn("aws", argv)


def staging_prefix(name: str, token: str) -> str:
    return f"shoal/{name}/staging/{token}/"


def run_rsync(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> int:
    io = streams(out, err)
    region = region_of(args)
    remote_src, remote_dst = args.src.startswith(":"), args.dst.startswith(":")
    if remote_src == remote_dst:
        return io.fail(
            "rsync-cluster",
            "exactly one of SRC and DST must be on the node, written :PATH (e.g. :/data/out)",
            EXIT_USAGE,
        )
    if not remote_src and not Path(args.src).exists():
        return io.fail("rsync-cluster", f"SRC {args.src} does not exist", EXIT_USAGE)
    try:
        outputs = cluster_cli.cluster_directory(region).outputs(args.name)
        # The stack's staging bucket, unless one is named (an older stack has none).
        bucket = args.bucket or os.environ.get(BUCKET_ENV) or outputs.staging_bucket
        if not bucket:
            return io.fail("rsync-cluster", f"no staging bucket; pass --bucket or set {BUCKET_ENV}", EXIT_USAGE)
        nodes = build_node_store(outputs.table_name, region).list_nodes()
        instance_id = choose_node(nodes, args.node)
    except NodeChoiceError as error:
        return io.fail("rsync-cluster", f"--node: {error}", EXIT_USAGE)
    except cluster_cli.ClusterNotFoundError as error:
        return io.fail("rsync-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("rsync-cluster", error, EXIT_FAILED)
    prefix = staging_prefix(args.name, new_token())
    staging, commands = cluster_cli.file_transfer(region)
    try:
        if remote_dst:
            return _upload(io, staging, commands, Path(args.src), args.dst[1:], bucket, prefix, instance_id)
        return _download(io, staging, commands, args.src[1:], Path(args.dst), bucket, prefix, instance_id)
    except TransferError as error:
        return io.fail("rsync-cluster", error, EXIT_FAILED)
    finally:
        try:
            staging.remove(bucket, prefix)
        except TransferError as error:
            print(f"shoal rsync-cluster: warning: {error}", file=io.err)


def _upload(  # noqa: PLR0917 - one transfer's facts
    io: Io, staging: S3Staging, commands: SsmCommands, src: Path, dst: str, bucket: str, prefix: str, node: str
) -> int:
    count = staging.upload(src, bucket, prefix)
    print(f"staged {count} files at s3://{bucket}/{prefix}", file=io.out, flush=True)
    s3_url = f"s3://{bucket}/{prefix}"
    script = (
        f"aws s3 cp {shlex.quote(s3_url + src.name)} {shlex.quote(dst)}"
        if src.is_file()
        else f"mkdir -p {shlex.quote(dst)} && aws s3 cp --recursive {shlex.quote(s3_url)} {shlex.quote(dst)}"
    )
    return _on_node(io, commands, node, script, f"copied {src} to {node}:{dst}")


def _download(  # noqa: PLR0917
    io: Io, staging: S3Staging, commands: SsmCommands, src: str, dst: Path, bucket: str, prefix: str, node: str
) -> int:
    s3_url = f"s3://{bucket}/{prefix}"
    # A directory is copied recursively; a file keeps its name under the prefix.
    script = (
        f"if [ -d {shlex.quote(src)} ]; then aws s3 cp --recursive {shlex.quote(src)} {shlex.quote(s3_url)}; "
        f"else aws s3 cp {shlex.quote(src)} {shlex.quote(s3_url + Path(src).name)}; fi"
    )
    code = _on_node(io, commands, node, script, f"staged {node}:{src} at {s3_url}")
    if code != EXIT_OK:
        return code
    count = staging.download(bucket, prefix, dst)
    print(f"copied {count} files to {dst}", file=io.out)
    return EXIT_OK


def _on_node(io: Io, commands: SsmCommands, node: str, script: str, done: str) -> int:
    result = commands.run(node, [script], comment="shoal rsync-cluster")
    if result.status != "Success":
        detail = " ".join((result.stderr or result.stdout).split())[:300]
        return io.fail(
            "rsync-cluster",
            f"the copy on {node} ended {result.status} (command {result.command_id}): {detail}",
            EXIT_FAILED,
        )
    print(done, file=io.out, flush=True)
    return EXIT_OK
