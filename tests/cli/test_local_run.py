"""``shoal local run``: bad input is one line and exit 2 before anything is deployed or written; COMMAND's
environment points ``--batchSystem shoal`` at the cluster. (Whole runs: tests/e2e/test_toil_local_run.py.)"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import boto3
import pytest

from shared.cli import local_run
from shared.cli.main import build_parser
from shared.local import run as local
from shared.local.demo import DemoResult
from shared.local.moto_server import FAKE_CREDENTIALS
from shared.local.run import LocalRunResult, command_environment, write_credentials_file


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


def test_command_environment_points_the_batch_system_at_the_cluster(tmp_path: Path) -> None:
    # GIVEN the local cloud's environment and the deployed stack's outputs
    base = {"AWS_ENDPOINT_URL": "http://localhost:4566", "PATH": "/usr/bin:/bin", "HOME": "/home/me"}
    outputs = {"TableName": "shoal-local-state", "QueueUrl": "http://localhost:4566/1/q", "EventBusName": "bus"}

    # WHEN COMMAND's environment is made
    env = command_environment(base, outputs, cluster="local", region="us-west-2", credentials_file=tmp_path / "c")

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


def test_command_environment_has_no_static_keys_and_the_sdk_finds_them_in_a_file(tmp_path: Path) -> None:
    # GIVEN the local cloud's environment, keys included (as the local cloud sets them in this process)
    base = {"AWS_ENDPOINT_URL": "http://localhost:4566", "AWS_REGION": "us-west-2", **FAKE_CREDENTIALS,
            "AWS_SESSION_TOKEN": "t", "PATH": "/usr/bin:/bin"}  # fmt: skip

    # WHEN COMMAND's environment is made, with the keys written to a credentials file
    credentials = write_credentials_file(tmp_path / "aws-credentials", base)
    env = command_environment(base, {"TableName": "t", "QueueUrl": "q"}, cluster="local", region="us-west-2",
                              credentials_file=credentials)  # fmt: skip

    # THEN no key is in it (Toil would save it in the job store for every worker), and the real SDK, given
    # only that environment, still finds the local cloud's keys
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        found = boto3.Session().get_credentials()
    assert found is not None and found.access_key == FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    assert found.method == "shared-credentials-file"


@pytest.mark.parametrize(
    ("ok", "status", "expected"), [(True, 0, 0), (True, 3, 3), (False, 0, 1), (False, 3, 1), (True, None, 1)]
)
def test_exit_status_is_the_commands_unless_a_problem(ok: bool, status: int | None, expected: int) -> None:
    demo = DemoResult(report={}, report_path=Path("r"), plot_path=Path("p"), workdir=Path("w"), ok=ok)
    assert LocalRunResult(demo=demo, command_status=status).exit_status == expected
