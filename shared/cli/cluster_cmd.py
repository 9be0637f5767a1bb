"""``shoal launch-cluster``, ``destroy-cluster``, ``status`` and ``list-clusters``: Toil's cluster utilities.

launch-cluster lives in ``cluster_launch``; what the commands share in ``cluster_common``. destroy-cluster
runs the TeardownCluster state machine: every instance tagged for the cluster ends, the leader included.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import TextIO

from shared.cli import guardrails_cmd
from shared.cli.cluster_common import (
    AWS_ERRORS,
    DEFAULT_REGION,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMED_OUT,
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
from shared.cli.cluster_launch import add_launch_parser, parse_workers, run_launch
from shared.formats.decision_record import DecisionRecord
from shared.services.cluster_utils import ClusterReport, StatusSources, status
from shared.services.ports import Clock
from shared.wiring import cluster_cli
from shared.wiring.clients import build_status_sources

__all__ = [  # what other modules and tests import from here
    "AWS_ERRORS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMED_OUT",
    "EXIT_USAGE",
    "REPO_ROOT",
    "Io",
    "add_parser",
    "parse_workers",
    "region_of",
    "run_launch",
    "streams",
]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_launch_parser(subparsers)

    destroy = subparsers.add_parser(
        "destroy-cluster",
        help="drain and terminate every node of a cluster and turn its autoscaling off",
        description="Run the cluster's TeardownCluster state machine (the stack stays; `cdk destroy` removes it).",
    )
    destroy.add_argument("name", metavar="NAME")
    destroy.add_argument("--force", action="store_true", help="do not wait for running jobs")
    destroy.add_argument("--grace", help="how long to wait for running jobs (seconds or 1h; default 1h)")
    common_wait_options(destroy, default_timeout="2h")
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


# --- destroy-cluster ----------------------------------------------------------------------------------


def run_destroy(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, *, clock: Clock | None = None
) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        timeout, check_every, payload = wait_options(args)
        payload["force"] = bool(args.force)
        if args.grace is not None:
            payload["grace_seconds"] = int(duration("--grace", args.grace))
        if "poll_seconds" in payload:
            payload["job_poll_seconds"] = payload["poll_seconds"]
        deployed = cluster_cli.cluster_directory(region).outputs(args.name)
        print(
            f"tearing down cluster {args.name} in {region}{' (forced)' if args.force else ''}", file=io.out, flush=True
        )
        result = start_and_wait(
            region, deployed.teardown_state_machine_arn, verb="destroy", payload=payload, timeout=timeout,
            check_every=check_every, clock=clock, io=io,
        )  # fmt: skip
    except ClusterInputError as error:
        return io.fail("destroy-cluster", error, EXIT_USAGE)
    except cluster_cli.ClusterNotFoundError as error:
        return io.fail("destroy-cluster", error, EXIT_FAILED)
    except AWS_ERRORS as error:
        return io.fail("destroy-cluster", error, EXIT_FAILED)
    return finish(
        "destroy-cluster",
        f"cluster {args.name} has no nodes left; `cdk destroy {cluster_cli.stack_name(args.name)}` removes the stack",
        result,
        timeout,
        io,
    )


# --- status and list-clusters ------------------------------------------------------------------------


def status_sources(outputs: cluster_cli.ClusterOutputs) -> StatusSources:
    return build_status_sources(outputs)


def run_status(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        outputs = cluster_cli.cluster_directory(region).outputs(args.name)
        report = status(
            status_sources(outputs),
            cluster=args.name,
            region=region,
            decisions=max(0, args.decisions),
            dashboard_url=outputs.dashboard_url,
            tolerated=AWS_ERRORS,
        )
    except cluster_cli.ClusterNotFoundError as error:
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
    guard_lines = guardrails_cmd.status_lines(report.guard, time.time())
    out.write("\n" if guard_lines else "")
    for line in guard_lines:
        out.write(f"{line}\n")
    if report.dashboard_url:
        out.write(f"\ndashboard: {report.dashboard_url}\n")


def run_list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    io = streams(out, err)
    region = region_of(args)
    try:
        clusters = cluster_cli.cluster_directory(region).list_clusters()
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
