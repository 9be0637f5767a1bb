"""Running one job's command as a real process: a fresh working directory, limits, timeout, output tail.

A job runs as ``sh -c COMMAND`` in its own process group (so a timeout or an interruption kills the
whole tree), or as ``docker run --rm ... IMAGE sh -c COMMAND`` when it names an image. Output goes to
a file beside its working directory; the record keeps only the last ``OUTPUT_TAIL_BYTES``.

Limits: memory is enforced for ``sh`` jobs with ``ulimit -v`` (``setrlimit(RLIMIT_AS)``) set by a
wrapper shell rather than ``preexec_fn``, which is unsafe in a threaded agent; cores are advisory
(exported as ``SHOAL_JOB_CORES``; jobs are packed so their cores fit the node). Docker jobs get
``--cpus``, ``--memory`` and ``--gpus`` from the job's resources instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.domain.jobs import Job
from shared.domain.units import MiB

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 4096
# A limit below this keeps even `sh` from starting; a job asking for less gets this much address space.
MIN_MEMORY_LIMIT = 64 * MiB
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
# The wrapper sets the address-space limit, then replaces itself with the job's shell.
_LIMIT_WRAPPER = 'ulimit -v "$1" || exit 125; exec sh -c "$2"'


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    exit_code: int | None  # the process's status (negative: killed by that signal); None: it never started
    duration: float  # seconds of wall time
    output_tail: str
    timed_out: bool = False
    cancelled: bool = False  # stopped by the agent (interruption), not by the job
    error: str | None = None  # why it could not start

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled and self.error is None

    def reason(self) -> str:
        """One line saying why it did not succeed, for the job record and the dead-letter queue."""
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"timed out after {self.duration:.1f}s and was killed"
        if self.cancelled:
            return "stopped by the agent"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"


def session_members(session: int, proc: Path = Path("/proc")) -> list[int]:
    """The live processes of a session (Linux ``/proc``; none elsewhere), by the session field of their stat."""
    members = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp session ...
        if len(fields) > 3 and fields[3] == str(session) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def slug(job_id: str, attempt: int) -> str:
    """A file-system and container-name safe, unique name for one attempt of one job."""
    safe = _UNSAFE_NAME_CHARS.sub("_", job_id)[:64].strip("._") or "job"
    return f"{safe}.{attempt}.{uuid.uuid4().hex[:8]}"


def job_environment(job: Job, *, attempt: int, work_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment, then what Shoal tells every job, then the job's own ``env`` (which wins)."""
    r = job.shape.resources
    env = dict(base)
    env.update(
        {
            "SHOAL_JOB_ID": job.id,
            "SHOAL_JOB_ATTEMPT": str(attempt),
            "SHOAL_JOB_CORES": f"{r.cores:g}",
            "SHOAL_JOB_MEMORY": str(r.memory),
            "SHOAL_JOB_DISK": str(r.disk),
            "SHOAL_JOB_ACCELERATORS": str(r.accelerators),
            "SHOAL_JOB_WORK_DIR": str(work_dir),
            "TMPDIR": str(work_dir),
        }
    )
    env.update(job.env)
    return env


def shell_argv(command: str, *, memory_limit: int | None) -> list[str]:
    """``sh -c COMMAND``, under an address-space limit (bytes) when one is given."""
    if memory_limit is None:
        return ["sh", "-c", command]
    kib = max(memory_limit, MIN_MEMORY_LIMIT) // 1024
    return ["sh", "-c", _LIMIT_WRAPPER, "shoal-limit", str(kib), command]


def docker_argv(
    job: Job, *, container_name: str, work_dir: Path, env_names: list[str], docker: str = "docker"
) -> list[str]:
    """``docker run`` for a job with an image: limits from its resources, env passed by name (not value).

    Names only (``-e NAME``) keep values out of the process list; docker reads them from its own
    environment, which the runner sets. The working directory is bind-mounted at the same path, so
    the agent's container must see the host's work root at the same path (see the Dockerfile).
    """
    if job.image is None:
        raise ValueError(f"job {job.id!r} has no image to run")
    r = job.shape.resources
    argv = [docker, "run", "--rm", "--init", "--name", container_name, "--cpus", f"{r.cores:g}"]
    if r.memory > 0:
        argv += ["--memory", f"{r.memory}b"]
    if r.accelerators > 0:
        argv += ["--gpus", str(r.accelerators)]
    for name in env_names:
        argv += ["-e", name]
    argv += ["-v", f"{work_dir}:{work_dir}", "-w", str(work_dir), job.image]
    if job.command is not None:
        argv += ["sh", "-c", job.command]
    return argv


class JobProcess:
    """One attempt of one job: ``run()`` blocks until it ends; ``cancel()`` from any thread stops it."""

    def __init__(
        self,
        job: Job,
        *,
        attempt: int,
        work_root: Path,
        base_env: Mapping[str, str] | None = None,
        enforce_memory: bool = True,
        kill_grace: float = 5.0,
        keep_work_dir: bool = False,
        docker: str = "docker",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.attempt = attempt
        self.name = slug(job.id, attempt)
        self.work_dir = work_root / self.name
        self.output_path = work_root / f"{self.name}.out"
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._enforce_memory = enforce_memory
        self._kill_grace = kill_grace
        self._keep_work_dir = keep_work_dir
        self._docker = docker
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = False

    def argv(self) -> tuple[list[str], dict[str, str]]:
        env = job_environment(self.job, attempt=self.attempt, work_dir=self.work_dir, base=self._base_env)
        if self.job.image is not None:
            names = sorted((set(env) - set(self._base_env)) | set(self.job.env))
            return docker_argv(
                self.job,
                container_name=f"shoal-{self.name}",
                work_dir=self.work_dir,
                env_names=names,
                docker=self._docker,
            ), env
        if self.job.command is None:
            raise ValueError("the job has neither a command nor an image")
        limit = self.job.shape.resources.memory if self._enforce_memory and self.job.shape.resources.memory else None
        return shell_argv(self.job.command, memory_limit=limit), env

    def run(self) -> RunResult:
        started = self._monotonic()
        try:
            argv, env = self.argv()
            self.work_dir.mkdir(parents=True, exist_ok=False)
            with self.output_path.open("wb") as output:
                process = subprocess.Popen(
                    argv,
                    cwd=self.work_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except (OSError, ValueError) as error:
            self._cleanup()
            return RunResult(exit_code=None, duration=self._monotonic() - started, output_tail="", error=str(error))
        with self._lock:
            self._process = process
            cancelled_before_start = self._cancelled
        if cancelled_before_start:
            self._signal_group(signal.SIGKILL)
        timed_out = False
        try:
            process.wait(timeout=self.job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._terminate(process)
        # Whatever the job left running in its group (background children) goes with it.
        self._signal_group(signal.SIGKILL)
        duration = self._monotonic() - started
        with self._lock:
            cancelled = self._cancelled
        tail = self._output_tail()
        self._cleanup()
        return RunResult(
            exit_code=process.returncode,
            duration=duration,
            output_tail=tail,
            timed_out=timed_out,
            cancelled=cancelled and not timed_out,
        )

    def cancel(self) -> None:
        """Stop the job now: SIGTERM to its process group, SIGKILL after the grace period. Does not block."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        if self.job.image is not None:
            self._docker_kill()
        timer = threading.Timer(self._kill_grace, self._kill_if_running)
        timer.daemon = True
        timer.start()

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        self._signal_group(signal.SIGTERM)
        if self.job.image is not None:
            self._docker_kill()
        try:
            process.wait(timeout=self._kill_grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            process.wait()

    def _kill_if_running(self) -> None:
        # Once run() has reaped the job it has killed the group itself, and the pid may be reused.
        process = self._process
        if process is not None and process.returncode is None:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        # The group and session ids are the child's pid (start_new_session); they outlive the leader while
        # members remain. The session too: a job may move its work into a process group of its own (Toil's
        # `_toil_contained_executor` does), and signalling the group alone would leave that running.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
        for pid in session_members(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def _docker_kill(self) -> None:
        # Killing the `docker run` client does not stop its container; the daemon must be told.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [self._docker, "kill", f"shoal-{self.name}"], capture_output=True, timeout=self._kill_grace, check=False
            )

    def _output_tail(self) -> str:
        try:
            with self.output_path.open("rb") as output:
                size = output.seek(0, os.SEEK_END)
                output.seek(max(0, size - OUTPUT_TAIL_BYTES))
                return output.read(OUTPUT_TAIL_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _cleanup(self) -> None:
        if self._keep_work_dir:
            return
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.output_path.unlink()
