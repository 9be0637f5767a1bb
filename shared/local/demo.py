"""``shoal demo``: the whole system on one machine, on a simulated clock, and its report.

1. moto on loopback (``LocalCloud``) and the real stack deployed into it with the CDK CLI (``CdkRunner``),
   from a settings file written for the demo (``name``, ``node_types``, min/max nodes...).
2. LaunchCluster runs in moto's Step Functions interpreter; its Lambda steps run the real handler.
3. The workload is submitted in bursts with ``shoal submit``'s service (``ShoalClient``); from then on
   nothing is driven by hand: the router fires the deployed schedule, alarm and EC2 events into the
   real handlers, and ``LocalNodes`` runs an agent on each running instance after its boot delay.
4. When every job has ended and the fleet is back at its minimum, TeardownCluster runs, and what is left
   tagged for the cluster is counted.
5. The report (``demo_report``): jobs completed, lost and run twice (from the job records and an
   independent execution log), queue waits, node-hours and cost, every decision with its reasons, and a plot.

The clock: by default the lockstep clock (``shared/local/lockstep.py``), which moves one step at a time
once the rounds, the agents and the jobs due at the step are done, so a busy machine gives the report a
quiet one gives, only later. With ``real`` (the jobs' own commands, which take real time) and in
``shoal local run``, the accelerated clock (``SimClock``). Options and results are ``demo_setup``; what the
demo prints is ``demo_output``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import boto3

from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import StateTable
from shared.domain.jobs import Job
from shared.domain.scaling import offers_for
from shared.local import demo_report, demo_timeline, moto_patches
from shared.local.clock import LockstepClock, SimClock
from shared.local.demo_defaults import DEFAULT_NODE_TYPES, DEFAULT_OUT, DEFAULT_WORKLOAD
from shared.local.demo_output import _agent_logs, _clock_time, _pairs, _quiet_moto
from shared.local.demo_setup import (
    DemoError,
    DemoOptions,
    DemoResult,
    WorkloadError,
    check_workload,
    cluster_settings,
    settings_toml,
    split_bursts,
)
from shared.local.deploy import CdkRunner
from shared.local.lambdas import LocalLambdas
from shared.local.lockstep import JobTimer, StepGate
from shared.local.moto_server import ACCOUNT_ID, LocalCloud
from shared.local.nodes import InstanceView, LocalNodes, Lockstep, NodeEndpoints
from shared.local.report import Timeline, write_json, write_plot
from shared.local.router import EventRouter
from shared.services.submit import SubmitConfig
from shared.wiring.clients import build_submit_client

__all__ = [  # tests and the CLI read these here
    "DEFAULT_NODE_TYPES",
    "DEFAULT_OUT",
    "DEFAULT_WORKLOAD",
    "Demo",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "WorkloadError",
    "check_workload",
    "cluster_settings",
    "run_demo",
]

TICK_SECONDS = 0.1  # real seconds between ticks of the local cloud's loop (accelerated clock)
EXECUTION_POLL_SECONDS = 0.05


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.settings = cluster_settings(options)
        self.offers = offers_for(self.settings)
        self._check_workload()
        self.workdir = options.workdir
        self.clock: SimClock | LockstepClock = self._make_clock()
        self.settle_timeouts = 0  # lockstep steps whose ended jobs were not settled in time
        self.timeline = Timeline()
        self.problems: list[str] = []
        self.phases: dict[str, float] = {}
        self.executions: dict[str, dict[str, object]] = {}
        self._lambda_log: TextIO | None = None
        self._bursts = split_bursts(options.jobs, options.bursts)
        self._submitted: list[Job] = []
        self._runs: dict[str, int] = {}
        self._records: dict[str, tuple[str, int]] = {}
        self._all_decisions: list[dict[str, object]] = []
        self._workload_start = 0.0
        self._next_burst = 0
        self._last_progress = 0.0
        self._ec2: Any = None
        self._known: dict[str, InstanceView] = {}  # instance id -> as last seen
        self._described: tuple[int, bool] | None = None  # (handler invocations, executing) when last described
        self._executing = False  # a state machine runs: it may change EC2 itself
        self._sfn: Any = None
        self.lambdas: LocalLambdas
        self.router: EventRouter
        self.nodes: LocalNodes
        self.outputs: dict[str, str] = {}

    def _make_clock(self) -> SimClock | LockstepClock:
        """Lockstep, unless the jobs run their own commands (those take real time, not simulated) or chaos runs
        (its faults are injected on the accelerated clock, and have not been tried on the lockstep one)."""
        if self.options.real or self.options.chaos is not None:
            return SimClock(self.options.speed)
        return LockstepClock(self.options.speed, step=self.options.step)

    def _check_workload(self) -> None:
        check_workload(self.options.jobs, self.offers, self.settings.target_time)

    def _node_options(self) -> dict[str, Any]:
        """Extra ``LocalNodes`` arguments (``shoal local run`` gives its jobs' environment)."""
        return {}

    def _rerun_explained(self, job_id: str) -> bool:
        """Was a second completion of ``job_id`` a fault's doing, not Shoal's (the chaos run knows its faults)?"""
        return False

    def _wait_seconds(self, submitted_at: float, started_at: float) -> float:
        """A job's queue wait: both times are simulated here (the submitter runs on the simulated clock)."""
        return max(0.0, started_at - submitted_at)

    # ---- the whole run ---------------------------------------------------------------------------------

    def run(self) -> DemoResult:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        keep = self.options.keep_work
        work_root = keep if keep is not None else Path(tempfile.mkdtemp(prefix="shoal-demo-nodes-"))
        work_root.mkdir(parents=True, exist_ok=True)
        self._lambda_log = (self.workdir / "lambda.log").open("w", encoding="utf-8")
        self.lambdas = LocalLambdas(clock=self.clock, region=self.settings.region, log_stream=self._lambda_log)
        self.router = EventRouter(
            clock=self.clock, lambdas=self.lambdas, region=self.settings.region, account=ACCOUNT_ID
        )
        hooks = moto_patches.Hooks(
            invoke_lambda=self.lambdas.invoke_payload,
            deliver_event=self.router.deliver,
            speed=self.options.speed,
            now=self.clock.now,
        )
        cloud = LocalCloud(region=self.settings.region, speed=self.options.speed, hooks=hooks)
        with _quiet_moto(), _agent_logs(self.workdir / "agents.log"):
            try:
                cloud.start()
                self._say(f"local cloud: moto on {cloud.endpoint}; deploying the stack with the CDK CLI...")
                self._deploy(cloud)
                self._start_cluster(work_root)
                self._launch()
                self._run_workload()
                self._teardown()
                left = self._left_after_teardown()
                report = self._report(left, time.monotonic() - started)
            finally:
                if hasattr(self, "nodes"):
                    self.nodes.stop_all()
                self.lambdas.close()
                cloud.stop()
                self._lambda_log.close()
                if keep is None:
                    shutil.rmtree(work_root, ignore_errors=True)
        report_path = self.options.report_path or self.workdir / "report.json"
        plot_path = self.options.plot_path or self.workdir / "demand.png"
        report["report_path"] = str(report_path)
        report["plot_path"] = str(plot_path)
        write_json(report, report_path)
        write_plot(
            self.timeline, plot_path, title=f"shoal demo: {len(self.options.jobs)} jobs, {self.settings.node_types}"
        )
        return DemoResult(report=report, report_path=report_path, plot_path=plot_path, workdir=self.workdir,
                          ok=not self.problems,
                          problems=list(self.problems), runs=dict(self._runs), records=dict(self._records),
                          work_root=keep)  # fmt: skip

    # ---- phases ----------------------------------------------------------------------------------------

    def _deploy(self, cloud: LocalCloud) -> None:
        settings_file = self.workdir / "shoal-demo.toml"
        settings_file.write_text(settings_toml(self.settings), encoding="utf-8")
        runner = CdkRunner(environ=cloud.environ, workdir=self.workdir, context={"settings": str(settings_file)})
        deployment = runner.deploy(f"shoal-{self.settings.name}", ACCOUNT_ID)
        self.outputs = dict(deployment.outputs)
        self.phases["deploy_seconds"] = round(deployment.seconds, 1)
        self._say(f"deployed stack {deployment.stack_name} in {deployment.seconds:.1f}s (cdk bootstrap + deploy)")

    def _start_cluster(self, work_root: Path) -> None:
        need = ("QueueUrl", "DeadLetterQueueUrl", "TableName")
        missing = [name for name in need if name not in self.outputs]
        if missing:
            raise DemoError(f"the deployed stack has no output {missing[0]}")
        self._ec2 = boto3.client("ec2", region_name=self.settings.region)
        self._sfn = boto3.client("stepfunctions", region_name=self.settings.region)
        self.table = StateTable(self.outputs["TableName"], region=self.settings.region)
        self.job_store = DynamoJobStore(self.table)
        self.nodes = LocalNodes(
            cluster=self.settings.name,
            endpoints=NodeEndpoints(
                queue_url=self.outputs["QueueUrl"],
                dead_letter_queue_url=self.outputs["DeadLetterQueueUrl"],
                table_name=self.outputs["TableName"],
                region=self.settings.region,
            ),
            clock=self.clock,
            boot_delay=self.options.boot_delay,
            node_storage=self.settings.node_storage,
            work_root=work_root,
            real=self.options.real,
            lockstep=self._lockstep(work_root),
            offers=self.offers,
            **self._node_options(),
        )
        self.queue = SqsJobQueue(self.outputs["QueueUrl"], region=self.settings.region)
        # What `shoal submit` builds, on the simulated clock.
        self.client = build_submit_client(
            SubmitConfig(
                table_name=self.outputs["TableName"],
                queue_url=self.outputs["QueueUrl"],
                cluster=self.settings.name,
                region=self.settings.region,
            ),
            clock=self.clock.now,
        )
        self.clock.restart()  # simulated time starts now: everything before was set-up
        self.router.discover()
        self._real_start = time.monotonic()

    def _lockstep(self, work_root: Path) -> Lockstep | None:
        if not isinstance(self.clock, LockstepClock):
            return None
        return Lockstep(gate=StepGate(), timer=JobTimer(self.clock, work_root / "fifos"))

    def _launch(self) -> None:
        arn = self.outputs.get("LaunchClusterStateMachineArn")
        if arn is None:
            raise DemoError("the deployed stack has no LaunchClusterStateMachineArn output")
        result = self._execute("LaunchCluster", arn, {})
        self._say(f"LaunchCluster {result['status'].lower()} in {result['seconds']:.1f}s")

    def _teardown(self) -> None:
        arn = self.outputs.get("TeardownClusterStateMachineArn")
        if arn is None:
            raise DemoError("the deployed stack has no TeardownClusterStateMachineArn output")
        result = self._execute("TeardownCluster", arn, {"force": False})
        self._say(f"TeardownCluster {result['status'].lower()} in {result['seconds']:.1f}s")

    def _execute(self, name: str, arn: str, payload: dict[str, object]) -> dict[str, Any]:
        """Run one state machine execution to its end while the cluster keeps running around it."""
        started = time.monotonic()
        execution_name = f"{name.lower()}-{uuid.uuid4().hex[:12]}"
        execution_arn = self._sfn.start_execution(stateMachineArn=arn, name=execution_name, input=json.dumps(payload))[
            "executionArn"
        ]
        status = "RUNNING"
        description: dict[str, Any] = {}
        deadline = started + self.options.time_limit
        self._executing = True
        while status == "RUNNING":
            self._tick()
            description = self._sfn.describe_execution(executionArn=execution_arn)
            status = str(description["status"])
            if time.monotonic() > deadline:
                raise DemoError(f"{name} did not finish within {self.options.time_limit:g}s; see {execution_arn}")
            if not isinstance(self.clock, LockstepClock):  # the lockstep clock paces itself
                time.sleep(EXECUTION_POLL_SECONDS)
        self._executing = False
        history = self._sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        steps = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        record: dict[str, Any] = {
            "execution": execution_name,
            "status": status,
            "seconds": round(time.monotonic() - started, 2),
            "steps": steps,
        }
        if status != "SUCCEEDED":
            record["error"] = description.get("error")
            record["cause"] = description.get("cause")
            self.problems.append(f"{name} {status.lower()}: {description.get('error')}: {description.get('cause')}")
        self.executions[name] = record
        self.phases[f"{name}_seconds"] = record["seconds"]
        return record

    def _run_workload(self) -> None:
        started = time.monotonic()
        deadline = started + self.options.time_limit
        if isinstance(self.clock, LockstepClock):
            # The launch took as many steps as its state machine took real time: start on the rounds' grid.
            self.clock.align(self.settings.scale_interval)
        self._workload_start = self.clock.elapsed()
        self._submit_due()
        while True:
            self._tick()
            self._submit_due()
            if self._next_burst >= len(self._bursts) and self._settled():
                break
            if time.monotonic() > deadline:
                self.problems.append(f"the workload did not finish within {self.options.time_limit:g}s real time")
                self._say(f"stopping: the workload did not finish within {self.options.time_limit:g}s real time")
                break
            if not isinstance(self.clock, LockstepClock):
                time.sleep(TICK_SECONDS)
        self.phases["workload_seconds"] = round(time.monotonic() - started, 1)
        self.phases["workload_simulated_seconds"] = round(self.clock.elapsed(), 1)
        self._progress(force=True)

    # ---- the loop -------------------------------------------------------------------------------------

    def _tick(self) -> None:
        """One pass of the loop; on the lockstep clock, one step: time moves on, the jobs due end, the agents do
        their timed work, the rounds due run, the agents receive; the next step waits for all of it."""
        if isinstance(self.clock, LockstepClock):
            self.clock.advance()
            if not self.nodes.end_due_jobs():
                self.settle_timeouts += 1
            self.nodes.timed_work()
        instances = demo_timeline.instances(self)
        self.router.tick({i.instance_id: i.state for i in instances})
        self.nodes.tick(instances)
        if self.nodes.lockstep is not None:
            self.nodes.receive_round(messages_waiting=self.queue.depth().visible > 0)
        demo_timeline.sample(self, instances)
        self._progress()

    def _submit_due(self) -> None:
        while (
            self._next_burst < len(self._bursts)
            and self.clock.elapsed() - self._workload_start >= self._next_burst * self.options.burst_gap
        ):
            burst = self._bursts[self._next_burst]
            result = self.client.submit(burst)
            self._submitted.extend(burst)
            self._next_burst += 1
            for warning in result.warnings:
                self.problems.append(f"submit: {warning}")
            self._say(
                f"{self._stamp()} burst {self._next_burst}/{len(self._bursts)}: submitted {len(result.submitted)} jobs"
                f"{' (demand event sent)' if result.event_sent else ''}"
            )
            self.router.flush()

    def _settled(self) -> bool:
        """Every job ended and the fleet is back at its minimum, with nothing booting or draining."""
        if self.job_store.demand():
            return False
        live = self.timeline.samples[-1:]
        if not live:
            return False
        floor = sum(max(a, b) for a, b in _pairs(self.settings.min_nodes, self.settings.static_nodes))
        return live[0].total_nodes <= floor and self.nodes.booting() == 0

    def _progress(self, *, force: bool = False) -> None:
        every = self.options.progress_every
        if not self.timeline.samples or (not force and (every <= 0 or time.monotonic() - self._last_progress < every)):
            return
        self._last_progress = time.monotonic()
        s = self.timeline.samples[-1]
        nodes = ", ".join(f"{name} {count}" for name, count in sorted(s.nodes.items())) or "none"
        booting = f", {s.booting} booting" if s.booting else ""
        total = f"/{len(self.options.jobs)}" if self.options.jobs else ""  # unknown when a command submits
        self._say(
            f"{self._stamp()} waiting {s.waiting:4d}  running {s.running:4d}  done {s.done:4d}{total}"
            f"  nodes {s.total_nodes:3d} ({nodes}{booting})"
        )

    # ---- after the run --------------------------------------------------------------------------------

    def _left_after_teardown(self) -> dict[str, list[str]]:
        return demo_report.left_after_teardown(self)

    def _report(self, left: dict[str, list[str]], real_seconds: float) -> dict[str, object]:
        return demo_report.build_report(self, left, real_seconds)

    # ---- output ---------------------------------------------------------------------------------------

    def _stamp(self) -> str:
        return f"[{_clock_time(self.clock.elapsed())}]"

    def _say(self, line: str) -> None:
        if self.options.progress_every > 0:
            print(line, file=self.out, flush=True)


def run_demo(options: DemoOptions, out: TextIO) -> DemoResult:
    if options.chaos is not None:
        from shared.local.chaos import ChaosDemo  # noqa: PLC0415 (it builds on this module)

        return ChaosDemo(options, out).run()
    return Demo(options, out).run()
