"""How long ``shoal demo`` takes end to end (the target: under two minutes on a 2-core machine).

    .venv/bin/python benchmarks/bench_demo.py [--runs 1] [-- extra shoal demo arguments]

Runs the real command (``shoal demo --quiet``) as a subprocess, so the figure includes everything a user
waits for: the local cloud, ``cdk synth``/``bootstrap``/``deploy``, LaunchCluster, the workload,
TeardownCluster and the report. Prints each run's wall time and the demo's own phase timings, and exits 1
if the median is over the target or a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 120.0
REPO = Path(__file__).resolve().parent.parent


def one_run(extra: list[str]) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "report.json"
        shoal = Path(sys.executable).parent / "shoal"
        started = time.perf_counter()
        result = subprocess.run(
            [str(shoal), "demo", "--quiet", "--out", out, "--report", str(report), *extra],
            cwd=REPO,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"shoal demo failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        return elapsed, json.loads(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="arguments for shoal demo (after --)")
    args = parser.parse_args()
    times = []
    for run in range(args.runs):
        elapsed, report = one_run(args.extra)
        times.append(elapsed)
        print(
            f"run {run + 1}: {elapsed:.1f}s wall for {report['jobs_submitted']} jobs "
            f"({report['jobs_completed']} completed, {report['jobs_lost']} lost); phases {report['phases']}; "
            f"{os.cpu_count()} CPUs"
        )
    median = statistics.median(times)
    verdict = "meets" if median <= TARGET_SECONDS else "misses"
    print(f"shoal demo: {median:.1f}s wall (median of {args.runs}); {verdict} the {TARGET_SECONDS:.0f}s target")
    return 0 if median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
