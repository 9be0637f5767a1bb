"""The guardrails acting in the simulator: a budget hit mid-workload (jobs that started finish, nothing new
launches, the cluster ends BUDGET_EXHAUSTED with what it spent) and a fleet held under maxHourlyCost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.domain.catalog import instance_type
from shared.sim.engine import SimOptions, SimResult, simulate
from shared.sim.trace import read_trace
from tests.unit.test_simulate import ROOT, bursty, settings, write_trace

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
