"""Running one job's command as a real process: a fresh working directory, limits, timeout, output tail.

A job runs as ``sh -c COMMAND`` in its own session, or as ``docker run --rm ... IMAGE sh -c COMMAND``
when it names an image. Output goes to a file beside its working directory; the record keeps only the
last ``OUTPUT_TAIL_BYTES``.

A job's whole tree ends with it: every process it starts carries its ``SHOAL_JOB_TOKEN`` (see
``process_tree``), so when its first process ends, on a timeout and on ``cancel()``, whatever else still
carries the token is ended too (background children, and daemons that ``setsid`` took out of the
session), and a container it runs in is removed by name. ``run()`` returns only once they are gone.

So that an agent restarted after a crash (``kill -9``) knows what its predecessor was running, each run
leaves two small files beside its working directory: ``NAME.ticket`` (job id, attempt, token), written
before the process starts, and ``NAME.exit``, which a wrapper shell writes with the exit status when the
job's command ends, whether or not an agent is still watching (``Ticket``). They outlive ``run()``: the
settler removes them (``forget``) only once the job's end is on its record, so a crash between the two
leaves the outcome for the next agent to adopt rather than a job to run again.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.domain.jobs import Job
from shared.domain.units import MiB
from shared.worker import process_tree
from shared.worker.isolation import Isolation
from shared.worker.process_tree import TOKEN_VARIABLE
from shared.worker.tickets import EXIT_SUFFIX, OUTPUT_TAIL_BYTES, TICKET_SUFFIX, Ticket, tail

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_TAIL_BYTES", "SETTLE_SECONDS", "JobProcess", "RunResult"]

# A limit below this keeps even `sh` from starting; a job asking for less gets this much address space.
MIN_MEMORY_LIMIT = 64 * MiB
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
# The wrapper sets the address-space limit, then replaces itself with the job's shell.
_LIMIT_WRAPPER = 'ulimit -v "$1" || exit 125; exec sh -c "$2"'
# Runs the job's argv, writes its exit status to a file (atomically), and ends as the job did: a job killed
# by signal N (status 128+N) makes the wrapper kill itself with N, so the agent sees "killed by signal".
_EXIT_WRAPPER = (
    'f=$1; shift; "$@"; s=$?; echo "$s" > "$f.tmp" && mv -f "$f.tmp" "$f"; '
    'if [ "$s" -gt 128 ] && [ "$s" -lt 160 ]; then kill -"$((s - 128))" $$; fi; exit "$s"'
)
SETTLE_SECONDS = 5.0  # after SIGKILL, how long to wait for a tree to be gone before saying it is not


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
    job: Job,
    *,
    container_name: str,
    work_dir: Path,
    env_names: list[str],
    docker: str = "docker",
    labels: Mapping[str, str] | None = None,
    options: Sequence[str] = (),
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
    for label, value in sorted((labels or {}).items()):
        argv += ["--label", f"{label}={value}"]
    for name in env_names:
        argv += ["-e", name]
    argv += [*options, "-v", f"{work_dir}:{work_dir}", "-w", str(work_dir), job.image]
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
        owner: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``owner`` is the agent's token prefix (``process_tree.owner_of``); by default, the work root's own."""
        self._base_env = dict(os.environ if base_env is None else base_env)
        # In a container of its own where the node says so: the job image, network and credentials (isolation.py).
        self._isolation = Isolation.from_env(self._base_env)
        self.job = job = self._isolation.place(job)
        self.attempt = attempt
        self.name = slug(job.id, attempt)
        self.work_root = work_root
        self.work_dir = work_root / self.name
        self.output_path = work_root / f"{self.name}.out"
        owner = process_tree.owner_of("", work_root) if owner is None else owner
        self.token = process_tree.make_token(owner, self.name)
        self.ticket = Ticket(job_id=job.id, attempt=attempt, token=self.token, name=self.name)
        self._enforce_memory = enforce_memory
        self._kill_grace = kill_grace
        self._keep_work_dir = keep_work_dir
        self._docker = docker
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = False
        self._abandoned = False
        self._ended = threading.Event()  # run() has returned
        self.result: RunResult | None = None  # what run() returned
        self._tree_gone = False  # ... and every process of the job was gone by then

    def argv(self) -> tuple[list[str], dict[str, str]]:
        """What the job itself runs, and its environment (``run()`` puts the exit-status wrapper in front)."""
        env = job_environment(self.job, attempt=self.attempt, work_dir=self.work_dir, base=self._base_env)
        env[TOKEN_VARIABLE] = self.token  # after the job's own env: the token is how its tree is found
        if self.job.image is not None:
            names = sorted((set(env) - set(self._base_env)) | set(self.job.env))
            return docker_argv(
                self.job,
                container_name=self.container_name,
                work_dir=self.work_dir,
                env_names=names,
                docker=self._docker,
                labels=process_tree.container_labels(self.token),
                options=self._isolation.docker_options(self.job),
            ), env
        if self.job.command is None:
            raise ValueError("the job has neither a command nor an image")
        limit = self.job.shape.resources.memory if self._enforce_memory and self.job.shape.resources.memory else None
        return shell_argv(self.job.command, memory_limit=limit), env

    @property
    def container_name(self) -> str:
        return f"shoal-{self.name}"

    def run(self) -> RunResult:
        started = self._monotonic()
        try:
            begun = self._start()
        except (OSError, ValueError) as error:
            self._cleanup()
            self._tree_gone = True
            self._ended.set()
            return RunResult(exit_code=None, duration=self._monotonic() - started, output_tail="", error=str(error))
        if begun is None:
            return RunResult(exit_code=None, duration=0.0, output_tail="", cancelled=True)
        process, cancelled_before_start = begun
        if cancelled_before_start:
            self._signal_tree(signal.SIGKILL)
        timed_out = self._wait(process)
        with self._lock:
            cancelled, abandoned = self._cancelled, self._abandoned
        if abandoned:
            # The agent is gone (a simulated crash): nobody ends the tree or tidies up; its successor will.
            self._ended.set()
            return RunResult(exit_code=process.returncode, duration=self._monotonic() - started, output_tail="",
                             cancelled=True)  # fmt: skip
        return self._finish(process, started=started, cancelled=cancelled, timed_out=timed_out)

    def _start(self) -> tuple[subprocess.Popen[bytes], bool] | None:
        """Start the job's process (and its ticket) under the lock; None if the agent was abandoned first.

        Returns the process and whether ``cancel()`` came before it started."""
        argv, env = self.argv()
        self.work_dir.mkdir(parents=True, exist_ok=False)
        exit_file = str(self.work_root / f"{self.name}{EXIT_SUFFIX}")
        # Under the lock: an agent abandoned (a simulated crash) never starts a process afterwards.
        with self._lock, self.output_path.open("wb") as output:
            if self._abandoned:
                self._ended.set()
                return None
            # The ticket exists before any process of the job does: a crash never leaves one unaccounted for.
            (self.work_root / f"{self.name}{TICKET_SUFFIX}").write_text(self.ticket.to_json(), encoding="utf-8")
            process = subprocess.Popen(
                ["sh", "-c", _EXIT_WRAPPER, "shoal-job", exit_file, *argv],
                cwd=self.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._process = process
            return process, self._cancelled

    def _wait(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait for the job's first process to end, within its timeout; True if it timed out (and was ended)."""
        try:
            process.wait(timeout=self.job.timeout)
        except subprocess.TimeoutExpired:
            self._terminate(process)
            return True
        return False

    def _finish(
        self, process: subprocess.Popen[bytes], *, started: float, cancelled: bool, timed_out: bool
    ) -> RunResult:
        """End what is left of the job's tree, tidy its working directory, and record the result."""
        # Whatever the job left running (background children, daemons in sessions of their own) ends with it.
        left = self.end_tree(grace=0.0 if cancelled or timed_out else self._kill_grace)
        self._tree_gone = left == 0
        if left:
            log.error("job %s: %d process(es) of its tree would not die; the node needs attention", self.job.id, left)
        duration = self._monotonic() - started
        tail = self._output_tail()
        self._remove_work_dir()  # the ticket, exit status and output stay until ``forget``
        self.result = RunResult(
            exit_code=process.returncode,
            duration=duration,
            output_tail=tail,
            timed_out=timed_out,
            cancelled=cancelled and not timed_out,
        )
        self._ended.set()
        return self.result

    def cancel(self) -> None:
        """End this job now, its whole tree: SIGTERM to every process of it (and its container), SIGKILL to what
        is left after the grace period. Does not block; ``wait_ended`` waits until the tree is gone."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            process = self._process
        if process is None or self._ended.is_set():
            return  # not started: run() kills it as it starts; ended: run() has ended its tree
        self._signal_tree(signal.SIGTERM)
        if self.job.image is not None:
            self._docker_kill()
        timer = threading.Timer(self._kill_grace, self._kill_if_running)
        timer.daemon = True
        timer.start()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until ``run()`` has returned with the job's whole tree gone. False on timeout, or if some of the
        tree would not die (then the job must not run anywhere else yet)."""
        return self._ended.wait(timeout) and self._tree_gone

    def abandon(self) -> None:
        """Forget the job as an agent killed with SIGKILL would: its processes keep running, nothing is tidied.

        For the local cloud's chaos runs, which cannot kill an agent thread; the job's processes and files
        are left for the next agent of the node to find, exactly as after a real crash.
        """
        with self._lock:
            self._abandoned = True

    def end_tree(self, *, grace: float) -> int:
        """End every process that carries this run's token (and its container); how many would not die."""
        if self.job.image is not None and grace == 0.0:
            self._docker_kill()
        left = process_tree.end_matching(process_tree.exactly(self.token), grace=grace, settle=SETTLE_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # Also the session's group: a process that emptied its environment (env -i) still belongs to it.
            if self._process is not None:
                os.killpg(self._process.pid, signal.SIGKILL)
        return left

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        self._signal_tree(signal.SIGTERM)
        if self.job.image is not None:
            self._docker_kill()
        try:
            process.wait(timeout=self._kill_grace)
        except subprocess.TimeoutExpired:
            self._signal_tree(signal.SIGKILL)
            process.wait()

    def _kill_if_running(self) -> None:
        if not self._ended.is_set() and not self._abandoned:
            self._signal_tree(signal.SIGKILL)

    def _signal_tree(self, signum: signal.Signals) -> None:
        process_tree.signal_matching(process_tree.exactly(self.token), signum)

    def _docker_kill(self) -> None:
        # Killing the `docker run` client does not stop its container; the daemon must be told.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [self._docker, "rm", "--force", self.container_name],
                capture_output=True,
                timeout=max(self._kill_grace, 10.0),
                check=False,
            )

    def _output_tail(self) -> str:
        return tail(self.output_path)

    def forget(self) -> None:
        """Remove what the run left beside its working directory; call once its end is on the job's record."""
        for suffix in (TICKET_SUFFIX, EXIT_SUFFIX, f"{EXIT_SUFFIX}.tmp"):
            with contextlib.suppress(OSError):
                (self.work_root / f"{self.name}{suffix}").unlink()
        if not self._keep_work_dir:
            with contextlib.suppress(OSError):
                self.output_path.unlink()

    def _remove_work_dir(self) -> None:
        if not self._keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _cleanup(self) -> None:
        self._remove_work_dir()
        self.forget()
