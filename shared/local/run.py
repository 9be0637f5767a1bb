"""``shoal local run -- COMMAND``: the local cloud brought up around any command (a Toil workflow, usually).

The same machinery as ``shoal demo`` (``shared.local.demo``): moto on loopback, the real stack deployed by
the CDK CLI, LaunchCluster, the event router firing the deployed schedule, alarm and EC2 events into the real
handlers, and a real agent on each running instance. The difference is where the work comes from: instead
of a workload file, COMMAND runs with an environment that points ``--batchSystem shoal`` (and ``shoal
submit``) at the deployed cluster, so it submits what it likes, and the agents run each job's own command
as a real process. When COMMAND has exited and the fleet is back at its minimum, TeardownCluster runs and
the demo's report is written, its jobs read from the state table (whoever submitted them).

Credentials: COMMAND (a Toil leader) gets the local cloud's keys in a shared credentials file
(``AWS_SHARED_CREDENTIALS_FILE``), never as ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment:
Toil saves the leader's environment in the job store (``environment.pickle``) and every worker applies it,
so keys there would reach every job. The jobs get the keys from the agent instead (``_node_options``), as
a worker on AWS gets its instance role's: enough to read an ``aws:`` job store before the leader's
environment is loaded.

Clocks: the control plane (scaler, agents' heartbeats, boot delays) runs on the demo's accelerated clock,
so the fleet grows and shrinks in seconds; the jobs themselves and COMMAND run in real time. Queue waits in
the report are real seconds (``_wait_seconds``), and so is the per-job timing (``job_timings``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3

from shared.adapters.state_table import get_float, get_str
from shared.domain.jobs import Job
from shared.local.demo import TICK_SECONDS, Demo, DemoOptions, DemoResult
from shared.local.deploy import REPO_ROOT
from shared.local.moto_server import FAKE_CREDENTIALS

DEFAULT_NODE_TYPES = "m5.large"  # 2 cores, 8 GiB: two of Toil's default jobs (1 core, 2 GiB) each
DEFAULT_MAX_NODES = 4
DEFAULT_SPEED = 30.0  # the control plane's clock: a 1-minute scaling round every 2 real seconds
DEFAULT_OUT = REPO_ROOT / "out" / "local-run"
COMMAND_STOP_GRACE = 10.0  # real seconds between SIGTERM and SIGKILL when COMMAND must be stopped
# Static keys: never in COMMAND's environment (Toil would save them in the job store for every worker).
STATIC_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# What a job on a worker may see of the local cloud: its endpoint, region, and the "instance role's" keys.
WORKER_AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", *FAKE_CREDENTIALS)


class LocalRunError(RuntimeError):
    """The local run could not start COMMAND; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRunOptions:
    command: Sequence[str]
    node_types: str = DEFAULT_NODE_TYPES
    min_nodes: tuple[int, ...] = ()  # default: 0 per node type
    max_nodes: tuple[int, ...] = ()  # default: DEFAULT_MAX_NODES per node type
    cluster: str = "local"
    region: str = "us-west-2"
    target_time: float = 300.0  # simulated seconds: short, so a workflow's fan-out gets several nodes
    speed: float = DEFAULT_SPEED
    boot_delay: float = 90.0  # simulated seconds
    workdir: Path = DEFAULT_OUT
    report_path: Path | None = None
    plot_path: Path | None = None
    progress_every: float = 5.0
    time_limit: float = 1800.0  # real seconds for COMMAND and the fleet's return to its minimum


@dataclass(slots=True)
class LocalRunResult:
    demo: DemoResult
    command_status: int | None  # None: COMMAND was stopped at the time limit

    @property
    def exit_status(self) -> int:
        """COMMAND's status, or 1 when a job was lost or run twice, or something was left (or it never ended)."""
        if not self.demo.ok or self.command_status is None:
            return 1
        return self.command_status


def demo_options(options: LocalRunOptions) -> DemoOptions:
    classes = len([c for c in options.node_types.split(",") if c.strip()])
    return DemoOptions(
        jobs=(),
        node_types=options.node_types,
        min_nodes=options.min_nodes,
        max_nodes=options.max_nodes or (DEFAULT_MAX_NODES,) * classes,
        cluster=options.cluster,
        region=options.region,
        target_time=options.target_time,
        speed=options.speed,
        bursts=1,
        boot_delay=options.boot_delay,
        real=True,
        workdir=options.workdir,
        report_path=options.report_path,
        plot_path=options.plot_path,
        progress_every=options.progress_every,
        time_limit=options.time_limit,
    )


def command_environment(
    base: Mapping[str, str], outputs: Mapping[str, str], *, cluster: str, region: str, credentials_file: Path
) -> dict[str, str]:
    """COMMAND's environment: ``base`` (already pointing at the local cloud) plus the cluster's ``SHOAL_*``.

    With these, ``--batchSystem shoal`` and ``shoal submit`` need no other flag; the venv's ``bin`` goes
    first on PATH so the Toil that runs COMMAND is the one the workers run (``_toil_worker``). Static keys
    are taken out; the SDK finds them in ``credentials_file`` (see the module's docstring).
    """
    env = {name: value for name, value in base.items() if name not in STATIC_KEY_VARIABLES}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials_file)
    env.update(
        {
            "SHOAL_CLUSTER_NAME": cluster,
            "SHOAL_TABLE_NAME": outputs["TableName"],
            "SHOAL_QUEUE_URL": outputs["QueueUrl"],
            "SHOAL_REGION": region,
            "PATH": _venv_path(base.get("PATH", "")),
        }
    )
    if "EventBusName" in outputs:
        env["SHOAL_EVENT_BUS_NAME"] = outputs["EventBusName"]
    return env


def write_credentials_file(path: Path, environ: Mapping[str, str]) -> Path:
    """The local cloud's keys (from ``environ``) as the default profile of a shared credentials file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[default]\n"
        f"aws_access_key_id = {environ['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {environ['AWS_SECRET_ACCESS_KEY']}\n",
        encoding="utf-8",
    )
    return path


def _venv_path(path: str) -> str:
    bin_dir = str(Path(sys.executable).parent)
    parts = [p for p in path.split(os.pathsep) if p and p != bin_dir]
    return os.pathsep.join([bin_dir, *parts])


class LocalRun(Demo):
    def __init__(self, options: LocalRunOptions, out: TextIO) -> None:
        super().__init__(demo_options(options), out)
        if not options.command:
            raise ValueError("no COMMAND given: shoal local run [OPTIONS] -- COMMAND [ARGS...]")
        self.command = list(options.command)
        self.command_status: int | None = None
        self.job_timings: dict[str, float] = {}
        self.job_times: dict[str, dict[str, float | None]] = {}  # job id → submitted/started/finished, real epoch

    def run_command(self) -> LocalRunResult:
        result = self.run()
        return LocalRunResult(demo=result, command_status=self.command_status)

    # ---- hooks into the demo ---------------------------------------------------------------------------

    def _check_workload(self) -> None:
        """COMMAND brings its own jobs; the batch system refuses any that no node type could hold."""

    def _node_options(self) -> dict[str, Any]:
        # Real programs (Python, CWL tools) under an address-space limit at their request crash; the local
        # cloud does not enforce memory. The venv's bin first: Toil's workers need `_toil_worker`. The local
        # cloud's endpoint and keys stand in for the instance role a worker on AWS has.
        aws = {name: os.environ[name] for name in WORKER_AWS_VARIABLES if name in os.environ}
        return {
            "enforce_memory": False,
            "job_env": {"PATH": _venv_path(os.environ.get("PATH", "/usr/bin:/bin")), **aws},
        }

    def _wait_seconds(self, submitted_at: float, started_at: float) -> float:
        # COMMAND submits on the real clock; agents start jobs on the simulated one.
        return max(0.0, self._real(started_at) - submitted_at)

    def _real(self, simulated: float) -> float:
        return self.clock.start + (simulated - self.clock.start) / self.clock.speed

    def _run_workload(self) -> None:
        started = time.monotonic()
        deadline = started + self.options.time_limit
        credentials = write_credentials_file(self.workdir / "aws-credentials", os.environ)
        env = command_environment(
            os.environ,
            self.outputs,
            cluster=self.settings.name,
            region=self.settings.region,
            credentials_file=credentials,
        )
        self._say(f"running: {' '.join(self.command)}")
        try:
            process = subprocess.Popen(self.command, env=env, start_new_session=True)
        except OSError as error:
            raise LocalRunError(f"cannot run {self.command[0]!r}: {error}") from None
        try:
            while True:
                self._tick()
                if self.command_status is None and process.poll() is not None:
                    self.command_status = process.returncode
                    self.phases["command_seconds"] = round(time.monotonic() - started, 1)
                    self._say(f"{self._stamp()} command exited with status {process.returncode}")
                if self.command_status is not None and self._settled():
                    break
                if time.monotonic() > deadline:
                    self.problems.append(f"the run did not finish within {self.options.time_limit:g}s real time")
                    self._say(f"stopping: the run did not finish within {self.options.time_limit:g}s real time")
                    break
                time.sleep(TICK_SECONDS)
        finally:
            if process.poll() is None:
                _stop(process)
        self._submitted = self._jobs_in_table()
        self.phases["workload_seconds"] = round(time.monotonic() - started, 1)
        self.phases["workload_simulated_seconds"] = round(self.clock.elapsed(), 1)
        self._progress(force=True)

    def _report(self, left: dict[str, list[str]], real_seconds: float) -> dict[str, object]:
        report = super()._report(left, real_seconds)
        report["command"] = self.command
        report["command_status"] = self.command_status
        report["job_timings"] = self.job_timings
        report["job_times"] = self.job_times
        return report

    def _jobs_in_table(self) -> list[Job]:
        """Every job anyone submitted to the cluster (one paginated Scan), with its real-time timings."""
        client = boto3.client("dynamodb", region_name=self.settings.region)
        jobs: list[Job] = []
        starts, ends = [], []
        for page in client.get_paginator("scan").paginate(TableName=self.outputs["TableName"]):
            for item in page.get("Items", []):
                pk = get_str(item, "pk") or ""
                if not pk.startswith("JOB#"):
                    continue
                record = self.job_store.get_job(pk.removeprefix("JOB#"))
                if record is None:
                    continue
                jobs.append(record.job)
                started, finished = get_float(item, "started_at"), get_float(item, "finished_at")
                self.job_times[record.job.id] = {
                    "submitted": record.submitted_at,
                    "started": None if started is None else round(self._real(started), 3),
                    "finished": None if finished is None else round(self._real(finished), 3),
                }
                if started is not None:
                    starts.append(self._real(started) - record.submitted_at)
                if started is not None and finished is not None:
                    ends.append((finished - started) / self.clock.speed)
        self.job_timings = _timings(starts, ends)
        return jobs


def _timings(starts: Sequence[float], runs: Sequence[float]) -> dict[str, float]:
    from shared.local.report import percentile  # noqa: PLC0415

    return {
        "submit_to_start_p50_seconds": round(percentile(list(starts), 0.5), 2),
        "submit_to_start_p95_seconds": round(percentile(list(starts), 0.95), 2),
        "run_p50_seconds": round(percentile(list(runs), 0.5), 2),
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to COMMAND's process group (a leader shuts its batch system down), SIGKILL after a grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=COMMAND_STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_local(options: LocalRunOptions, out: TextIO) -> LocalRunResult:
    return LocalRun(options, out).run_command()
