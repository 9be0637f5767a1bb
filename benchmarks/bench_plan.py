"""Plan benchmark: 1,000 / 10,000 / 100,000 mixed jobs; time, peak memory, cost, node counts; Toil side by side.

    python benchmarks/bench_plan.py [--sizes 1000,10000,100000] [--repeat 5] [--toil-python PATH | --no-toil]

Shoal's figure is the median of ``--repeat`` runs of histogram + packing on parsed jobs, and peak
traced memory of one such run. Where Toil is installed in a side environment (``make toil-env``
puts it in .venv-toil; or pass --toil-python / set TOIL_PYTHON), Toil's
``ClusterScaler.getEstimatedNodeCounts`` runs on the same jobs, capacities and prices, once per size
(it is slow), and the ratios are printed. The workload has no GPU jobs, which Toil cannot express.
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
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.workload import mixed_jobs  # noqa: E402
from shared.domain.jobs import Job, histogram, parse_job  # noqa: E402
from shared.domain.node_types import Offer, build_offers, parse_node_types  # noqa: E402
from shared.domain.packing import Plan, plan  # noqa: E402

NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,c5.4xlarge,m5.2xlarge,m5.8xlarge,r5.2xlarge,r5.4xlarge"
TARGET_TIME = 1800.0
REGION = "us-east-1"


def shoal_plan(jobs: list[Job], offers: list[Offer]) -> Plan:
    return plan(histogram(jobs), offers, target_time=TARGET_TIME)


def measure_shoal(jobs: list[Job], offers: list[Offer], repeat: int) -> dict[str, object]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = shoal_plan(jobs, offers)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    shoal_plan(jobs, offers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": statistics.median(times),
        "peak_mb": peak / 2**20,
        "hourly_cost": result.hourly_cost,
        "nodes": {k: v for k, v in result.node_counts().items() if v},
        "placed": result.placed_jobs,
    }


def measure_cli(size: int, tmp: Path) -> dict[str, float]:
    """The whole command as a user runs it: read JSONL, parse, plan, print JSON; wall time and peak RSS."""
    path = tmp / f"jobs-{size}.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in mixed_jobs(size, include_gpu=False)))
    command = [sys.executable, "-m", "shared.cli.main", "plan", "--jobs", str(path), "--node-types", NODE_TYPES,
               "--region", REGION, "--json"]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"shoal plan failed with status {child.returncode}")
    return {"wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def run_toil(toil_python: str, jobs: list[Job], offers: list[Offer]) -> dict[str, object]:
    counts: dict[tuple[float, int, int, float, bool], int] = {}
    for job in jobs:
        r = job.shape.resources
        key = (r.cores, r.memory, r.disk, job.shape.wall_time, job.shape.preemptible)
        counts[key] = counts.get(key, 0) + 1
    spec = {
        "target_time": TARGET_TIME,
        "node_types": [
            {
                "key": o.key,
                "cores": o.usable.cores,
                "memory": o.usable.memory,
                "disk": o.usable.disk,
                "preemptible": o.spot,
            }
            for o in offers
        ],
        "jobs": [[*key, n] for key, n in counts.items()],
    }
    child = subprocess.run(
        [toil_python, str(ROOT / "benchmarks" / "toil_estimate.py")],
        input=json.dumps(spec), capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = json.loads(child.stdout.strip().splitlines()[-1])
    price = {o.key: o.hourly_price for o in offers}
    out["hourly_cost"] = sum(price[k] * n for k, n in out["counts"].items())
    out["counts"] = {k: n for k, n in out["counts"].items() if n}
    return out


def find_toil_python(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("TOIL_PYTHON"), str(ROOT / ".venv-toil" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--toil-python")
    parser.add_argument("--no-toil", action="store_true")
    args = parser.parse_args()
    offers = build_offers(parse_node_types(NODE_TYPES), region=REGION)
    toil_python = None if args.no_toil else find_toil_python(args.toil_python)
    print(f"node types: {NODE_TYPES} ({REGION}); target time {TARGET_TIME:g} s; Shoal: median of {args.repeat}")
    print(f"Toil: {toil_python or 'not installed (make toil-env), skipped'}")
    header = (
        f"{'jobs':>7} {'shapes':>6} {'plan s':>8} {'peak MB':>8} {'cli s':>6} {'cli RSS MB':>10} "
        f"{'shoal $/h':>10} {'nodes':>6}"
    )
    if toil_python:
        header += f" {'toil s':>9} {'toil $/h':>9} {'toil nodes':>10} {'speedup':>9} {'cost ratio':>10}"
    print(header)
    results = []
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    for size in (int(s) for s in args.sizes.split(",")):
        jobs = [parse_job(j) for j in mixed_jobs(size, include_gpu=False)]
        shoal = measure_shoal(jobs, offers, args.repeat)
        cli = measure_cli(size, Path(tmp))
        nodes = sum(shoal["nodes"].values())  # type: ignore[union-attr]
        line = (
            f"{size:>7} {len(histogram(jobs)):>6} {shoal['seconds']:>8.4f} {shoal['peak_mb']:>8.2f} "
            f"{cli['wall_seconds']:>6.2f} {cli['peak_rss_mb']:>10.1f} {shoal['hourly_cost']:>10.2f} {nodes:>6}"
        )
        row: dict[str, object] = {"jobs": size, "shoal": shoal, "cli": cli}
        if toil_python:
            toil = run_toil(toil_python, jobs, offers)
            toil_nodes = sum(toil["counts"].values())  # type: ignore[union-attr]
            speedup = float(toil["seconds"]) / float(shoal["seconds"])  # type: ignore[arg-type]
            ratio = float(shoal["hourly_cost"]) / float(toil["hourly_cost"])  # type: ignore[arg-type]
            line += (
                f" {toil['seconds']:>9.3f} {toil['hourly_cost']:>9.2f} {toil_nodes:>10} {speedup:>8.0f}× {ratio:>10.3f}"
            )
            row["toil"] = toil
        print(line, flush=True)
        results.append(row)
    print(json.dumps({"benchmark": "plan", "results": results}, default=float))


if __name__ == "__main__":
    main()
