"""The ``shoal`` command line: Toil's cluster utilities, served by Shoal."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from shared.cli.usage import ShoalArgumentParser, UsageError, fail, quiet_broken_pipe


class Command(NamedTuple):
    module: str  # imported only when the command is given
    function: str  # what adds the command's parser
    summary: str  # its line in `shoal --help`: the module's own help, repeated so the list imports no module


# Each command, in the order `shoal --help` lists them. Only the module of the command given is imported: `shoal plan`
# does not load boto3 for `shoal status`' sake, and `shoal --help` loads none (tests/cli/test_import_cost.py, which
# also checks each summary is its module's own help; a module listed twice adds several commands).
COMMANDS: dict[str, Command] = {
    "plan": Command(
        "shared.cli.plan", "add_parser", "show the cheapest fleet that starts every job within the target time"
    ),
    "node-types": Command(
        "shared.cli.node_types_cmd", "add_parser", "list the instance types Shoal knows, with usable capacity"
    ),
    "graph": Command("shared.cli.graph", "add_parser", "draw the launch and teardown state machines as Graphviz DOT"),
    "submit": Command("shared.cli.submit", "add_submit_parser", "submit the jobs of a JOBS.jsonl file to a cluster"),
    "demo": Command(
        "shared.cli.demo", "add_parser", "run the whole system on this machine (no AWS account) and report what it did"
    ),
    "local": Command(
        "shared.cli.local_run",
        "add_parser",
        "a Shoal cluster on this machine (no AWS account): `shoal local run -- COMMAND`",
    ),
    "simulate": Command(
        "shared.cli.simulate_cmd",
        "add_parser",
        "replay a workload trace through the real scaler on a virtual clock; report cost and waits",
    ),
    "launch-cluster": Command(
        "shared.cli.cluster_cmd", "add_parser", "launch a cluster's static nodes and turn its autoscaling on"
    ),
    "destroy-cluster": Command(
        "shared.cli.cluster_cmd",
        "add_parser",
        "drain and terminate every node of a cluster and turn its autoscaling off",
    ),
    "status": Command(
        "shared.cli.cluster_cmd", "add_parser", "a cluster's state, nodes, queue, decisions and executions"
    ),
    "list-clusters": Command("shared.cli.cluster_cmd", "add_parser", "the Shoal clusters deployed in a region"),
    "ssh-cluster": Command(
        "shared.cli.cluster_access_cmd",
        "add_parser",
        "open a shell on a node through SSM Session Manager (no SSH keys, no open port)",
    ),
    "rsync-cluster": Command(
        "shared.cli.cluster_access_cmd",
        "add_parser",
        "copy files to or from a node through an S3 staging prefix (`:PATH` is on the node)",
    ),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: only its command's, when it names one; when it names none (``shoal --help``,
    a typo), the list of commands alone, from their summaries; every command's when ``argv`` is None."""
    parser: argparse.ArgumentParser = ShoalArgumentParser(
        prog="shoal", description="Serverless autoscaling clusters on AWS."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((arg for arg in argv or () if not arg.startswith("-")), None)
    if argv is not None and named not in COMMANDS:
        for name, command in COMMANDS.items():
            subparsers.add_parser(name, help=command.summary)
        return parser
    adders = [(c.module, c.function) for c in ([COMMANDS[named]] if named in COMMANDS else COMMANDS.values())]
    for module, function in dict.fromkeys(adders):
        add: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        add = getattr(importlib.import_module(module), function)
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
