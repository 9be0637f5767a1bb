"""What each ``shoal`` command imports before it runs: the AWS SDK, moto and matplotlib only where needed.

moto and matplotlib cost seconds of CPU to import (moto builds its EC2 catalogues at import); a command that
plans a queue offline must not pay for them, nor for boto3. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("moto", "matplotlib", "boto3", "botocore")
AWS_COMMANDS = {
    "submit",
    "launch-cluster",
    "destroy-cluster",
    "status",
    "list-clusters",
    "ssh-cluster",
    "rsync-cluster",
}


def heavy_imports(code: str) -> list[str]:
    """The heavy top-level packages loaded after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
    )
    loaded = json.loads(result.stdout.splitlines()[-1])
    return [name for name in HEAVY if name in loaded]


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - AWS_COMMANDS))
def test_an_offline_command_parses_without_aws_sdk_moto_or_matplotlib(command: str) -> None:
    # GIVEN a command that needs no AWS to parse its arguments
    # WHEN its parser is built, as `shoal COMMAND ...` builds it
    loaded = heavy_imports(f"from shared.cli.main import build_parser\nbuild_parser([{command!r}])")
    # THEN none of the heavy packages were imported
    assert loaded == []


def test_every_command_parser_together_imports_no_moto_or_matplotlib() -> None:
    # GIVEN `shoal --help`, which builds every command's parser
    loaded = heavy_imports("from shared.cli.main import build_parser\nbuild_parser()")
    # THEN moto and matplotlib stay out (the AWS commands' modules import boto3 for their adapters)
    assert "moto" not in loaded
    assert "matplotlib" not in loaded


def test_shoal_plan_runs_without_aws_sdk_moto_or_matplotlib(tmp_path: Path) -> None:
    # GIVEN a small queue
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "cores": 1, "memory": "2GiB", "disk": "1GiB", "wall_time": 60}\n')
    # WHEN `shoal plan` runs on it, whole, in-process
    code = (
        "from shared.cli.main import main\n"
        f"assert main(['plan', '--jobs', {str(jobs)!r}, '--node-types', 'm5.large', '--json']) == 0"
    )
    # THEN it never imported the heavy packages
    assert heavy_imports(code) == []


def test_the_command_table_matches_what_each_module_adds() -> None:
    # GIVEN every command's module, as `shoal --help` builds them
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # THEN the table names exactly the commands the modules add (a new command must be listed)
    assert list(subparsers.choices) == list(COMMANDS)


@pytest.mark.parametrize("argv", [["--help"], [], ["no-such-command"]])
def test_the_list_of_commands_imports_no_command_module(argv: list[str]) -> None:
    # GIVEN `shoal --help`, `shoal` alone or a mistyped command: only the list of commands is shown
    # WHEN the parser for it is built
    loaded = heavy_imports(f"from shared.cli.main import build_parser\nbuild_parser({argv!r})")
    # THEN not even the AWS SDK is imported (the list comes from the table's summaries)
    assert loaded == []


def test_each_summary_is_what_its_module_says() -> None:
    # GIVEN every command's own parser, and the light list `shoal --help` shows
    full = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    light = next(a for a in build_parser(["--help"])._actions if isinstance(a, argparse._SubParsersAction))
    # THEN both list the same commands with the same one-line help, in the same order
    own = [(action.dest, action.help) for action in full._choices_actions]
    assert [(action.dest, action.help) for action in light._choices_actions] == own
