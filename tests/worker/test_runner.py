"""The job runner with real processes: exit codes, timeout kills, output tail, env, working dir, memory limit.

Docker has no engine on the development machine or in CI, so image jobs are checked by their argv only.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.worker.runner import OUTPUT_TAIL_BYTES, JobProcess, RunResult, docker_argv, shell_argv, slug
from shared.worker.tickets import Ticket
from tests.worker.conftest import wait_until


def make_job(command: str | None = "true", **fields: object) -> Job:
    resources = fields.pop("resources", Resources(cores=1, memory=256 * MiB, disk=GiB))
    return Job(
        id=str(fields.pop("id", "job-1")),
        shape=Shape(resources=resources, wall_time=60),  # type: ignore[arg-type]
        command=command,
        **fields,  # type: ignore[arg-type]
    )


def run(job: Job, tmp_path: Path, **options: object) -> RunResult:
    return JobProcess(job, attempt=1, work_root=tmp_path, kill_grace=0.5, **options).run()  # type: ignore[arg-type]


def test_a_successful_command(tmp_path: Path) -> None:
    # GIVEN a job that prints and exits 0  WHEN it runs  THEN it succeeded and its output is kept
    result = run(make_job("echo hello; echo oops >&2"), tmp_path)
    assert result.succeeded
    assert result.exit_code == 0
    assert result.output_tail == "hello\noops\n"
    assert result.duration >= 0


def test_a_failing_command_reports_its_exit_code(tmp_path: Path) -> None:
    # GIVEN a job that exits 3  WHEN it runs  THEN it failed with exit code 3
    result = run(make_job("echo bad; exit 3"), tmp_path)
    assert not result.succeeded
    assert result.exit_code == 3
    assert result.reason() == "exit code 3"
    assert result.output_tail == "bad\n"


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # GIVEN a job with a background child that would outlive the shell, and a 0.3 s timeout
    pid_file = tmp_path / "child.pid"
    job = make_job(f"sleep 60 & echo $! > {pid_file}; sleep 60", timeout=0.3)
    # WHEN it runs
    result = run(job, tmp_path / "work")
    # THEN it was killed on time, and so was its child
    assert result.timed_out and not result.succeeded
    assert result.duration < 5
    assert result.reason().startswith("timed out after")
    child = int(pid_file.read_text())
    wait_until(lambda: not _alive(child), timeout=5, what="the child to die")  # SIGKILL lands asynchronously


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_output_tail_keeps_the_last_4_kib(tmp_path: Path) -> None:
    # GIVEN a job printing 10,000 numbered lines  WHEN it runs  THEN only the last 4 KiB are kept
    result = run(make_job("seq 1 10000"), tmp_path)
    assert len(result.output_tail.encode()) == OUTPUT_TAIL_BYTES
    assert result.output_tail.endswith("9999\n10000\n")


def test_environment_is_merged_and_the_job_env_wins(tmp_path: Path) -> None:
    # GIVEN an agent environment and a job env that overrides one variable
    job = make_job('echo "$FROM_AGENT $GREETING $SHOAL_JOB_ID $SHOAL_JOB_CORES"', env={"GREETING": "job"})
    # WHEN it runs  THEN it sees the agent's, Shoal's and its own variables
    result = run(job, tmp_path, base_env={"FROM_AGENT": "agent", "GREETING": "agent", "PATH": os.environ["PATH"]})
    assert result.output_tail == "agent job job-1 1\n"


def test_each_attempt_gets_a_fresh_working_directory_that_is_removed_after(tmp_path: Path) -> None:
    # GIVEN a job that writes into its working directory and prints where it is
    job = make_job('pwd; echo "$TMPDIR"; ls -A; touch scratch')
    # WHEN it runs twice
    processes = [JobProcess(job, attempt=1, work_root=tmp_path, kill_grace=0.5) for _ in range(2)]
    first, second = (process.run() for process in processes)
    # THEN each ran in its own empty directory under the work root, with TMPDIR pointing at it
    first_dir, first_tmp, *rest = first.output_tail.splitlines()
    second_dir = second.output_tail.splitlines()[0]
    assert first_dir == first_tmp and not rest
    assert Path(first_dir).parent == tmp_path and first_dir != second_dir
    # AND the directories are gone, while each run's outcome stays until its end is recorded (forget)
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted(f"{p.name}{suffix}" for p in processes for suffix in (".exit", ".out", ".ticket"))
    assert all(
        Ticket(job_id="job-1", attempt=1, token=p.token, name=p.name).exit_status(tmp_path) == 0 for p in processes
    )
    for process in processes:
        process.forget()
    assert list(tmp_path.iterdir()) == []


def test_keep_work_dir_leaves_the_directory_for_debugging(tmp_path: Path) -> None:
    process = JobProcess(make_job("touch kept"), attempt=1, work_root=tmp_path, keep_work_dir=True)
    assert process.run().succeeded
    assert (process.work_dir / "kept").exists()


def test_memory_limit_stops_a_job_that_allocates_more_than_it_asked_for(tmp_path: Path) -> None:
    # GIVEN a job that asked for 256 MiB and allocates 512 MiB
    allocate = "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'"
    job = make_job(allocate)
    # WHEN it runs with the limit enforced  THEN the allocation fails
    limited = run(job, tmp_path)
    assert not limited.succeeded
    assert "MemoryError" in limited.output_tail
    # AND without the limit it succeeds
    assert run(job, tmp_path, enforce_memory=False).succeeded


def test_a_job_within_its_memory_runs_normally(tmp_path: Path) -> None:
    job = make_job("python3 -c 'x = bytearray(50 * 1024 * 1024); print(len(x))'")
    assert run(job, tmp_path).output_tail == f"{50 * MiB}\n"


def test_shell_argv_applies_a_floor_to_tiny_memory_limits() -> None:
    assert shell_argv("true", memory_limit=None) == ["sh", "-c", "true"]
    argv = shell_argv("true", memory_limit=1)
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == [str(64 * MiB // 1024), "true"]


def test_cancel_stops_a_running_job(tmp_path: Path) -> None:
    # GIVEN a long job running in a thread
    process = JobProcess(make_job("sleep 30"), attempt=1, work_root=tmp_path, kill_grace=0.5)
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(process.run()))
    thread.start()
    _wait_for_process(process)
    # WHEN the agent cancels it  THEN it ends at once, marked cancelled, not as a job failure of its own
    process.cancel()
    thread.join(timeout=5)
    assert results and results[0].cancelled and not results[0].succeeded
    assert results[0].reason() == "stopped by the agent"


def test_cancel_before_start_kills_it_on_start(tmp_path: Path) -> None:
    process = JobProcess(make_job("sleep 30"), attempt=1, work_root=tmp_path)
    process.cancel()
    result = process.run()
    assert result.cancelled and result.duration < 5


def test_a_job_without_a_command_or_image_fails_to_start(tmp_path: Path) -> None:
    result = run(make_job(None), tmp_path)
    assert result.exit_code is None and not result.succeeded
    assert result.reason() == "could not start: the job has neither a command nor an image"


def test_docker_argv_carries_limits_env_names_and_the_command(tmp_path: Path) -> None:
    # GIVEN a GPU job with an image and an env var
    job = make_job(
        "python train.py",
        image="ghcr.io/acme/train:1.2",
        env={"SECRET": "s3cr3t"},
        resources=Resources(cores=2.5, memory=4 * GiB, disk=GiB, accelerators=1),
    )
    # WHEN the runner builds its argv
    process = JobProcess(job, attempt=2, work_root=tmp_path, base_env={"PATH": "/usr/bin"})
    argv, env = process.argv()
    # THEN docker runs it with the job's limits, env by name only, the work dir mounted, and sh -c COMMAND
    name = f"shoal-{process.name}"
    assert argv[:8] == ["docker", "run", "--rm", "--init", "--name", name, "--cpus", "2.5"]
    assert argv[argv.index("--memory") + 1] == f"{4 * GiB}b"
    assert argv[argv.index("--gpus") + 1] == "1"
    assert argv[argv.index("SECRET") - 1 : argv.index("SECRET") + 1] == ["-e", "SECRET"]
    assert "s3cr3t" not in " ".join(argv) and env["SECRET"] == "s3cr3t"
    assert "-e" in argv and "SHOAL_JOB_ID" in argv and "PATH" not in argv
    work = str(process.work_dir)
    assert argv[argv.index("-v") + 1] == f"{work}:{work}" and argv[argv.index("-w") + 1] == work
    assert argv[-4:] == ["ghcr.io/acme/train:1.2", "sh", "-c", "python train.py"]


def test_docker_argv_without_command_runs_the_image_default() -> None:
    job = make_job(None, image="busybox", resources=Resources(cores=1))
    argv = docker_argv(job, container_name="c", work_dir=Path("/w"), env_names=[])
    assert argv[-1] == "busybox" and "--memory" not in argv and "--gpus" not in argv


def test_slug_is_safe_for_paths_and_container_names() -> None:
    name = slug("../weird id/with:stuff", 3)
    assert "/" not in name and ":" not in name and " " not in name
    assert ".3." in name


def _wait_for_process(process: JobProcess) -> None:
    # The process handle appears as soon as Popen returns; wait on that, not on wall-clock time.
    for _ in range(10_000):
        if process._process is not None:
            return
        threading.Event().wait(0.001)
    pytest.fail("the job process never started")
