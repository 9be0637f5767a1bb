"""Jobs on a worker run in the appliance, in a container that reaches neither IMDS nor the Docker socket.

There is no Docker engine here, so the container's side is checked by the ``docker run`` command the runner
really spawns: a stand-in ``docker`` program on the runner's path records its arguments.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB
from shared.worker.config import WorkerConfig, WorkerConfigError
from shared.worker.isolation import Isolation, IsolationSettingError
from shared.worker.runner import JobProcess

APPLIANCE = "quay.io/ucsc_cgl/toil:9.6.0-6793fc7f112785e13a229691d6de23225e73339e-py3.10"
NODE_ENV = {  # what cdk/node_boot.py writes into the agent's environment on a worker
    "PATH": "/usr/bin:/bin",
    "SHOAL_JOB_IMAGE": APPLIANCE,
    "SHOAL_JOB_NETWORK": "shoal-jobs",
    "SHOAL_JOB_CREDENTIALS": "/run/shoal/job-credentials",
}


def toil_job(**fields: object) -> Job:
    return Job(
        id="toil-7",
        shape=Shape(resources=Resources(cores=1, memory=GiB, disk=GiB), wall_time=60),
        command="_toil_contained_executor abc==",
        env={"TOIL_WORKDIR": "/x"},
        **fields,  # type: ignore[arg-type]
    )


def job_argv(job: Job, tmp_path: Path, environ: dict[str, str]) -> list[str]:
    argv, _ = JobProcess(job, attempt=1, work_root=tmp_path, base_env=environ).argv()
    return argv


def test_a_job_without_an_image_runs_in_the_appliance_with_no_socket_and_the_job_network(tmp_path: Path) -> None:
    # GIVEN a Toil job (no image of its own) on a worker with the default settings
    # WHEN the runner builds its command
    argv = job_argv(toil_job(), tmp_path, NODE_ENV)
    # THEN it is a container of the appliance, on the job network, running the job's command with no entry point
    assert argv[:2] == ["docker", "run"]
    assert argv[-4:] == [APPLIANCE, "sh", "-c", "_toil_contained_executor abc=="]
    assert argv[argv.index("--network") + 1] == "shoal-jobs"
    assert argv[argv.index("--entrypoint") + 1] == ""
    at = argv.index("--security-opt")
    assert argv[at : at + 2] == ["--security-opt", "no-new-privileges"]
    # AND nothing of the Docker socket, nor the host network, reaches it
    assert not any("docker.sock" in a for a in argv)
    assert "host" not in argv
    # AND it finds the job role's credentials through a read-only mount, not through IMDS
    assert "/run/shoal/job-credentials:/run/shoal/job-credentials:ro" in argv
    assert "AWS_CONFIG_FILE=/run/shoal/job-credentials/config" in argv


def test_the_agents_own_environment_does_not_reach_the_job(tmp_path: Path) -> None:
    # GIVEN an agent environment with the cluster's queue and its isolation settings
    environ = {**NODE_ENV, "SHOAL_QUEUE_URL": "https://sqs/q", "AWS_ACCESS_KEY_ID": "AKIA..."}
    argv = job_argv(toil_job(), tmp_path, environ)
    passed = {argv[i + 1].partition("=")[0] for i, a in enumerate(argv) if a == "-e"}
    # THEN only what Shoal tells every job and the job's own env are passed, by name
    assert "TOIL_WORKDIR" in passed and "SHOAL_JOB_ID" in passed and "SHOAL_JOB_TOKEN" in passed
    assert not passed & {"SHOAL_QUEUE_URL", "AWS_ACCESS_KEY_ID", "SHOAL_JOB_IMAGE", "PATH"}


def test_the_docker_allowance_mounts_the_socket(tmp_path: Path) -> None:
    argv = job_argv(toil_job(), tmp_path, {**NODE_ENV, "SHOAL_JOBS_MAY_REACH": "docker"})
    assert "/var/run/docker.sock:/var/run/docker.sock" in argv


def test_a_job_naming_its_own_image_keeps_its_entry_point_and_is_isolated_the_same(tmp_path: Path) -> None:
    argv = job_argv(toil_job(image="ubuntu:24.04"), tmp_path, NODE_ENV)
    assert argv[-4] == "ubuntu:24.04" and "--entrypoint" not in argv
    assert argv[argv.index("--network") + 1] == "shoal-jobs" and not any("docker.sock" in a for a in argv)


def test_without_a_job_image_jobs_stay_processes_as_on_the_local_cloud(tmp_path: Path) -> None:
    argv = job_argv(toil_job(), tmp_path, {"PATH": "/usr/bin:/bin"})
    assert argv[0] == "sh"


def test_the_runner_really_spawns_that_container(tmp_path: Path) -> None:
    # GIVEN a stand-in docker program that records its arguments
    record = tmp_path / "docker-argv.json"
    fake = tmp_path / "docker"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # WHEN the runner runs a Toil job on a worker
    result = JobProcess(
        toil_job(), attempt=1, work_root=tmp_path / "work", base_env=NODE_ENV, docker=str(fake), kill_grace=0.5
    ).run()
    # THEN the process it started was docker run of the appliance, without the socket, on the job network
    assert result.succeeded, result.reason()
    argv = json.loads(record.read_text())
    assert argv[0] == "run" and argv[-4] == APPLIANCE
    assert argv[argv.index("--network") + 1] == "shoal-jobs"
    assert not any("docker.sock" in a for a in argv)


@pytest.mark.parametrize("value", ["root", "docker,imds", " , metadata,x"])
def test_an_unknown_allowance_stops_the_agent_with_one_line(value: str) -> None:
    with pytest.raises(IsolationSettingError, match="SHOAL_JOBS_MAY_REACH"):
        Isolation.from_env({"SHOAL_JOBS_MAY_REACH": value})
    environ = {
        "SHOAL_QUEUE_URL": "q",
        "SHOAL_DLQ_URL": "d",
        "SHOAL_TABLE_NAME": "t",
        "SHOAL_IMDS_URL": "off",
        "SHOAL_NODE_ID": "i-1",
        "AWS_REGION": "us-west-2",
        "SHOAL_JOBS_MAY_REACH": value,
    }
    with pytest.raises(WorkerConfigError, match="SHOAL_JOBS_MAY_REACH") as raised:
        WorkerConfig.from_env(environ)
    assert "\n" not in str(raised.value)


def test_both_allowances_read_together() -> None:
    isolation = Isolation.from_env({"SHOAL_JOBS_MAY_REACH": "metadata, docker"})
    assert isolation.allow_docker and isolation.allow_metadata
