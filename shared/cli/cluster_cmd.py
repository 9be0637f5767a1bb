"""``shoal launch-cluster``, ``destroy-cluster``, ``status`` and ``list-clusters``: Toil's cluster utilities.

The infrastructure is the CDK stack ``shoal-NAME``; launch-cluster starts the LaunchCluster state machine
of a deployed stack (and, for a new cluster, prints or with ``--deploy`` runs the ``cdk deploy`` that
creates it). Long runs print each state as the execution enters it. Exit status: 0 the run succeeded,
1 it failed (or AWS could not be asked; the cause on one line), 2 bad input, 3 we stopped waiting
(the execution keeps running; its ARN is printed).

``--workers`` takes one entry per node type, Toil style: a plain number ``n`` is ``n`` static nodes,
launched now and never scaled in (minNodes 0, maxNodes n: no autoscaled extra); a range ``lo-hi``
is an autoscaled type with minNodes lo and maxNodes hi and no static nodes. ``2,0-5`` with
``--nodeTypes m5.large,c5.xlarge``: two static m5.large, zero to five c5.xlarge.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from shared.adapters.aws import AwsConfigError
from shared.adapters.cluster_directory import (
    CloudFormationClusterDirectory,
    ClusterDirectoryError,
    ClusterNotFoundError,
    ClusterOutputs,
    stack_name,
)
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.executions import ExecutionsError, StepFunctionsExecutions
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.domain.catalog import REGIONS
from shared.domain.settings import ClusterSettings, SettingsError
from shared.domain.units import UnitError, format_duration, parse_duration
from shared.formats.decision_record import DecisionRecord
from shared.services.cluster_utils import ClusterReport, Outcome, RunResult, StatusSources, run_and_wait, status
from shared.services.ports import JobQueueError, StoreError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGION = "us-west-2"
AWS_ERRORS = (ClusterDirectoryError, ExecutionsError, StoreError, JobQueueError, AwsConfigError)
WORKERS_ENTRY = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")


class ClusterInputError(ValueError):
    """Bad command-line input; the message names the flag."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Io:
    out: TextIO
    err: TextIO

    def fail(self, verb: str, message: object, code: int) -> int:
        print(f"shoal {verb}: {message}", file=self.err)
        return code


def streams(out: TextIO | None, err: TextIO | None) -> Io:
    return Io(sys.stdout if out is None else out, sys.stderr if err is None else err)


# --- parsers ------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    launch.add_argument("--deploy", action="store_true", help="run `cdk deploy` if the stack is not deployed")
    _common_wait_options(launch, default_timeout="40m")
    launch.set_defaults(run=run_launch)

    destroy = subparsers.add_parser(
        "destroy-cluster",
        help="drain and terminate every node of a cluster and turn its autoscaling off",
        description="Run the cluster's TeardownCluster state machine (the stack stays; `cdk destroy` removes it).",
    )
    destroy.add_argument("name", metavar="NAME")
    destroy.add_argument("--force", action="store_true", help="do not wait for running jobs")
    destroy.add_argument("--grace", help="how long to wait for running jobs (seconds or 1h; default 1h)")
    _common_wait_options(destroy, default_timeout="2h")
    destroy.set_defaults(run=run_destroy)

    show = subparsers.add_parser("status", help="a cluster's state, nodes, queue, decisions and executions")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--region", default=None, help=f"AWS region (default: $AWS_REGION, else {DEFAULT_REGION})")
    show.add_argument("--decisions", type=int, default=5, help="how many recent scaling decisions to show")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(run=run_status)

    listing = subparsers.add_parser("list-clusters", help="the Shoal clusters deployed in a region")
    listing.add_argument("--region", default=None, help=f"AWS region (default: $AWS_REGION, else {DEFAULT_REGION})")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(run=run_list)


def _common_wait_options(parser: argparse.ArgumentParser, *, default_timeout: str) -> None:
    parser.add_argument("--region", default=None, help=f"AWS region (default: $AWS_REGION, else {DEFAULT_REGION})")
    parser.add_argument(
        "--timeout", default=default_timeout, help=f"stop waiting after this long (default {default_timeout})"
    )
    parser.add_argument(
        "--poll", help="seconds the state machine waits between its checks of EC2 and the agents (default 15)"
    )
    parser.add_argument("--check-every", default="2", help=argparse.SUPPRESS)  # how often we ask Step Functions


def region_of(args: argparse.Namespace) -> str:
    return str(args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)


# --- launch-cluster -----------------------------------------------------------------------------------


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
    "node_storage": "--nodeStorage",
    "zone": "--zone",
    "target_time": "--targetTime",
    "beta_inertia": "--betaInertia",
    "scale_interval": "--scaleInterval",
    "preemptible_compensation": "--preemptibleCompensation",
    "max_preemptions": "--maxPreemptions",
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
    "target_time": "targetTime",
    "beta_inertia": "betaInertia",
    "scale_interval": "scaleInterval",
    "preemptible_compensation": "preemptibleCompensation",
    "max_preemptions": "maxPreemptions",
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
            _duration(SETTING_FLAGS[key], str(values[key]))
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


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as error:
        raise ClusterInputError(f"{flag}: {error}") from None


def check_setting_flags(args: argparse.Namespace, region: str) -> None:
    """Bad settings flags are exit 2 before AWS is asked anything, whether or not the stack turns out deployed."""
    if args.node_types:
        launch_settings(args, region)
        return
    if args.workers:
        parse_workers(args.workers)
    for key in ("target_time", "scale_interval"):
        if getattr(args, key) is not None:
            _duration(SETTING_FLAGS[key], getattr(args, key))
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
    clock: SystemClock | None = None,
    deploy_runner: Runner = run_subprocess,
) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        timeout, check_every, payload = _wait_options(args)
        tags = _tags(args.tag)
        if region not in REGIONS:
            raise ClusterInputError(
                f"--region {region!r} has no prices in the catalog; use one of {', '.join(REGIONS)}"
            )
        check_setting_flags(args, region)
        directory = CloudFormationClusterDirectory(region)
        deployed = directory.find(args.name)
        if deployed is None:
            settings, context = launch_settings(args, region)
            argv = cdk_deploy_argv(settings.name, context, tags)
            if not args.deploy:
                print(f"stack {stack_name(args.name)} is not deployed in {region}; deploy it first with:", file=io.out)
                print(f"  {shlex.join(argv)}", file=io.out)
                print("then run launch-cluster again (or pass --deploy to do both)", file=io.out)
                return EXIT_FAILED
            print(f"deploying {stack_name(args.name)}: {shlex.join(argv)}", file=io.out, flush=True)
            env = {
                **os.environ,
                "PATH": f"{REPO_ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            code = deploy_runner(argv, REPO_ROOT, env)
            if code != 0:
                return io.fail("launch-cluster", f"cdk deploy exited with status {code}; nothing launched", EXIT_FAILED)
            deployed = directory.outputs(args.name)
        elif _settings_flags_given(args):
            print(
                f"shoal launch-cluster: warning: {stack_name(args.name)} is already deployed; settings flags apply "
                "only to a new deploy (redeploy with cdk deploy -c ... to change them)",
                file=io.err,
            )
        print(f"launching cluster {args.name} in {region}", file=io.out, flush=True)
        result = run_and_wait(
            StepFunctionsExecutions(region),
            deployed.launch_state_machine_arn,
            verb="launch",
            payload=payload,
            clock=clock or SystemClock(),
            timeout=timeout,
            check_every=check_every,
            progress=lambda state: print(f"→ {state}", file=io.out, flush=True),
        )
    except ClusterInputError as error:
        return io.fail("launch-cluster", error, EXIT_USAGE)
    except ClusterNotFoundError as error:
        return io.fail("launch-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("launch-cluster", error, EXIT_FAILED)
    return _finish("launch-cluster", f"cluster {args.name} is up", result, timeout, io)


def _settings_flags_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, key) is not None for key in SETTING_FLAGS) or bool(args.workers) or bool(args.tag)


def _wait_options(args: argparse.Namespace) -> tuple[float, float, dict[str, object]]:
    timeout = _duration("--timeout", args.timeout)
    check_every = _duration("--check-every", args.check_every)
    payload: dict[str, object] = {}
    if args.poll is not None:
        poll = _duration("--poll", args.poll)
        payload["poll_seconds"] = int(poll)
    return timeout, check_every, payload


def _finish(verb: str, success: str, result: RunResult, timeout: float, io: Io) -> int:
    if result.outcome is Outcome.SUCCEEDED:
        print(success, file=io.out)
        return EXIT_OK
    if result.outcome is Outcome.TIMED_OUT:
        return io.fail(
            verb,
            f"still running after {format_duration(timeout)}; the execution goes on: {result.execution_arn}",
            EXIT_TIMED_OUT,
        )
    return io.fail(verb, f"failed: {result.cause} ({result.execution_arn})", EXIT_FAILED)


# --- destroy-cluster ----------------------------------------------------------------------------------


def run_destroy(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, *, clock: SystemClock | None = None
) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        timeout, check_every, payload = _wait_options(args)
        payload["force"] = bool(args.force)
        if args.grace is not None:
            payload["grace_seconds"] = int(_duration("--grace", args.grace))
        if "poll_seconds" in payload:
            payload["job_poll_seconds"] = payload["poll_seconds"]
        deployed = CloudFormationClusterDirectory(region).outputs(args.name)
        print(
            f"tearing down cluster {args.name} in {region}{' (forced)' if args.force else ''}", file=io.out, flush=True
        )
        result = run_and_wait(
            StepFunctionsExecutions(region),
            deployed.teardown_state_machine_arn,
            verb="destroy",
            payload=payload,
            clock=clock or SystemClock(),
            timeout=timeout,
            check_every=check_every,
            progress=lambda state: print(f"→ {state}", file=io.out, flush=True),
        )
    except ClusterInputError as error:
        return io.fail("destroy-cluster", error, EXIT_USAGE)
    except ClusterNotFoundError as error:
        return io.fail("destroy-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("destroy-cluster", error, EXIT_FAILED)
    return _finish(
        "destroy-cluster",
        f"cluster {args.name} has no nodes left; `cdk destroy {stack_name(args.name)}` removes the stack",
        result,
        timeout,
        io,
    )


# --- status and list-clusters ------------------------------------------------------------------------


def status_sources(outputs: ClusterOutputs) -> StatusSources:
    table = StateTable(outputs.table_name, region=outputs.region)
    return StatusSources(
        status=DynamoClusterStore(table),
        nodes=DynamoNodeStore(table),
        queue=SqsJobQueue(outputs.queue_url, region=outputs.region),
        decisions=DynamoDecisionLog(table),
        executions=StepFunctionsExecutions(outputs.region),
        machines=outputs.machines,
    )


def run_status(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        outputs = CloudFormationClusterDirectory(region).outputs(args.name)
        report = status(
            status_sources(outputs),
            cluster=args.name,
            region=region,
            decisions=max(0, args.decisions),
            dashboard_url=outputs.dashboard_url,
            tolerated=AWS_ERRORS,
        )
    except ClusterNotFoundError as error:
        return io.fail("status", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("status", error, EXIT_FAILED)
    if args.json:
        json.dump(report.to_json(), io.out, default=str)
        io.out.write("\n")
    else:
        _print_status(report, io.out)
    for problem in report.problems:
        print(f"shoal status: could not read {problem}", file=io.err)
    return EXIT_FAILED if report.problems else EXIT_OK


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_status(report: ClusterReport, out: TextIO) -> None:
    record = report.status
    if record is None:
        out.write(f"cluster {report.cluster} ({report.region}): never launched\n")
    else:
        why = f": {record.reason}" if record.reason else ""
        out.write(
            f"cluster {report.cluster} ({report.region}): {record.status} since {_when(record.updated_at)}{why}\n"
        )
    out.write(f"queue: {report.queue_visible} waiting, {report.queue_in_flight} running\n")
    total = sum(g.count for g in report.nodes)
    out.write(f"\nnodes: {total}\n")
    for group in report.nodes:
        out.write(f"  {group.count:>4}  {group.instance_type:<16} {group.market:<10} {group.state}\n")
    out.write("\nrecent decisions:\n" if report.decisions else "\nno scaling decisions yet\n")
    for entry in report.decisions:
        decision = DecisionRecord.from_json(entry)
        said = "; ".join(decision.reasons) or "(no reasons recorded)"
        out.write(f"  {_when(decision.at)}  {said}\n")
    out.write("\nrecent executions:\n" if report.executions else "\nno launch or teardown executions yet\n")
    for execution in report.executions:
        out.write(f"  {_when(execution.started_at)}  {execution.machine:<16} {execution.status:<10} {execution.name}\n")
    if report.dashboard_url:
        out.write(f"\ndashboard: {report.dashboard_url}\n")


def run_list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        clusters = CloudFormationClusterDirectory(region).list_clusters()
    except AWS_ERRORS as error:
        return io.fail("list-clusters", error, EXIT_FAILED)
    if args.json:
        rows = [
            {"name": c.name, "region": c.region, "stack": c.stack_name, "stack_status": c.stack_status}
            for c in clusters
        ]
        json.dump(rows, io.out)
        io.out.write("\n")
        return EXIT_OK
    if not clusters:
        print(f"no Shoal clusters in {region}", file=io.out)
    for c in clusters:
        print(f"{c.name:<32} {c.stack_status:<20} {c.stack_name}", file=io.out)
    return EXIT_OK
