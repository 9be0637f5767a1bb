"""End to end: a small ``shoal demo`` on the embedded local cloud, asserted from the outside.

The real stack is deployed into moto with the CDK CLI, LaunchCluster and TeardownCluster run in moto's
Step Functions interpreter, the real handlers answer the deployed schedule, alarm, demand and EC2
events, and real agents run the jobs. One run (about half a minute) backs all the assertions: it is
one test so that parallel test workers never run it twice.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.cli import main as cli
from shared.cli.jobs_file import read_jobs
from shared.local.demo import DEFAULT_WORKLOAD, DemoOptions, run_demo
from shared.local.report import REQUIRED_KEYS

JOBS = 40


@pytest.mark.slow
def test_a_small_demo_runs_every_job_once_scales_out_and_in_and_leaves_nothing(tmp_path: Path) -> None:
    # GIVEN the example workload's first 40 jobs, in two bursts five simulated minutes apart, at 300x
    jobs = read_jobs(DEFAULT_WORKLOAD)[:JOBS]
    options = DemoOptions(
        jobs=jobs, speed=300, bursts=2, burst_gap=300, boot_delay=60, workdir=tmp_path, time_limit=240
    )
    out = io.StringIO()

    # WHEN the demo runs
    result = run_demo(options, out)

    # THEN it reports no problem, and writes the JSON report and the plot
    report = result.report
    assert result.ok, result.problems
    assert json.loads(result.report_path.read_text()) == json.loads(json.dumps(report, default=str))
    assert set(REQUIRED_KEYS) <= set(report)
    assert result.plot_path.stat().st_size > 10_000

    # THEN every job completed exactly once: SUCCEEDED after one attempt, and one execution each
    ids = {job.id for job in jobs}
    assert report["jobs_submitted"] == report["jobs_completed"] == JOBS
    assert report["jobs_lost"] == report["jobs_run_more_than_once"] == 0
    assert result.records == dict.fromkeys(ids, ("SUCCEEDED", 1))
    assert result.runs == dict.fromkeys(ids, 1)

    # THEN the fleet grew from its minimum and came back to it, and no busy node was terminated
    timeline = report["timeline"]
    assert isinstance(timeline, list)
    assert sum(timeline[0]["nodes"].values()) == report["min_nodes"] == 0
    assert report["max_nodes"] > report["min_nodes"]
    assert report["nodes_at_end"] == report["min_nodes"]
    assert report["busy_nodes_terminated"] == []

    # THEN teardown ran through TeardownCluster and left nothing tagged for the cluster
    executions = report["executions"]
    assert isinstance(executions, dict)
    assert executions["LaunchCluster"]["status"] == executions["TeardownCluster"]["status"] == "SUCCEEDED"
    assert "Verify nothing is left" in executions["TeardownCluster"]["steps"]
    assert report["resources_left_after_teardown"] == 0

    # THEN the deployed triggers, not the demo, drove the scaler: every kind of event reached a handler
    delivered = report["events_delivered"]
    assert isinstance(delivered, dict)
    for detail_type in (
        "Scheduled Event",
        "Shoal Demand Changed",
        "CloudWatch Alarm State Change",
        "EC2 Instance State-change Notification",
    ):
        assert delivered.get(detail_type, 0) > 0, detail_type
    assert report["lambda_errors"] == []

    # THEN every action of every decision says why, and the launches carry the plan's reasons
    decisions = report["decisions"]
    assert isinstance(decisions, list)
    assert decisions
    assert all(action["reason"] for d in decisions for action in d["actions"])
    assert all(d["reasons"] for d in decisions if any(a["action"] == "launch" for a in d["actions"]))
    assert any(a["action"] == "launch" for d in decisions for a in d["actions"])
    assert any(a["action"] == "terminate" for d in decisions for a in d["actions"])


def test_the_demo_reads_the_plan_format_and_names_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a workload whose second line has a misspelt field
    workload = tmp_path / "jobs.jsonl"
    workload.write_text(
        '{"id": "a", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}\n'
        '{"id": "b", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_tme": 60}\n'
    )

    # WHEN the demo is asked to run it
    code = cli.main(["demo", "--workload", str(workload), "--out", str(tmp_path / "out")])

    # THEN it stops before starting anything, naming the file, the line and the field
    assert code == 2
    error = capsys.readouterr().err
    assert f"{workload}:2" in error
    assert "wall_tme" in error
    assert not (tmp_path / "out").exists()


def test_a_job_that_fits_no_node_type_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a job that needs a GPU, and node types without one
    workload = tmp_path / "jobs.jsonl"
    workload.write_text(
        '{"id": "gpu", "cores": 4, "memory": "8GiB", "disk": "10GiB", "accelerators": 1, "wall_time": 60}\n'
    )

    # WHEN the demo is asked to run it
    code = cli.main(["demo", "--workload", str(workload), "--node-types", "m5.2xlarge", "--out", str(tmp_path / "out")])

    # THEN it refuses, saying which jobs and how to fix it
    assert code == 2
    assert "fit none of the node types" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
