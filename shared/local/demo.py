"""``shoal demo``: the whole system on one machine, on an accelerated clock, and its report.

1. moto on loopback (``LocalCloud``) and the real stack deployed into it with the CDK CLI (``CdkRunner``),
   from a settings file written for the demo (``name``, ``node_types``, min/max nodes...).
2. LaunchCluster runs in moto's Step Functions interpreter; its Lambda steps run the real handler.
3. The workload is submitted in bursts with ``shoal submit``'s service (``ShoalClient``); from then on
   nothing is driven by hand: the router fires the deployed schedule, alarm and EC2 events into the
   real handlers, and ``LocalNodes`` runs an agent on each running instance after its boot delay.
4. When every job has ended and the fleet is back at its minimum, TeardownCluster runs, and what is left
   tagged for the cluster is counted.
5. The report: jobs completed, lost and run twice (from the job records and an independent execution
   log), queue waits, node-hours and cost, every decision with its reasons, and a plot.

One module on purpose (over 400 lines): one demo run in order, from deploy to report; what it prints is
``demo_output``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.ec2_fleet import CLUSTER_TAG, MARKET_TAG, OFFER_TAG
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import StateTable
from shared.domain.cluster_state import JobStatus, Market, NodeRecord, NodeState
from shared.domain.jobs import Job, histogram
from shared.domain.node_types import Offer
from shared.domain.packing import plan
from shared.domain.scaling import node_hourly_price, offers_for
from shared.domain.settings import ClusterSettings
from shared.local import moto_patches
from shared.local.clock import SimClock
from shared.local.demo_defaults import DEFAULT_NODE_TYPES, DEFAULT_OUT, DEFAULT_WORKLOAD  # noqa: F401 (tests read it here)
from shared.local.demo_output import _agent_logs, _clock_time, _list, _pairs, _quiet_moto
from shared.local.deploy import CdkRunner
from shared.local.lambdas import LocalLambdas
from shared.local.moto_server import ACCOUNT_ID, LocalCloud
from shared.local.nodes import LIVE, InstanceView, LocalNodes, NodeEndpoints, describe_instances
from shared.local.report import (
    NodeSpan,
    Sample,
    Timeline,
    node_usage,
    percentile,
    starts_in_agent_log,
    write_json,
    write_plot,
)
from shared.local.router import EventRouter
from shared.services.submit import SubmitConfig
from shared.wiring.clients import build_submit_client

TICK_SECONDS = 0.1  # real seconds between ticks of the local cloud's loop
EXECUTION_POLL_SECONDS = 0.05


class DemoError(RuntimeError):
    """The demo could not run or did not finish; the message says where."""


class WorkloadError(ValueError):
    """A workload the demo cannot finish (a job no node type fits); the message says how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    jobs: Sequence[Job]
    node_types: str = DEFAULT_NODE_TYPES
    min_nodes: tuple[int, ...] = ()  # default: 0 per node type
    max_nodes: tuple[int, ...] = ()  # default: 8 per node type
    static_nodes: tuple[int, ...] = ()
    cluster: str = "demo"
    region: str = "us-west-2"
    target_time: float = 1800.0
    speed: float = 120.0
    bursts: int = 2
    burst_gap: float = 2400.0  # simulated seconds between bursts
    boot_delay: float = 90.0  # simulated seconds from "running" to the agent taking jobs
    real: bool = False  # run the jobs' own commands instead of sleeping their wall time
    workdir: Path = DEFAULT_OUT
    report_path: Path | None = None  # default: workdir/report.json
    plot_path: Path | None = None  # default: workdir/demand.png
    progress_every: float = 2.0  # real seconds between progress lines; 0: none
    time_limit: float = 600.0  # real seconds the run may take once the cluster is up
    chaos: int | None = None  # a seed: inject faults at random and check invariants (shared/local/chaos.py)


@dataclass(slots=True)
class DemoResult:
    report: dict[str, object]
    report_path: Path
    plot_path: Path
    workdir: Path  # logs: lambda.log, agents.log, cdk-*.log
    ok: bool
    problems: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # job id → completed executions (the execution log)
    records: dict[str, tuple[str, int]] = field(default_factory=dict)  # job id → (status, attempts) in the table


def cluster_settings(options: DemoOptions) -> ClusterSettings:
    """The demo cluster's settings, validated (``SettingsError`` names a bad one)."""
    classes = len([c for c in options.node_types.split(",") if c.strip()])
    return ClusterSettings.from_mapping(
        {
            "name": options.cluster,
            "node_types": options.node_types,
            "region": options.region,
            "min_nodes": list(options.min_nodes or (0,) * classes),
            "max_nodes": list(options.max_nodes or (8,) * classes),
            "static_nodes": list(options.static_nodes),
            "target_time": options.target_time,
            "scale_interval": "1m",
        }
    )


def check_workload(jobs: Sequence[Job], offers: Sequence[Offer], target_time: float) -> None:
    """Every job must fit some node type, or the demo would wait for it forever."""
    if not jobs:
        raise WorkloadError("the workload has no jobs")
    buyable = [offer for offer in offers if offer.max_nodes > 0]
    if not buyable:
        raise WorkloadError(
            "--max-nodes allows no node of any type, so no job could ever run; give at least one type a maximum above 0"
        )
    result = plan(histogram(jobs), buyable, target_time=target_time)
    if result.unplaceable:
        first = result.unplaceable[0]
        raise WorkloadError(
            f"{sum(u.count for u in result.unplaceable)} jobs fit none of the node types --max-nodes allows "
            f"({first.reason}); pass --node-types with a type that fits them, or leave them out of the workload"
        )


def _settings_toml(settings: ClusterSettings) -> str:
    lines = []
    for key, value in settings.to_mapping().items():
        if isinstance(value, str):
            lines.append(f"{key} = {json.dumps(value)}")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.settings = cluster_settings(options)
        self.offers = offers_for(self.settings)
        self._check_workload()
        self.workdir = options.workdir
        self.clock = SimClock(options.speed)
        self.timeline = Timeline()
        self.problems: list[str] = []
        self.phases: dict[str, float] = {}
        self.executions: dict[str, dict[str, object]] = {}
        self._lambda_log: TextIO | None = None
        self._bursts = _split(options.jobs, options.bursts)
        self._submitted: list[Job] = []
        self._runs: dict[str, int] = {}
        self._records: dict[str, tuple[str, int]] = {}
        self._all_decisions: list[dict[str, object]] = []
        self._workload_start = 0.0
        self._next_burst = 0
        self._last_progress = 0.0
        self._ec2: Any = None
        self._sfn: Any = None
        self.lambdas: LocalLambdas
        self.router: EventRouter
        self.nodes: LocalNodes
        self.outputs: dict[str, str] = {}

    def _check_workload(self) -> None:
        check_workload(self.options.jobs, self.offers, self.settings.target_time)

    def _node_options(self) -> dict[str, Any]:
        """Extra ``LocalNodes`` arguments (``shoal local run`` gives its jobs' environment)."""
        return {}

    def _wait_seconds(self, submitted_at: float, started_at: float) -> float:
        """A job's queue wait: both times are simulated here (the submitter runs on the simulated clock)."""
        return max(0.0, started_at - submitted_at)

    # ---- the whole run ---------------------------------------------------------------------------------

    def run(self) -> DemoResult:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        work_root = Path(tempfile.mkdtemp(prefix="shoal-demo-nodes-"))
        self._lambda_log = (self.workdir / "lambda.log").open("w", encoding="utf-8")
        self.lambdas = LocalLambdas(clock=self.clock, region=self.settings.region, log_stream=self._lambda_log)
        self.router = EventRouter(
            clock=self.clock, lambdas=self.lambdas, region=self.settings.region, account=ACCOUNT_ID
        )
        hooks = moto_patches.Hooks(
            invoke_lambda=self.lambdas.invoke_payload, deliver_event=self.router.deliver, speed=self.options.speed
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
                          problems=list(self.problems), runs=dict(self._runs), records=dict(self._records))  # fmt: skip

    # ---- phases ----------------------------------------------------------------------------------------

    def _deploy(self, cloud: LocalCloud) -> None:
        settings_file = self.workdir / "shoal-demo.toml"
        settings_file.write_text(_settings_toml(self.settings), encoding="utf-8")
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
        while status == "RUNNING":
            self._tick()
            description = self._sfn.describe_execution(executionArn=execution_arn)
            status = str(description["status"])
            if time.monotonic() > deadline:
                raise DemoError(f"{name} did not finish within {self.options.time_limit:g}s; see {execution_arn}")
            time.sleep(EXECUTION_POLL_SECONDS)
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
            time.sleep(TICK_SECONDS)
        self.phases["workload_seconds"] = round(time.monotonic() - started, 1)
        self.phases["workload_simulated_seconds"] = round(self.clock.elapsed(), 1)
        self._progress(force=True)

    # ---- the loop -------------------------------------------------------------------------------------

    def _tick(self) -> None:
        instances = describe_instances(self.settings.region, self._ec2)
        self.router.tick({i.instance_id: i.state for i in instances})
        self.nodes.tick(instances)
        self._sample(instances)
        self._progress()

    def _submit_due(self) -> None:
        while (
            self._next_burst < len(self._bursts) and self.clock.elapsed() >= self._next_burst * self.options.burst_gap
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

    def _sample(self, instances: Sequence[InstanceView]) -> None:
        now = self.clock.elapsed()
        counts: Counter[str] = Counter()
        for view in instances:
            if view.cluster != self.settings.name:
                continue
            span = self.timeline.spans.get(view.instance_id)
            if view.state in LIVE:
                counts[view.instance_type] += 1
                if span is None:
                    self.timeline.spans[view.instance_id] = NodeSpan(
                        instance_id=view.instance_id,
                        instance_type=view.instance_type,
                        hourly_price=self._price(view),
                        started=now,
                    )
            elif span is not None and span.ended is None:
                span.ended = now
        waiting = self.queue.depth().visible
        self.timeline.samples.append(
            Sample(
                t=now,
                waiting=waiting,
                running=self.nodes.busy_jobs(),
                done=self._done(),
                nodes=dict(counts),
                booting=self.nodes.booting(),
            )
        )

    def _done(self) -> int:
        with self.nodes.executions_log.open(encoding="utf-8") as log:
            return sum(1 for _ in log)

    def _price(self, view: InstanceView) -> float:
        offer_key = view.tags.get(OFFER_TAG, view.instance_type)
        market = Market.SPOT if view.tags.get(MARKET_TAG) == Market.SPOT else Market.ON_DEMAND
        record = NodeRecord(instance_id=view.instance_id, offer_key=offer_key, instance_type=view.instance_type,
                            market=market, state=NodeState.ACTIVE)  # fmt: skip
        offer = next((o for o in self.offers if o.key == offer_key), None)
        return node_hourly_price(record, offer, self.settings.region)

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
        """Everything still tagged for the cluster that costs money: live instances, volumes, spot requests."""
        tag = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [self.settings.name]}]
        left: dict[str, list[str]] = {}
        instances = [
            i.instance_id
            for i in describe_instances(self.settings.region, self._ec2)
            if i.cluster == self.settings.name and i.state not in ("terminated", "shutting-down")
        ]
        volumes = [v["VolumeId"] for v in self._ec2.describe_volumes(Filters=tag).get("Volumes", [])]
        spot = [
            r["SpotInstanceRequestId"]
            for r in self._ec2.describe_spot_instance_requests(Filters=tag).get("SpotInstanceRequests", [])
            if r.get("State") in ("open", "active")
        ]
        for name, ids in (("instances", instances), ("volumes", volumes), ("spot_requests", spot)):
            if ids:
                left[name] = ids
        if left:
            self.problems.append(f"teardown left {sum(len(v) for v in left.values())} tagged resources: {left}")
        return left

    def _report(self, left: dict[str, list[str]], real_seconds: float) -> dict[str, object]:
        runs = Counter(line.strip() for line in self.nodes.executions_log.read_text(encoding="utf-8").splitlines())
        self._runs = dict(runs)
        waits: list[float] = []
        status: Counter[str] = Counter()
        with (self.workdir / "agents.log").open(encoding="utf-8", errors="replace") as agent_log:
            starts = starts_in_agent_log(agent_log)  # the agents' own account, not the records'
        started_twice = sorted(job_id for job_id, count in starts.items() if count > 1)
        for job in self._submitted:
            record = self.job_store.get_job(job.id)
            if record is None:
                status["missing"] += 1
                continue
            self._records[job.id] = (str(record.status), record.attempts)
            status[record.status] += 1
            if record.status is JobStatus.SUCCEEDED and record.started_at is not None:
                waits.append(self._wait_seconds(record.submitted_at, record.started_at))
        completed = status[JobStatus.SUCCEEDED]
        failed = status[JobStatus.FAILED]
        cancelled = status[JobStatus.CANCELLED]  # withdrawn by their submitter (Toil's killBatchJobs): not lost
        ran_twice = sorted(job_id for job_id, count in runs.items() if count > 1)
        never_ran = [job.id for job in self._submitted if runs.get(job.id, 0) == 0]
        end = self.clock.elapsed()
        hours, cost = node_usage(self.timeline.spans, end)
        decisions = self._decisions()
        busy = list(self.nodes.busy_terminations)
        if busy:
            self.problems.append(f"{len(busy)} nodes were terminated with jobs running: {busy}")
        lost = len(self._submitted) - completed - failed - cancelled
        if failed:
            self.problems.append(f"{failed} jobs failed (their records hold the exit status and output)")
        if lost:
            self.problems.append(f"{lost} jobs were lost")
        if ran_twice:
            self.problems.append(f"{len(ran_twice)} jobs ran more than once")
        if self.router.stats.failed or self.lambdas.errors:
            self.problems.extend(f"handler failed: {e}" for e in self.lambdas.errors[:5])
        samples = self.timeline.samples
        workload_end = next((s.t for s in reversed(samples) if s.waiting or s.running), 0.0)
        return {
            "jobs_submitted": len(self._submitted),
            "jobs_completed": completed,
            "jobs_failed": failed,
            "jobs_cancelled": cancelled,
            "jobs_lost": lost,
            "jobs_run_more_than_once": len(ran_twice),
            "jobs_started_more_than_once": len(started_twice),
            "jobs_never_ran": len(never_ran),
            "p50_wait_seconds": round(percentile(waits, 0.50), 1),
            "p95_wait_seconds": round(percentile(waits, 0.95), 1),
            "max_wait_seconds": round(max(waits, default=0.0), 1),
            "node_hours": round(hours, 3),
            "cost": round(cost, 4),
            "max_nodes": self.timeline.max_nodes(),
            "min_nodes": sum(max(a, b) for a, b in _pairs(self.settings.min_nodes, self.settings.static_nodes)),
            "nodes_at_end": samples[-1].total_nodes if samples else 0,
            "nodes_launched": len(self.timeline.spans),
            "busy_nodes_terminated": busy,
            "resources_left_after_teardown": sum(len(v) for v in left.values()),
            "resources_left": left,
            "decisions": decisions,
            "rounds": len(self._all_decisions),
            "executions": self.executions,
            "events_delivered": dict(self.router.stats.delivered),
            "scheduled_rounds_fired": self.router.stats.scheduled,
            "alarm_state_changes": self.router.stats.alarm_changes,
            "ec2_state_events": self.router.stats.ec2_events,
            "lambda_invocations": dict(self.lambdas.invocations),
            "lambda_errors": list(self.lambdas.errors),
            "settings": self.settings.to_mapping(),
            "target_time_seconds": self.settings.target_time,
            "speed": self.options.speed,
            "boot_delay_seconds": self.options.boot_delay,
            "bursts": len(self._bursts),
            "burst_gap_seconds": self.options.burst_gap,
            "workload_simulated_seconds": round(workload_end, 1),
            "simulated_seconds": round(end, 1),
            "real_seconds": round(real_seconds, 1),
            "phases": self.phases,
            "problems": list(self.problems),
            "timeline": [
                {"t": round(s.t, 1), "waiting": s.waiting, "running": s.running, "done": s.done, "nodes": dict(s.nodes)}
                for s in samples[:: max(1, len(samples) // 400)]
            ],
        }

    def _decisions(self) -> list[dict[str, object]]:
        entries = DynamoDecisionLog(self.table).recent(10_000)
        self._all_decisions = entries
        out = []
        for entry in reversed(entries):  # oldest first
            decision = entry.get("decision")
            passes = [decision] if isinstance(decision, dict) else []
            later = entry.get("later_passes")
            if isinstance(later, list):
                passes += [p for p in later if isinstance(p, dict)]
            actions = [a for p in passes for a in _list(p.get("actions"))]
            if not actions and not entry.get("errors"):
                continue
            first = passes[0] if passes else {}
            at = entry.get("at")
            out.append(
                {
                    "at_seconds": round(float(at) - self.clock.start, 1) if isinstance(at, int | float) else None,
                    "round_id": entry.get("round_id"),
                    "trigger": entry.get("trigger"),
                    "queued_jobs": first.get("queued_jobs"),
                    "running_jobs": first.get("running_jobs"),
                    "wanted": first.get("wanted"),
                    "actions": actions,
                    "reasons": first.get("reasons"),
                    "errors": entry.get("errors") or [],
                    "hourly_cost": entry.get("hourly_cost"),
                }
            )
        return out

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


def _split(jobs: Sequence[Job], bursts: int) -> list[list[Job]]:
    bursts = max(1, min(bursts, len(jobs)))
    size, extra = divmod(len(jobs), bursts)
    out, start = [], 0
    for index in range(bursts):
        end = start + size + (1 if index < extra else 0)
        out.append(list(jobs[start:end]))
        start = end
    return out
