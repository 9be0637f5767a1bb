"""The ``shoal`` command line: Toil's cluster utilities, served by Shoal."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from shared.cli.usage import ShoalArgumentParser, UsageError, fail, quiet_broken_pipe

# Each command's module and the function that adds its parser, in the order `shoal --help` lists them. Only
# the module of the command given is imported: `shoal plan` does not load boto3 for `shoal status`' sake
# (tests/cli/test_import_cost.py; a module listed twice adds several commands).
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("shared.cli.plan", "add_parser"),
    "node-types": ("shared.cli.node_types_cmd", "add_parser"),
    "graph": ("shared.cli.graph", "add_parser"),
    "submit": ("shared.cli.submit", "add_submit_parser"),
    "demo": ("shared.cli.demo", "add_parser"),
    "local": ("shared.cli.local_run", "add_parser"),
    "simulate": ("shared.cli.simulate_cmd", "add_parser"),
    "launch-cluster": ("shared.cli.cluster_cmd", "add_parser"),
    "destroy-cluster": ("shared.cli.cluster_cmd", "add_parser"),
    "status": ("shared.cli.cluster_cmd", "add_parser"),
    "list-clusters": ("shared.cli.cluster_cmd", "add_parser"),
    "ssh-cluster": ("shared.cli.cluster_access_cmd", "add_parser"),
    "rsync-cluster": ("shared.cli.cluster_access_cmd", "add_parser"),
}


# What `shoal --help` says of each command: the listing is built from here, so it imports no command's module
# (the AWS commands' modules load boto3). tests/cli/test_import_cost.py checks each line is its module's own.
SUMMARIES: dict[str, str] = {
    "plan": "show the cheapest fleet that starts every job within the target time",
    "node-types": "list the instance types Shoal knows, with usable capacity",
    "graph": "draw the launch and teardown state machines as Graphviz DOT",
    "submit": "submit the jobs of a JOBS.jsonl file to a cluster",
    "demo": "run the whole system on this machine (no AWS account) and report what it did",
    "local": "a Shoal cluster on this machine (no AWS account): `shoal local run -- COMMAND`",
    "simulate": "replay a workload trace through the real scaler on a virtual clock; report cost and waits",
    "launch-cluster": "launch a cluster's static nodes and turn its autoscaling on",
    "destroy-cluster": "drain and terminate every node of a cluster and turn its autoscaling off",
    "status": "a cluster's state, nodes, queue, decisions and executions",
    "list-clusters": "the Shoal clusters deployed in a region",
    "ssh-cluster": "open a shell on a node through SSM Session Manager (no SSH keys, no open port)",
    "rsync-cluster": "copy files to or from a node through an S3 staging prefix (`:PATH` is on the node)",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: only its command's, when it names one; when it names none (``shoal --help``,
    a typo), the list of commands alone, from ``SUMMARIES``; every command's when ``argv`` is None."""
    parser: argparse.ArgumentParser = ShoalArgumentParser(
        prog="shoal", description="Serverless autoscaling clusters on AWS."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((arg for arg in argv or () if not arg.startswith("-")), None)
    if argv is not None and named not in COMMANDS:
        for name, summary in SUMMARIES.items():
            subparsers.add_parser(name, help=summary)
        return parser
    wanted = [COMMANDS[named]] if named in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module, function in wanted:
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
