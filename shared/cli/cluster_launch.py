"""``shoal launch-cluster``: deploy (with ``--deploy``), launch the static nodes, and start the leader.

The infrastructure is the CDK stack ``shoal-NAME``; launch-cluster starts the LaunchCluster state machine
of a deployed stack (and, for a new cluster, prints or with ``--deploy`` runs the ``cdk deploy`` that
creates it). Long runs print each state as the execution enters it.

``--workers`` takes one entry per node type, Toil style: a plain number ``n`` is ``n`` static nodes,
launched now and never scaled in (minNodes 0, maxNodes n: no autoscaled extra); a range ``lo-hi``
is an autoscaled type with minNodes lo and maxNodes hi and no static nodes. ``2,0-5`` with
``--nodeTypes m5.large,c5.xlarge``: two static m5.large, zero to five c5.xlarge.

``--leaderNodeType t3.medium`` also starts the cluster's leader once the launch succeeded (cdk/leader.py,
shared/adapters/leader.py): ``shoal ssh-cluster NAME`` opens a shell there, where ``toil-cwl-runner
--batchSystem shoal --jobStore aws:REGION:NAME ...`` just works. Without it, any machine with the stack's
outputs (and the ``shoal[toil]`` extra) is the leader, as docs/toil.md says.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from shared.cli import guardrails_cmd
from shared.cli.cluster_common import (
    AWS_ERRORS,
    EXIT_FAILED,
    EXIT_USAGE,
    REPO_ROOT,
    ClusterInputError,
    Io,
    common_wait_options,
    duration,
    finish,
    region_of,
    start_and_wait,
    streams,
    wait_options,
)
from shared.domain.catalog import REGIONS, UnknownInstanceTypeError, instance_type
from shared.domain.settings import ClusterSettings, SettingsError
from shared.services.cluster_utils import Outcome
from shared.services.ports import Clock
from shared.wiring import cluster_cli
from shared.wiring.cluster_cli import stack_name

WORKERS_ENTRY = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")


def add_launch_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    launch = subparsers.add_parser(
        "launch-cluster",
        help="launch a cluster's static nodes and turn its autoscaling on",
        description="Run the cluster's LaunchCluster state machine (deploying its stack first with --deploy).",
    )
    launch.add_argument("name", metavar="NAME", help="cluster name (the stack is shoal-NAME)")
    launch.add_argument(
        "--nodeTypes", "--node-types", dest="node_types", help="Toil's --nodeTypes, e.g. m5.large,c5.xlarge:0.2"
    )
    launch.add_argument("--workers", help="per node type: n static nodes, or lo-hi autoscaled (min-max), e.g. 2,0-5")
    launch.add_argument("--nodeStorage", "--node-storage", dest="node_storage", help="GiB of root volume per node")
    launch.add_argument(
        "--maxNodeStorage", "--max-node-storage", dest="max_node_storage",
        help="the largest root volume, GiB, a round may give a node its jobs need (default 1024)",
    )  # fmt: skip
    launch.add_argument("--zone", help="availability zone, e.g. us-west-2a")
    launch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="stack tag (repeatable)")
    launch.add_argument("--targetTime", "--target-time", dest="target_time", help="seconds (or 30m)")
    launch.add_argument("--betaInertia", "--beta-inertia", dest="beta_inertia")
    launch.add_argument("--scaleInterval", "--scale-interval", dest="scale_interval", help="seconds (or 2m)")
    launch.add_argument("--preemptibleCompensation", "--preemptible-compensation", dest="preemptible_compensation")
    launch.add_argument(
        "--maxPreemptions", "--max-preemptions", dest="max_preemptions",
        help="spot reclaims a job may suffer before it runs on on-demand nodes only (default 2; jobs may set theirs)",
    )  # fmt: skip
    guardrails_cmd.add_launch_flags(launch)
    launch.add_argument("--deploy", action="store_true", help="run `cdk deploy` if the stack is not deployed")
    launch.add_argument(
        "--leaderNodeType",
        "--leader-node-type",
        dest="leader_node_type",
        help="also start the cluster's leader on this instance type, e.g. t3.medium (default: no leader instance; "
        "any machine with the stack's outputs is the leader)",
    )
    common_wait_options(launch, default_timeout="40m")
    launch.set_defaults(run=run_launch)


@dataclass(frozen=True, slots=True, kw_only=True)
class Workers:
    static_nodes: tuple[int, ...]
    min_nodes: tuple[int, ...]
    max_nodes: tuple[int, ...]


def parse_workers(text: str) -> Workers:
    """Toil-style ``--workers``: ``n`` static nodes, or ``lo-hi`` autoscaled, one entry per node type."""
    static: list[int] = []
    low: list[int] = []
    high: list[int] = []
    for entry in text.split(","):
        match = WORKERS_ENTRY.fullmatch(entry.strip())
        if not match:
            raise ClusterInputError(
                f"--workers {text!r}: entry {entry.strip()!r} is neither a number of static nodes (2) "
                "nor an autoscaled range min-max (0-5)"
            )
        first, second = int(match.group(1)), match.group(2)
        if second is None:
            static.append(first)
            low.append(0)
            high.append(first)
        else:
            if int(second) < first:
                raise ClusterInputError(f"--workers {text!r}: range {entry.strip()!r} has its max below its min")
            static.append(0)
            low.append(first)
            high.append(int(second))
    return Workers(static_nodes=tuple(static), min_nodes=tuple(low), max_nodes=tuple(high))


SETTING_FLAGS = {
    "node_types": "--nodeTypes",
    "max_node_storage": "--maxNodeStorage",  # before node_storage: _name_the_flag takes the first name in the message
    "node_storage": "--nodeStorage",
    "zone": "--zone",
    "target_time": "--targetTime",
    "beta_inertia": "--betaInertia",
    "scale_interval": "--scaleInterval",
    "preemptible_compensation": "--preemptibleCompensation",
    "max_preemptions": "--maxPreemptions",
    **guardrails_cmd.FLAGS,
}
CONTEXT_KEYS = {  # settings name → the -c key cdk/settings_loader.py reads (Toil's names)
    "name": "cluster",
    "node_types": "nodeTypes",
    "region": "region",
    "zone": "zone",
    "static_nodes": "staticNodes",
    "min_nodes": "minNodes",
    "max_nodes": "maxNodes",
    "node_storage": "nodeStorage",
    "max_node_storage": "maxNodeStorage",
    "target_time": "targetTime",
    "beta_inertia": "betaInertia",
    "scale_interval": "scaleInterval",
    "preemptible_compensation": "preemptibleCompensation",
    "max_preemptions": "maxPreemptions",
    **guardrails_cmd.CONTEXT_KEYS,
}


def launch_settings(args: argparse.Namespace, region: str) -> tuple[ClusterSettings, dict[str, str]]:
    """The validated settings from the flags, and the ``-c`` context that makes ``cdk deploy`` build them."""
    if region not in REGIONS:
        raise ClusterInputError(f"--region {region!r} has no prices in the catalog; use one of {', '.join(REGIONS)}")
    if not args.node_types:
        raise ClusterInputError(f"--nodeTypes is required to deploy a new cluster {args.name!r}, e.g. m5.large")
    values: dict[str, object] = {"name": args.name, "region": region}
    for key in SETTING_FLAGS:
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.workers:
        workers = parse_workers(args.workers)
        values.update(
            static_nodes=",".join(map(str, workers.static_nodes)),
            min_nodes=",".join(map(str, workers.min_nodes)),
            max_nodes=",".join(map(str, workers.max_nodes)),
        )
    for key in ("target_time", "scale_interval"):
        if key in values:
            duration(SETTING_FLAGS[key], str(values[key]))
    try:
        settings = ClusterSettings.from_mapping(values)
    except SettingsError as error:
        raise ClusterInputError(_name_the_flag(str(error))) from None
    if args.workers and len(parse_workers(args.workers).static_nodes) != len(settings.node_types.split(",")):
        raise ClusterInputError(
            f"--workers {args.workers!r} needs one entry per node type of --nodeTypes {settings.node_types!r}"
        )
    context = {CONTEXT_KEYS[k]: str(v) for k, v in values.items() if k in CONTEXT_KEYS}
    return settings, context


def _name_the_flag(message: str) -> str:
    for key, flag in {
        **SETTING_FLAGS,
        "min_nodes": "--workers",
        "max_nodes": "--workers",
        "static_nodes": "--workers",
        "name": "NAME",
    }.items():
        if key in message:
            return f"{flag}: {message}"
    return message


def check_setting_flags(args: argparse.Namespace, region: str) -> None:
    """Bad settings flags are exit 2 before AWS is asked anything, whether or not the stack turns out deployed."""
    if args.node_types:
        launch_settings(args, region)
        return
    if args.workers:
        parse_workers(args.workers)
    for key in ("target_time", "scale_interval"):
        if getattr(args, key) is not None:
            duration(SETTING_FLAGS[key], getattr(args, key))
    values: dict[str, object] = {"name": args.name, "region": region, "node_types": "m5.large"}  # stands in
    values.update({k: getattr(args, k) for k in SETTING_FLAGS if k != "node_types" and getattr(args, k) is not None})
    try:
        ClusterSettings.from_mapping(values)
    except SettingsError as error:
        raise ClusterInputError(_name_the_flag(str(error))) from None


def _tags(pairs: Sequence[str]) -> list[str]:
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not key:
            raise ClusterInputError(f"--tag {pair!r} must be KEY=VALUE, e.g. --tag team=genomics")
    return list(pairs)


def cdk_deploy_argv(name: str, context: dict[str, str], tags: Sequence[str]) -> list[str]:
    argv = ["cdk", "deploy", stack_name(name), "--require-approval", "never"]
    for key, value in context.items():
        argv += ["-c", f"{key}={value}"]
    for tag in tags:
        argv += ["--tags", tag]
    return argv


Runner = Callable[[list[str], Path, dict[str, str]], int]


def run_subprocess(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    return subprocess.run(argv, cwd=cwd, env=env, check=False).returncode


def run_launch(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    clock: Clock | None = None,
    deploy_runner: Runner = run_subprocess,
) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        timeout, check_every, payload = wait_options(args)
        tags = _tags(args.tag)
        if region not in REGIONS:
            raise ClusterInputError(
                f"--region {region!r} has no prices in the catalog; use one of {', '.join(REGIONS)}"
            )
        check_setting_flags(args, region)
        leader_type = leader_node_type(getattr(args, "leader_node_type", None))
        deployed = _deployed(args, region, tags, io, deploy_runner)
        if deployed is None:
            return EXIT_FAILED
        print(f"launching cluster {args.name} in {region}", file=io.out, flush=True)
        result = start_and_wait(
            region, deployed.launch_state_machine_arn, verb="launch", payload=payload, timeout=timeout,
            check_every=check_every, clock=clock, io=io,
        )  # fmt: skip
        if result.outcome is Outcome.SUCCEEDED and leader_type is not None:
            start_leader(deployed, leader_type, io)
    except ClusterInputError as error:
        return io.fail("launch-cluster", error, EXIT_USAGE)
    except cluster_cli.ClusterNotFoundError as error:
        return io.fail("launch-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("launch-cluster", error, EXIT_FAILED)
    return finish("launch-cluster", f"cluster {args.name} is up", result, timeout, io)


def _deployed(
    args: argparse.Namespace, region: str, tags: list[str], io: Io, deploy_runner: Runner
) -> cluster_cli.ClusterOutputs | None:
    """The deployed stack's outputs, deploying it first with --deploy; None (said why) when it is not there."""
    directory = cluster_cli.cluster_directory(region)
    deployed = directory.find(args.name)
    if deployed is None:
        settings, context = launch_settings(args, region)
        argv = cdk_deploy_argv(settings.name, context, tags)
        if not args.deploy:
            print(
                f"stack {stack_name(args.name)} is not deployed in {region}; deploy it first with:",
                file=io.out,
            )
            print(f"  {shlex.join(argv)}", file=io.out)
            print("then run launch-cluster again (or pass --deploy to do both)", file=io.out)
            return None
        print(f"deploying {stack_name(args.name)}: {shlex.join(argv)}", file=io.out, flush=True)
        env = {**os.environ, "PATH": f"{REPO_ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        code = deploy_runner(argv, REPO_ROOT, env)
        if code != 0:
            io.fail("launch-cluster", f"cdk deploy exited with status {code}; nothing launched", EXIT_FAILED)
            return None
        return directory.outputs(args.name)
    if _settings_flags_given(args):
        print(
            f"shoal launch-cluster: warning: {stack_name(args.name)} is already deployed; settings flags apply "
            "only to a new deploy (redeploy with cdk deploy -c ... to change them)",
            file=io.err,
        )
    if args.lease is not None:  # on a deployed stack --lease renews (on a new one it is a setting of the deploy)
        guardrails_cmd.renew(deployed, duration("--lease", args.lease), now=time.time(), out=io.out, err=io.err)
    return deployed


def leader_node_type(text: str | None) -> str | None:
    """The --leaderNodeType, checked against the catalog (exit 2 before AWS is asked anything)."""
    if text is None:
        return None
    try:
        return instance_type(text.strip()).name
    except UnknownInstanceTypeError as error:
        raise ClusterInputError(f"--leaderNodeType: {error}") from None


def start_leader(deployed: cluster_cli.ClusterOutputs, node_type: str, io: Io) -> str:
    """Start the cluster's leader (or find the running one); its instance id."""
    if deployed.leader_launch_template_id is None:
        raise ClusterInputError(
            f"--leaderNodeType: stack {deployed.stack_name} has no leader launch template; redeploy it with this "
            "version of Shoal (cdk deploy)"
        )
    instance = cluster_cli.leader(deployed.region).launch(
        deployed.name,
        launch_template_id=deployed.leader_launch_template_id,
        instance_type=node_type,
        subnet_id=deployed.leader_subnet_id,
    )
    print(
        f"leader {instance} ({node_type}) is starting; `shoal ssh-cluster {deployed.name}` opens a shell on it",
        file=io.out,
        flush=True,
    )
    return instance


def _settings_flags_given(args: argparse.Namespace) -> bool:
    given = any(getattr(args, key) is not None for key in SETTING_FLAGS if key != "lease")  # --lease renews
    return given or bool(args.workers) or bool(args.tag)
