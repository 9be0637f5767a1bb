"""Chaos, end to end: ``shoal demo --chaos SEED`` on the local cloud, judged by its independent witnesses.

Agents killed as ``kill -9`` would and restarted, instances terminated and spot-interrupted, SQS and
DynamoDB calls answered with throttling and 5xx, scaling rounds stopped half-way (shared/local/chaos.py).
The slow tier: a few minutes of real time.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.cli.jobs_file import read_jobs
from shared.local.demo import DEFAULT_WORKLOAD, DemoOptions, run_demo

JOBS = 40
SEED = 1
# Real seconds: 106-114 in most quiet runs here, but 369-433 s in some (CI ran out of a 400 s limit at 433 s and
# reported a job not completed); a genuinely lost job still fails, only later.
TIME_LIMIT = 1500


@pytest.mark.slow
@pytest.mark.long
def test_a_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    # GIVEN the example workload's first 40 jobs at 60x (botocore's real-time back-off must not look like
    # ten minutes of silence to the scaler), with chaos seeded
    jobs = read_jobs(DEFAULT_WORKLOAD)[:JOBS]
    options = DemoOptions(
        jobs=jobs, speed=60, bursts=2, burst_gap=300, boot_delay=60, workdir=tmp_path, time_limit=TIME_LIMIT, chaos=SEED
    )

    # WHEN the demo runs with faults injected
    out = io.StringIO()
    result = run_demo(options, out)

    # THEN faults of every kind were injected, and every invariant held by its own witness
    chaos = result.report["chaos"]
    assert isinstance(chaos, dict)
    print(result.report["chaos_summary"])  # the figures, with -s
    kinds = chaos["by_kind"]
    for kind in ("agent_crash", "instance_termination", "spot_interruption", "scaler_crash"):
        assert kinds.get(kind, 0) > 0, kind
    assert kinds.get("aws_throttling", 0) + kinds.get("aws_5xx", 0) > 0
    # (a string message: pytest shortens any other; the faults' times tell an at-least-once rerun from a defect)
    why = {
        "never_completed": sorted(job.id for job in jobs if result.runs.get(job.id, 0) == 0),
        "completed_more_than_once": chaos["completed_more_than_once"],
        "problems": result.problems,
        "faults": [line for line in out.getvalue().splitlines() if "chaos:" in line],
    }
    assert chaos["invariants"]["every_job_completed"], json.dumps(why, indent=1)
    assert chaos["invariants"]["completed_again_only_after_a_fault_on_its_node"], json.dumps(why, indent=1)
    assert chaos["invariants"] == {
        "every_job_completed": True,
        "completed_again_only_after_a_fault_on_its_node": True,
        "never_two_copies_at_once": True,
        "no_busy_node_terminated": True,
        "no_process_left_behind": True,
        "nothing_left_after_teardown": True,
    }, json.dumps(chaos, indent=1)
    assert chaos["faults_survived"] == chaos["faults_injected"] > 0
    assert result.ok, result.problems
    assert set(result.runs) == {job.id for job in jobs}
