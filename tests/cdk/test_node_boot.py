"""The node's boot, run here for real where it can be: the agent installed from the synthesized code asset,
and the job credentials read by botocore the way a job's Toil reads them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jmespath

from cdk import node_boot
from tests.cdk.conftest import Synthesized


def _staged_code(synthesized: Synthesized) -> Path:
    return synthesized.outdir / synthesized.stack.code.asset.asset_path


def _run(lines: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = "\n".join(["set -euo pipefail", *lines])
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, env=env, check=False)


def test_the_asset_holds_the_agent_and_the_plugin_and_not_the_cli_or_the_local_cloud(synthesized: Synthesized) -> None:
    staged = _staged_code(synthesized)
    assert (staged / "shared" / "worker" / "main.py").is_file()
    assert (staged / "shared" / "toil" / "batch_system.py").is_file()
    assert (staged / "toil_batch_system_shoal.py").is_file()
    for left_out in ("shared/cli", "shared/local", "shared/sim", "tests", "cdk", "functions", ".git", ".venv"):
        assert not (staged / left_out).exists(), left_out
    assert not list(staged.rglob("__pycache__"))


def test_the_user_datas_install_part_installs_an_agent_that_starts(synthesized: Synthesized, tmp_path: Path) -> None:
    # GIVEN the asset zipped as the CDK publishes it
    archive = Path(shutil.make_archive(str(tmp_path / "agent"), "zip", _staged_code(synthesized)))
    target = tmp_path / "opt" / "agent"
    # WHEN the user data's unpack-and-check lines run (this Python stands in for the node's venv)
    done = _run(node_boot.unpack_agent(zip_path=str(archive), target=str(target), python=sys.executable), tmp_path)
    # THEN the agent imports from the unpacked code, not from this checkout
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "shared" / "__init__.py")
    # AND the agent's entry point runs from there: without its settings it stops with one line, exit 2
    started = subprocess.run(
        [sys.executable, "-m", "shared.worker.main"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2
    assert started.stderr.strip() == (
        "shoal-worker: environment variable SHOAL_QUEUE_URL is not set; the worker user data sets it"
    )


def test_a_job_reads_the_job_role_credentials_the_host_writes(tmp_path: Path) -> None:
    # GIVEN what `aws sts assume-role` answers, shaped by the user data's --query
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    answer = {
        "Credentials": {
            "AccessKeyId": "ASIAJOBROLE",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": expires.isoformat(),
        },
        "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/jobs/ip-10-0-0-1"},
    }
    (tmp_path / "credentials.json").write_text(json.dumps(jmespath.search(node_boot.CREDENTIALS_QUERY, answer)))
    config = tmp_path / "config"
    config.write_text(node_boot.credentials_config(str(tmp_path), "us-east-1"))
    # WHEN boto3 in a job's container reads its config (AWS_CONFIG_FILE, as the runner sets it) and nothing else
    probe = (
        "import boto3, json; s = boto3.Session(); c = s.get_credentials(); f = c.get_frozen_credentials(); "
        "print(json.dumps([f.access_key, f.secret_key, f.token, c.method, s.region_name]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # THEN it has the job role's short-lived credentials, from the process botocore refreshes them with
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["ASIAJOBROLE", "secret", "token", "custom-process", "us-east-1"]
