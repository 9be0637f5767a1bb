"""The ``shoal`` command line: Toil's cluster utilities, served by Shoal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shared.cli import (
    cluster_access_cmd,
    cluster_cmd,
    demo,
    graph,
    local_run,
    node_types_cmd,
    plan,
    simulate_cmd,
    submit,
)
from shared.cli.usage import ShoalArgumentParser, UsageError, fail, quiet_broken_pipe


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = ShoalArgumentParser(
        prog="shoal", description="Serverless autoscaling clusters on AWS."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan.add_parser(subparsers)
    node_types_cmd.add_parser(subparsers)
    graph.add_parser(subparsers)
    submit.add_submit_parser(subparsers)
    demo.add_parser(subparsers)
    local_run.add_parser(subparsers)
    simulate_cmd.add_parser(subparsers)
    cluster_cmd.add_parser(subparsers)
    cluster_access_cmd.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as error:
        return fail(args.command, error)
    except BrokenPipeError:
        return quiet_broken_pipe()
    try:
        sys.stdout.flush()  # a closed pipe shows here when the output was small enough to stay buffered
    except BrokenPipeError:
        return quiet_broken_pipe()
    return code


if __name__ == "__main__":
    sys.exit(main())
