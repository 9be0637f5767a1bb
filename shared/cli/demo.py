"""``shoal demo``: deploy a cluster into an embedded local AWS, run a bursty workload through it, report.

No AWS account is needed: moto serves AWS on loopback, the real CDK app is deployed into it, and the real
handlers and agents run on an accelerated clock (see ``shared/local``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TextIO

from shared.cli.jobs_file import JobsFileError, read_jobs
from shared.domain.jobs import Job
from shared.domain.settings import SettingsError
from shared.domain.units import UnitError, parse_counts, parse_duration
from shared.local.demo_defaults import DEFAULT_NODE_TYPES, DEFAULT_OUT, DEFAULT_WORKLOAD

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_BURSTS = 2  # the demo clamps it to the number of jobs
MAX_SPEED = 100_000.0  # simulated seconds per real second: beyond this the local cloud cannot keep up anyway


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole system on this machine (no AWS account) and report what it did",
        description="Deploy a Shoal cluster into an embedded local AWS (moto) with the CDK CLI, launch it, run a "
        "bursty workload on a simulated clock, tear it down, and write a report and a plot.",
    )
    parser.add_argument(
        "--workload",
        type=Path,
        default=DEFAULT_WORKLOAD,
        help="JOBS.jsonl in shoal plan's format (default: %(default)s)",
    )
    parser.add_argument("--jobs", type=int, help="use only the first N jobs of the workload")
    parser.add_argument("--node-types", "--nodeTypes", default=DEFAULT_NODE_TYPES, help="Toil's --nodeTypes")
    parser.add_argument("--min-nodes", "--minNodes", default="", help="one number per node type (default: 0 each)")
    parser.add_argument("--max-nodes", "--maxNodes", default="", help="one number per node type (default: 8 each)")
    parser.add_argument("--target-time", "--targetTime", default="30m", help="start every job within this")
    parser.add_argument(
        "--speed",
        type=float,
        default=120.0,
        help="at most this many simulated seconds per real second (the lockstep clock waits for the control plane; "
        "with --real or --chaos: exactly this many)",
    )
    parser.add_argument(
        "--bursts", type=int, help="submit the workload in this many equal bursts (default: 2, at most one per job)"
    )
    parser.add_argument("--burst-gap", default="40m", help="simulated time between bursts")
    parser.add_argument("--boot-delay", default="90s", help="simulated time from instance running to agent ready")
    parser.add_argument(
        "--real", action="store_true", help="run the jobs' commands instead of sleeping their wall_time"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="working directory for logs (default: %(default)s)"
    )
    parser.add_argument(
        "--keep-work", type=Path, metavar="DIR", help="keep the nodes' work files (executions.log, job outputs) in DIR"
    )
    parser.add_argument("--report", type=Path, help="the JSON report (default: OUT/report.json)")
    parser.add_argument("--plot", type=Path, help="the PNG plot (default: OUT/demand.png)")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="real seconds the workload may take")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--chaos", type=int, metavar="SEED", help="inject faults at random from SEED and check invariants"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from shared.local.demo import DemoError, DemoOptions, run_demo  # noqa: PLC0415 (see add_parser)
    from shared.local.demo_output import summary  # noqa: PLC0415
    from shared.local.deploy import DeployError  # noqa: PLC0415

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        jobs = _workload(args)
        options = DemoOptions(
            jobs=jobs,
            node_types=args.node_types,
            min_nodes=_numbers("--min-nodes", args.min_nodes),
            max_nodes=_numbers("--max-nodes", args.max_nodes),
            target_time=_duration("--target-time", args.target_time),
            speed=args.speed,
            bursts=DEFAULT_BURSTS if args.bursts is None else args.bursts,
            burst_gap=_duration("--burst-gap", args.burst_gap),
            boot_delay=_duration("--boot-delay", args.boot_delay),
            real=args.real,
            workdir=args.out,
            keep_work=args.keep_work,
            report_path=args.report,
            plot_path=args.plot,
            progress_every=0.0 if args.quiet else 2.0,
            time_limit=args.time_limit,
            chaos=args.chaos,
        )
        result = run_demo(options, out)
    except (JobsFileError, SettingsError, ValueError) as error:
        print(f"shoal demo: {error}", file=err)
        return EXIT_USAGE
    except (DemoError, DeployError) as error:
        print(f"shoal demo: {error}", file=err)
        return EXIT_FAILED
    for line in summary(result):
        print(line, file=out)
    for problem in result.problems:
        print(f"shoal demo: problem: {problem}", file=err)
    return EXIT_OK if result.ok else EXIT_FAILED


def _workload(args: argparse.Namespace) -> list[Job]:
    """The jobs to run, after every numeric flag is checked: nothing is deployed for input that cannot work."""
    jobs = read_jobs(args.workload)
    if args.jobs is not None:
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        if args.jobs > len(jobs):
            raise ValueError(
                f"--jobs {args.jobs} is more than the {len(jobs)} jobs in {args.workload}; give at most {len(jobs)}"
            )
        jobs = jobs[: args.jobs]
    if not (math.isfinite(args.speed) and 1 <= args.speed <= MAX_SPEED):
        raise ValueError(f"--speed must be from 1 to {MAX_SPEED:g}, got {args.speed:g}")
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ValueError(f"--time-limit must be a positive number of seconds, got {args.time_limit:g}")
    if args.bursts is not None and not 1 <= args.bursts <= max(1, len(jobs)):
        raise ValueError(f"--bursts must be from 1 to the number of jobs ({len(jobs)}), got {args.bursts}")
    return jobs


def _numbers(flag: str, text: str) -> tuple[int, ...]:
    try:
        return parse_counts(text)
    except UnitError as error:
        raise ValueError(f"{flag}: {error}") from None


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as error:
        raise ValueError(f"{flag}: {error}") from None
