"""Issue 14's bar on the real traces beside the repository (``../shared/traces``, or ``SHOAL_TRACES``), through the
real ``shoal simulate --json`` with the issue's node types (no max, 90 s boot, 1 min interval, 30 min target): every
job runs, once, none is killed by scale-in, the p95 wait is within the target, and on the two nf-core pipelines the
cost is within 1.5x the lower bound, with Toil's default 50 GiB root volume per node and with larger ones (where a
planner that chose big nodes for their price per job paid for their stragglers). The RICC week takes 20-60 s and is
in the long tier. Cost against Toil's policy is a benchmark (``benchmarks/bench_simulate.py``), not a test: Shoal
does not yet win it on every trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.queues import TRACES

ROOT = Path(__file__).resolve().parents[2]
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.30,m5.2xlarge,r5.4xlarge,m5.24xlarge"
TARGET = 1800.0


def simulate(trace: str, node_storage: str = "50") -> dict[str, object]:
    path = TRACES / f"{trace}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is missing: set SHOAL_TRACES to the folder of the real traces")
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(path), "--node-types", NODE_TYPES,
         "--boot-delay", "90s", "--scale-interval", "1m", "--target-time", "30m", "--node-storage", node_storage,
         "--seed", "0", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def assert_every_job_ran_once_within_the_target(report: dict[str, object]) -> None:
    assert report["completed"] == report["jobs"]
    assert (report["lost"], report["run_twice"], report["killed_by_scale_in"]) == (0, 0, 0)
    assert float(report["wait_p95_seconds"]) <= TARGET  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trace", "node_storage"), [("nf-chipseq", "50"), ("nf-mag", "50"), ("nf-chipseq", "200"), ("nf-mag", "100")]
)
def test_an_nf_core_pipeline_meets_the_target_within_one_and_a_half_times_the_lower_bound(
    trace: str, node_storage: str
) -> None:
    report = simulate(trace, node_storage)
    assert_every_job_ran_once_within_the_target(report)
    assert float(report["cost_over_lower_bound"]) <= 1.5  # type: ignore[arg-type]


@pytest.mark.long
def test_the_ricc_week_meets_the_target() -> None:
    report = simulate("ricc-2010-wk26")
    assert_every_job_ran_once_within_the_target(report)
