"""The guardrails acting in the simulator: a budget hit mid-workload (jobs that started finish, nothing new
launches, the cluster ends BUDGET_EXHAUSTED with what it spent) and a fleet held under maxHourlyCost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.domain.catalog import instance_type
from shared.sim.engine import SimOptions, SimResult, simulate
from shared.sim.trace import read_trace
from tests.unit.test_simulate import ROOT, bursty, settings, trace_line, write_trace

BUDGET = 0.5  # dollars: the bursty trace costs about $2.30 unbounded, so this runs out about a third of the way


def run(tmp_path: Path, **overrides: object) -> SimResult:
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    return simulate(trace, SimOptions(settings=settings(**overrides)))


def total_nodes(result: SimResult) -> list[tuple[float, int]]:
    return [(s.t, sum(s.nodes.values())) for s in result.samples]


def test_a_budget_hit_mid_workload_lets_running_jobs_finish_and_launches_nothing_more(tmp_path: Path) -> None:
    # GIVEN the bursty trace and a budget far below what it costs
    result = run(tmp_path, budget=BUDGET)
    report = result.report
    # THEN the cluster ends BUDGET_EXHAUSTED partway through, having spent at least the budget
    assert report["status"] == "BUDGET_EXHAUSTED"
    exhausted_at = float(str(report["budget_exhausted_at_seconds"]))
    assert 0 < exhausted_at < float(str(report["simulated_seconds"]))
    assert BUDGET <= float(str(report["spent"])) < 2 * BUDGET
    # AND every job that started finished once (none killed, none run twice); the rest never started
    assert report["killed_by_scale_in"] == report["run_twice"] == report["requeued"] == 0
    assert int(str(report["completed"])) + int(str(report["never_started"])) == report["jobs"]
    assert 0 < int(str(report["never_started"])) < int(str(report["jobs"]))
    # AND from the moment it ran out the fleet only shrank, to nothing
    after = [count for t, count in total_nodes(result) if t >= exhausted_at]
    assert after == sorted(after, reverse=True) and report["nodes_at_end"] == 0


def test_without_a_budget_the_report_is_as_before(tmp_path: Path) -> None:
    report = run(tmp_path).report
    assert "status" not in report and "spent" not in report and report["completed"] == report["jobs"]


def test_max_hourly_cost_holds_the_fleet_under_the_cap_and_every_job_still_runs(tmp_path: Path) -> None:
    cap = 2.0
    prices = {"c5.4xlarge": 0.30, "c5a.4xlarge": 0.30, "m5.2xlarge": 0.384}  # the spot class at its bid
    prices["r5.4xlarge"] = instance_type("r5.4xlarge").price("us-west-2")
    uncapped = run(tmp_path)
    capped = run(tmp_path, max_hourly_cost=cap)

    def peak(result: SimResult) -> float:
        return max(sum(prices[t] * n for t, n in s.nodes.items()) for s in result.samples)

    assert peak(uncapped) > cap >= peak(capped)
    assert capped.report["completed"] == capped.report["jobs"]


def test_the_cli_says_budget_exhausted(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty())
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(trace), "--node-types",
         "c5.4xlarge/c5a.4xlarge:0.30,m5.2xlarge,r5.4xlarge", "--budget", str(BUDGET)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "BUDGET_EXHAUSTED at " in result.stdout and f"of the ${BUDGET:g} budget" in result.stdout


def test_the_cli_refuses_a_bad_budget_in_one_line(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty(3))
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(trace), "--node-types", "m5.2xlarge",
         "--max-hourly-cost", "-1"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "max_hourly_cost" in result.stderr


def test_a_lease_tears_the_cluster_down_when_it_runs_out_and_running_jobs_finish(tmp_path: Path) -> None:
    # GIVEN the bursty trace (three bursts 20 minutes apart) and a 25-minute lease
    result = run(tmp_path, lease=1500.0)
    report = result.report
    # THEN the lease runs out at the first round past 25 minutes, and the report says so
    ended = float(str(report["lease_ended_at_seconds"]))
    assert 1500 <= ended <= 1500 + 60 and report["lease_reason"] == "lease expired"
    # AND what ran finished once, the last burst never started, and the fleet only shrank, to nothing
    assert report["killed_by_scale_in"] == report["run_twice"] == 0
    assert int(str(report["completed"])) + int(str(report["never_started"])) == report["jobs"]
    assert int(str(report["never_started"])) >= 40
    after = [count for t, count in total_nodes(result) if t > ended + 60]
    assert after == sorted(after, reverse=True) and report["nodes_at_end"] == 0
    assert "status" not in report  # no budget: nothing to say of one


def test_an_idle_lease_runs_out_only_after_that_long_with_nothing_queued_or_running(tmp_path: Path) -> None:
    # GIVEN ten 5-minute jobs now and ten more two hours later, and a 30-minute idle lease
    lines = [trace_line(i, float(i), wall=300) for i in range(10)]
    lines += [trace_line(10 + i, 7200.0 + i, wall=300) for i in range(10)]
    trace = read_trace(write_trace(tmp_path / "t.jsonl", lines))
    idle = simulate(trace, SimOptions(settings=settings(idle_lease=1800.0))).report
    # THEN the cluster is torn down half an hour after the first ten ended; the second ten never start
    ended = float(str(idle["lease_ended_at_seconds"]))
    assert 1800 < ended < 7200 and str(idle["lease_reason"]).startswith("idle lease expired")
    assert (idle["completed"], idle["never_started"], idle["nodes_at_end"]) == (10, 10, 0)
    # AND with no lease every job runs
    free = simulate(trace, SimOptions(settings=settings())).report
    assert free["completed"] == 20 and "lease_ended_at_seconds" not in free


def test_the_cli_simulates_a_lease(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty())
    argv = [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(trace), "--node-types", "m5.2xlarge"]
    ok = subprocess.run([*argv, "--lease", "25m"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "lease expired at 0.4" in ok.stdout and "jobs never started" in ok.stdout
    bad = subprocess.run([*argv, "--idle-lease", "banana"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "idle_lease" in bad.stderr, bad.stderr
