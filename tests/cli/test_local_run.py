"""``shoal local run``: bad input is one line and exit 2 before anything is deployed or written; COMMAND's
environment points ``--batchSystem shoal`` at the cluster. (Whole runs: tests/e2e/test_toil_local_run.py.)"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from shared.cli import local_run
from shared.cli.main import build_parser
from shared.local import run as local
from shared.local.demo import DemoResult
from shared.local.run import LocalRunResult, command_environment


def run_cli(argv: list[str]) -> tuple[int, str]:
    args = build_parser().parse_args(["local", "run", *argv])
    err = io.StringIO()
    return local_run.run(args, err=err), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--"], "no COMMAND given"),
        ([], "no COMMAND given"),
        (["--speed", "0.5", "--", "true"], "--speed must be at least 1"),
        (["--max-nodes", "x", "--", "true"], "--max-nodes: entry 1 of 'x'"),
        (["--time-limit", "soon", "--", "true"], "--time-limit"),
        (["--node-types", "q9.nope", "--", "true"], "q9.nope"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an empty directory to work in
    monkeypatch.chdir(tmp_path)

    # WHEN the command is given bad input
    code, err = run_cli(argv)

    # THEN it says what is wrong on one line, exits 2 and writes nothing
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("shoal local run: ")
    assert list(tmp_path.iterdir()) == []


def test_the_command_after_the_separator_is_kept_whole() -> None:
    args = build_parser().parse_args(["local", "run", "--max-nodes", "2", "--", "toil", "--batchSystem", "shoal"])
    assert args.command == ["--", "toil", "--batchSystem", "shoal"]
    assert args.max_nodes == "2"


def test_the_cli_defaults_are_the_local_runs() -> None:
    args = build_parser().parse_args(["local", "run", "--", "true"])
    assert args.node_types == local.DEFAULT_NODE_TYPES
    assert args.speed == local.DEFAULT_SPEED


def test_command_environment_points_the_batch_system_at_the_cluster() -> None:
    # GIVEN the local cloud's environment and the deployed stack's outputs
    base = {"AWS_ENDPOINT_URL": "http://localhost:4566", "PATH": "/usr/bin:/bin", "HOME": "/home/me"}
    outputs = {"TableName": "shoal-local-state", "QueueUrl": "http://localhost:4566/1/q", "EventBusName": "bus"}

    # WHEN COMMAND's environment is made
    env = command_environment(base, outputs, cluster="local", region="us-west-2")

    # THEN it names the cluster as the batch system and `shoal submit` read it, keeps the endpoint,
    # and puts this Python's bin (Toil's `_toil_worker`) first on PATH
    assert env["SHOAL_CLUSTER_NAME"] == "local"
    assert env["SHOAL_TABLE_NAME"] == "shoal-local-state"
    assert env["SHOAL_QUEUE_URL"] == "http://localhost:4566/1/q"
    assert env["SHOAL_REGION"] == "us-west-2"
    assert env["SHOAL_EVENT_BUS_NAME"] == "bus"
    assert env["AWS_ENDPOINT_URL"] == "http://localhost:4566"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["PATH"].endswith("/usr/bin:/bin")


@pytest.mark.parametrize(
    ("ok", "status", "expected"), [(True, 0, 0), (True, 3, 3), (False, 0, 1), (False, 3, 1), (True, None, 1)]
)
def test_exit_status_is_the_commands_unless_a_problem(ok: bool, status: int | None, expected: int) -> None:
    demo = DemoResult(report={}, report_path=Path("r"), plot_path=Path("p"), workdir=Path("w"), ok=ok)
    assert LocalRunResult(demo=demo, command_status=status).exit_status == expected
