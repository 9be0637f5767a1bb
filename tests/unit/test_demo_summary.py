"""Issue 13 item 10: the demo's summary shows failed jobs, and says so when no wait was measured."""

from __future__ import annotations

from pathlib import Path

from shared.local.demo import DemoResult
from shared.local.demo_output import summary


def result(completed: int, failed: int) -> DemoResult:
    report: dict[str, object] = {
        "jobs_submitted": completed + failed,
        "jobs_completed": completed,
        "jobs_failed": failed,
        "jobs_lost": 0,
        "jobs_run_more_than_once": 0,
        "p50_wait_seconds": 0.0,
        "p95_wait_seconds": 0.0,
        "target_time_seconds": 1800,
        "max_nodes": 1,
        "nodes_at_end": 0,
        "nodes_launched": 1,
        "node_hours": 0.1,
        "cost": 0.01,
        "decisions": [],
        "rounds": 3,
        "resources_left_after_teardown": 0,
        "simulated_seconds": 600.0,
        "real_seconds": 5.0,
        "speed": 120,
    }
    return DemoResult(report=report, report_path=Path("r.json"), plot_path=Path("p.png"), workdir=Path("w"), ok=False)


def test_every_job_failed_shows_as_failed_not_as_nothing() -> None:
    # GIVEN a run where all 300 jobs failed (exit 3, one attempt): before, "0 completed, 0 lost", p95 "0.0 min"
    lines = summary(result(completed=0, failed=300))
    # THEN the summary counts them, and does not invent a wait
    assert "300 submitted, 0 completed, 300 failed, 0 lost" in lines[0]
    assert lines[1].startswith("queue wait: none measured (no job completed)")
