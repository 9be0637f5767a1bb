"""End to end: the same small ``shoal demo`` on a quiet machine and on a busy one gives the same report.

The lockstep clock waits for the control plane at every step, so how fast the machine is must not reach the
report. Three things did: a draining agent's heartbeat raced the step's round, moto showed a message given back
only from the next millisecond, and moto's random instance ids broke the scaler's ties between equal nodes at
random (docs/simulate.md, session 16). Each made two runs of the same demo part ways, one round or one job at a
time. Here the second run has two processes spinning a CPU each beside it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_demo import cpu_load
from shared.cli.jobs_file import read_jobs
from shared.local.demo import DEFAULT_WORKLOAD, DemoOptions, run_demo

JOBS = 60
SPINNERS = 2


def _run(workdir: Path) -> dict[str, Any]:
    jobs = read_jobs(DEFAULT_WORKLOAD)[:JOBS]
    options = DemoOptions(
        jobs=jobs, speed=300, bursts=2, burst_gap=600, boot_delay=60, workdir=workdir, time_limit=600, progress_every=0
    )
    result = run_demo(options, io.StringIO())
    assert result.ok, result.problems
    return result.report


def _what_it_did(report: dict[str, Any]) -> dict[str, Any]:
    """The report less what two identical runs may not share: instance ids (numbered on from the first run in
    the same process: each becomes its order of first mention), real times, where the files went, and when the
    workload started (LaunchCluster takes as many steps as its state machine takes real time): times count from
    the workload's start, and the timeline is the workload's."""
    start, end = report["workload_started_at_seconds"], report["workload_simulated_seconds"]
    order: dict[str, int] = {}
    rounds = [
        (
            d["at_seconds"] - start, d["trigger"], d["wanted"],
            [
                (a["action"], a.get("offer"), a.get("market"), a.get("count"),
                 [order.setdefault(i, len(order)) for i in a.get("instance_ids", [])])
                for a in d["actions"]
            ],
        )
        for d in report["decisions"]
    ]  # fmt: skip
    timeline = [{**sample, "t": sample["t"] - start} for sample in report["timeline"] if start < sample["t"] <= end]
    kept = ("p50_wait_seconds", "p95_wait_seconds", "max_wait_seconds", "cost", "node_hours", "max_nodes")
    return {"timeline": timeline, "rounds": rounds, **{key: report[key] for key in kept}}


@pytest.mark.slow
@pytest.mark.long
def test_a_busy_machine_and_a_quiet_one_give_the_same_demo_step_by_step(tmp_path: Path) -> None:
    # GIVEN the example workload's first 60 jobs in two bursts, run once on the machine as it is
    quiet = _run(tmp_path / "quiet")

    # WHEN the same demo runs again beside two processes that each spin a CPU
    with cpu_load(SPINNERS):
        busy = _run(tmp_path / "busy")

    # THEN both runs scaled the same way, step by step, and report the same waits and cost
    assert quiet["clock"] == busy["clock"] == "lockstep"
    assert _what_it_did(busy) == _what_it_did(quiet)
    did = _what_it_did(quiet)
    assert any(action[0] == "terminate" for *_, actions in did["rounds"] for action in actions)
    assert len(did["timeline"]) > 100
