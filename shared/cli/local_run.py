"""``shoal local run -- COMMAND``: run any command (a Toil workflow) against a Shoal cluster on this machine.

The local cloud comes up as for ``shoal demo``; COMMAND gets ``SHOAL_*`` and the AWS endpoint, so
``--batchSystem shoal`` needs no other flag; when it has exited and the fleet is back at its minimum the
cluster is torn down and the demo's report written. Exit status: COMMAND's, or 1 when a job was lost or
run twice or the teardown left something; 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from shared.cli.demo import EXIT_FAILED, EXIT_USAGE, _duration, _numbers
from shared.domain.settings import SettingsError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = subparsers.add_parser(
        "local",
        help="a Shoal cluster on this machine (no AWS account): `shoal local run -- COMMAND`",
        description="The local cloud: moto on loopback, the stack deployed by the CDK CLI, real agents.",
    )
    verbs = local.add_subparsers(dest="local_command", required=True, metavar="VERB")
    parser = verbs.add_parser(
        "run",
        help="bring a local cluster up, run COMMAND against it, tear it down and report",
        description="Deploy a Shoal cluster into an embedded local AWS (moto), run COMMAND with SHOAL_* and the AWS "
        "endpoint set (so `--batchSystem shoal` needs no other flag), wait for the fleet to return to its "
        "minimum, tear down and write a report. Exit status: COMMAND's, or 1 if a job was lost or run twice or "
        "anything was left after teardown.",
        usage="shoal local run [OPTIONS] -- COMMAND [ARGS...]",
    )
    # shared.local needs moto (a dev dependency): its defaults are repeated here, not imported, so `shoal --help`
    # stays cheap; tests/cli check they agree.
    parser.add_argument(
        "--node-types", "--nodeTypes", default="m5.large", help="Toil's --nodeTypes (default: %(default)s)"
    )
    parser.add_argument("--min-nodes", "--minNodes", default="", help="one number per node type (default: 0 each)")
    parser.add_argument("--max-nodes", "--maxNodes", default="", help="one number per node type (default: 4 each)")
    parser.add_argument("--target-time", "--targetTime", default="5m", help="start every job within this (simulated)")
    parser.add_argument(
        "--speed", type=float, default=30.0, help="the control plane's simulated seconds per real second"
    )
    parser.add_argument("--boot-delay", default="90s", help="simulated time from instance running to agent ready")
    parser.add_argument(
        "--out", type=Path, default=Path("out/local-run"), help="logs and the report (default: %(default)s)"
    )
    parser.add_argument("--report", type=Path, help="the JSON report (default: OUT/report.json)")
    parser.add_argument(
        "--time-limit", default="30m", help="real time COMMAND and the scale-in may take (default: 30m)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from shared.local.demo import DemoError  # noqa: PLC0415
    from shared.local.demo_output import summary  # noqa: PLC0415
    from shared.local.deploy import DeployError  # noqa: PLC0415 (see add_parser)
    from shared.local.run import LocalRunError, LocalRunOptions, run_local  # noqa: PLC0415

    err = sys.stderr if err is None else err
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        if not command:
            raise ValueError("no COMMAND given: shoal local run [OPTIONS] -- COMMAND [ARGS...]")
        if args.speed < 1:
            raise ValueError(f"--speed must be at least 1, got {args.speed:g}")
        options = LocalRunOptions(
            command=command,
            node_types=args.node_types,
            min_nodes=_numbers("--min-nodes", args.min_nodes),
            max_nodes=_numbers("--max-nodes", args.max_nodes),
            target_time=_duration("--target-time", args.target_time),
            speed=args.speed,
            boot_delay=_duration("--boot-delay", args.boot_delay),
            workdir=args.out,
            report_path=args.report,
            progress_every=0.0 if args.quiet else 5.0,
            time_limit=_duration("--time-limit", args.time_limit),
        )
        # Progress and the summary go to stderr: COMMAND's own output is this command's stdout.
        result = run_local(options, err)
    except (SettingsError, ValueError) as error:
        print(f"shoal local run: {error}", file=err)
        return EXIT_USAGE
    except (DemoError, DeployError, LocalRunError) as error:
        print(f"shoal local run: {error}", file=err)
        return EXIT_FAILED
    for line in summary(result.demo):
        print(line, file=err)
    for problem in result.demo.problems:
        print(f"shoal local run: problem: {problem}", file=err)
    print(f"shoal local run: command exited {result.command_status}; exit status {result.exit_status}", file=err)
    return result.exit_status
