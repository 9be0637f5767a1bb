"""The demo's report: what ran (from the job records and the independent witnesses), waits, cost, decisions.

Read after the run from what the run left: the state table, the executions log the jobs' processes wrote,
the agents' log, the timeline the driver sampled, and what is still tagged for the cluster in EC2.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.adapters.decision_log import DynamoDecisionLog
from shared.adapters.ec2_fleet import CLUSTER_TAG
from shared.domain.cluster_state import JobStatus
from shared.local.demo_output import _list, _pairs
from shared.local.demo_timeline import clock_facts
from shared.local.nodes import describe_instances
from shared.local.report import node_usage, percentile, starts_in_agent_log

if TYPE_CHECKING:
    from shared.local.demo import Demo


@dataclass(slots=True)
class _Tally:
    """What became of the submitted jobs, by the records and by the witnesses."""

    waits: list[float] = field(default_factory=list)
    status: Counter[str] = field(default_factory=Counter)
    ran_twice: list[str] = field(default_factory=list)
    started_twice: list[str] = field(default_factory=list)
    never_ran: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.status[JobStatus.SUCCEEDED]

    @property
    def failed(self) -> int:
        return self.status[JobStatus.FAILED]

    @property
    def cancelled(self) -> int:  # withdrawn by their submitter (Toil's killBatchJobs): not lost
        return self.status[JobStatus.CANCELLED]


def left_after_teardown(demo: Demo) -> dict[str, list[str]]:
    """Everything still tagged for the cluster that costs money: live instances, volumes, spot requests."""
    name, ec2 = demo.settings.name, demo._ec2
    tag = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [name]}]
    left: dict[str, list[str]] = {}
    instances = [
        i.instance_id
        for i in describe_instances(demo.settings.region, ec2)
        if i.cluster == name and i.state not in ("terminated", "shutting-down")
    ]
    volumes = [v["VolumeId"] for v in ec2.describe_volumes(Filters=tag).get("Volumes", [])]
    spot = [
        r["SpotInstanceRequestId"]
        for r in ec2.describe_spot_instance_requests(Filters=tag).get("SpotInstanceRequests", [])
        if r.get("State") in ("open", "active")
    ]
    for kind, ids in (("instances", instances), ("volumes", volumes), ("spot_requests", spot)):
        if ids:
            left[kind] = ids
    if left:
        demo.problems.append(f"teardown left {sum(len(v) for v in left.values())} tagged resources: {left}")
    return left


def _tally(demo: Demo) -> _Tally:
    runs = Counter(line.strip() for line in demo.nodes.executions_log.read_text(encoding="utf-8").splitlines())
    demo._runs = dict(runs)
    tally = _Tally()
    with (demo.workdir / "agents.log").open(encoding="utf-8", errors="replace") as agent_log:
        starts = starts_in_agent_log(agent_log)  # the agents' own account, not the records'
    tally.started_twice = sorted(job_id for job_id, count in starts.items() if count > 1)
    for job in demo._submitted:
        record = demo.job_store.get_job(job.id)
        if record is None:
            tally.status["missing"] += 1
            continue
        demo._records[job.id] = (str(record.status), record.attempts)
        tally.status[record.status] += 1
        if record.status is JobStatus.SUCCEEDED and record.started_at is not None:
            tally.waits.append(demo._wait_seconds(record.submitted_at, record.started_at))
    tally.ran_twice = sorted(job_id for job_id, count in runs.items() if count > 1)
    tally.never_ran = [job.id for job in demo._submitted if runs.get(job.id, 0) == 0]
    return tally


def _problems(demo: Demo, tally: _Tally, lost: int) -> list[str]:
    busy = list(demo.nodes.busy_terminations)
    problems = []
    if busy:
        problems.append(f"{len(busy)} nodes were terminated with jobs running: {busy}")
    if tally.failed:
        problems.append(f"{tally.failed} jobs failed (their records hold the exit status and output)")
    if lost:
        problems.append(f"{lost} jobs were lost")
    reruns = [job_id for job_id in tally.ran_twice if not demo._rerun_explained(job_id)]
    if reruns:
        problems.append(f"{len(reruns)} jobs ran more than once")
    if demo.router.stats.failed or demo.lambdas.errors:
        problems.extend(f"handler failed: {e}" for e in demo.lambdas.errors[:5])
    return problems


def build_report(demo: Demo, left: dict[str, list[str]], real_seconds: float) -> dict[str, object]:
    tally = _tally(demo)
    end = demo.clock.elapsed()
    hours, cost = node_usage(demo.timeline.spans, end)
    decisions = _decisions(demo)
    lost = len(demo._submitted) - tally.completed - tally.failed - tally.cancelled
    demo.problems.extend(_problems(demo, tally, lost))
    samples = demo.timeline.samples
    workload_end = next((s.t for s in reversed(samples) if s.waiting or s.running), 0.0)
    floor = sum(max(a, b) for a, b in _pairs(demo.settings.min_nodes, demo.settings.static_nodes))
    return {
        "jobs_submitted": len(demo._submitted),
        "jobs_completed": tally.completed,
        "jobs_failed": tally.failed,
        "jobs_cancelled": tally.cancelled,
        "jobs_lost": lost,
        "jobs_run_more_than_once": len(tally.ran_twice),
        "jobs_started_more_than_once": len(tally.started_twice),
        "jobs_never_ran": len(tally.never_ran),
        "p50_wait_seconds": round(percentile(tally.waits, 0.50), 1),
        "p95_wait_seconds": round(percentile(tally.waits, 0.95), 1),
        "max_wait_seconds": round(max(tally.waits, default=0.0), 1),
        "node_hours": round(hours, 3),
        "cost": round(cost, 4),
        "max_nodes": demo.timeline.max_nodes(),
        "min_nodes": floor,
        "nodes_at_end": samples[-1].total_nodes if samples else 0,
        "nodes_launched": len(demo.timeline.spans),
        "busy_nodes_terminated": list(demo.nodes.busy_terminations),
        "resources_left_after_teardown": sum(len(v) for v in left.values()),
        "resources_left": left,
        "decisions": decisions,
        "rounds": len(demo._all_decisions),
        "executions": demo.executions,
        **_run_facts(demo),
        "workload_started_at_seconds": round(demo._workload_start, 1),  # after set-up: as long as LaunchCluster took
        "workload_simulated_seconds": round(workload_end, 1),
        "simulated_seconds": round(end, 1),
        "real_seconds": round(real_seconds, 1),
        "phases": demo.phases,
        "problems": list(demo.problems),
        "timeline": [
            {"t": round(s.t, 1), "waiting": s.waiting, "running": s.running, "done": s.done, "nodes": dict(s.nodes)}
            for s in samples[:: max(1, len(samples) // 400)]
        ],
    }


def _run_facts(demo: Demo) -> dict[str, object]:
    """How the run was driven: the events delivered, the settings, the clock."""
    return {
        "events_delivered": dict(demo.router.stats.delivered),
        "scheduled_rounds_fired": demo.router.stats.scheduled,
        "alarm_state_changes": demo.router.stats.alarm_changes,
        "ec2_state_events": demo.router.stats.ec2_events,
        "lambda_invocations": dict(demo.lambdas.invocations),
        "lambda_errors": list(demo.lambdas.errors),
        "settings": demo.settings.to_mapping(),
        "target_time_seconds": demo.settings.target_time,
        "speed": demo.options.speed,
        **clock_facts(demo),
        "boot_delay_seconds": demo.options.boot_delay,
        "bursts": len(demo._bursts),
        "burst_gap_seconds": demo.options.burst_gap,
    }


def _decisions(demo: Demo) -> list[dict[str, object]]:
    entries = DynamoDecisionLog(demo.table).recent(10_000)
    demo._all_decisions = entries
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
                "at_seconds": round(float(at) - demo.clock.start, 1) if isinstance(at, int | float) else None,
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
