"""The simulator shows the quota and preemption guardrails acting: a vCPU quota bounds the fleet (told to the
scaler, no launch is refused; blind, EC2 refuses and the round falls back), and spot interruptions with a
preemption budget send a job to on-demand nodes once it has used the budget. Through the real CLI too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, simulate
from shared.sim.guardrails import parse_quotas
from shared.sim.trace import read_trace
from tests.unit.test_simulate import ROOT, trace_line, write_trace


def quota_trace(path: Path) -> Path:
    # 40 one-hour 8-core jobs at once: 40 m5.2xlarge unbounded, 320 vCPUs
    return write_trace(path, [trace_line(i, float(i), cores=8, memory_gib=8, wall=3600, spot=False) for i in range(40)])


def test_a_vcpu_quota_bounds_the_fleet_and_a_scaler_that_knows_it_is_never_refused(tmp_path: Path) -> None:
    trace = read_trace(quota_trace(tmp_path / "t.jsonl"))
    settings = ClusterSettings(name="sim", node_types="m5.2xlarge").validate()
    free = simulate(trace, SimOptions(settings=settings)).report
    quotas = parse_quotas("on-demand=64")
    aware = simulate(trace, SimOptions(settings=settings, vcpu_quotas=quotas)).report
    blind = simulate(trace, SimOptions(settings=settings, vcpu_quotas=quotas, quota_aware=False)).report
    # THEN unbounded it takes far more than 8 nodes; under a 64-vCPU quota 8 at most, every job completes once
    assert int(str(free["peak_nodes"])) > 8 and free["quota_refusals"] == 0
    for report in (aware, blind):
        assert report["peak_nodes"] <= 8
        assert report["completed"] == report["jobs"] == 40 and report["run_twice"] == 0
    # AND the scaler that is told the quota never asks past it; the blind one is refused and falls back
    assert aware["quota_refusals"] == 0 and blind["quota_refusals"] > 0


@pytest.mark.parametrize(("budget", "at_most"), [(1, 1), (2, 2)])
def test_spot_interruptions_past_the_budget_move_jobs_to_on_demand(tmp_path: Path, budget: int, at_most: int) -> None:
    # GIVEN spot-able 2-hour jobs, spot nodes interrupted about once an hour, and on-demand as the fallback
    lines = [trace_line(i, float(i), cores=8, memory_gib=8, wall=7200, spot=True) for i in range(12)]
    trace = read_trace(write_trace(tmp_path / "t.jsonl", lines))

    def run(max_preemptions: int) -> dict[str, object]:
        settings = ClusterSettings(
            name="sim", node_types="m5.2xlarge:0.2,m5.2xlarge", max_preemptions=max_preemptions
        ).validate()
        return simulate(trace, SimOptions(settings=settings, spot_interruptions=1.0, seed=7)).report

    unbounded, bounded = run(100), run(budget)
    # THEN without a budget some job is reclaimed again and again; with one, no job is reclaimed past it
    assert int(str(unbounded["most_preemptions_of_a_job"])) >= 2
    assert bounded["most_preemptions_of_a_job"] == at_most
    assert bounded["completed"] == bounded["jobs"] == 12 and bounded["run_twice"] == 0
    assert bounded["node_hours"]["m5.2xlarge|on-demand"] > 0  # type: ignore[index]


def test_the_cli_runs_the_guardrails_and_refuses_a_bad_quota_in_one_line(tmp_path: Path) -> None:
    trace = quota_trace(tmp_path / "t.jsonl")
    base = [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(trace), "--node-types", "m5.2xlarge"]
    ok = subprocess.run(
        [*base, "--vcpu-quota", "on-demand=64", "--json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["peak_nodes"] <= 8 and report["completed"] == 40 and report["quota_refusals"] == 0
    for flags, needle in (
        (["--vcpu-quota", "ondemand=64"], "--vcpu-quota"),
        (["--max-preemptions", "-1"], "max_preemptions"),
    ):
        bad = subprocess.run([*base, *flags], cwd=ROOT, capture_output=True, text=True, check=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and needle in bad.stderr, bad.stderr


def test_a_burst_of_hour_long_jobs_gets_a_node_each_within_about_the_target_time(tmp_path: Path) -> None:
    # GIVEN 40 one-hour 8-core jobs at once, nothing learned yet (the scaler first guesses 1 s), target 30 min
    trace = read_trace(quota_trace(tmp_path / "t.jsonl"))
    settings = ClusterSettings(name="sim", node_types="m5.2xlarge").validate()
    report = simulate(trace, SimOptions(settings=settings)).report
    # THEN the fleet reaches a node per job (it stopped at 27 when running jobs were planned one after another)
    assert report["peak_nodes"] == 40 and report["completed"] == 40
    # AND the last job starts within ~the target time (the first minutes teach the scaler the jobs are long),
    # so all is done in about an hour and a half, not 2.5 h
    assert float(str(report["wait_max_seconds"])) <= 1.15 * settings.target_time
    assert float(str(report["simulated_seconds"])) <= 6000
