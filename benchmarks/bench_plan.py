"""Plan benchmark: continuous-shape, few-shape and real-trace queues; time, memory, cost, nodes; Toil side by side.

    python benchmarks/bench_plan.py [--queues mixed,gpu,on-demand,too-big,few-shapes,traces]
        [--sizes 1000,10000,100000] [--repeat 5] [--cli-repeat 3] [--toil-max-jobs N] [--toil-timeout S]
        [--toil-python PATH | --no-toil]

Queues are in ``benchmarks/queues.py``: four continuous-shape queues (nearly every job its own shape),
a few-shape genomics-like queue, and the job shapes of each trace in ``../shared/traces/`` (submit
times ignored: the whole trace as one queue). Shoal's plan time is the median of ``--repeat`` runs of
histogram + packing on parsed jobs, in CPU seconds (``cpu s``; a shared machine's wall time mostly
measures its other tenants) and wall seconds; peak memory is what tracemalloc sees in one such run;
``cli`` is the median CPU and wall time of ``shoal plan --json`` as a subprocess (interpreter start,
imports, read, parse, plan, print) and its own peak RSS (VmHWM; a child's ru_maxrss starts at its parent's).

Toil runs where it is importable: ``--toil-python``, ``$TOIL_PYTHON``, ``.venv-toil`` (``make toil-env``)
or this interpreter. Its ``ClusterScaler.getEstimatedNodeCounts`` packs the same jobs into exactly
Shoal's usable capacities (``assume_zero_overhead``), priced the same, once per row (it is slow). Toil
has no accelerators: on the gpu queue it packs the accelerator jobs into the accelerator types alone and
the rest into every type, and the counts are added (a Toil that knew about GPUs could do no better).
A Toil run longer than ``--toil-timeout`` seconds (wall) is stopped and its row says ``toil > Ns``.
``speedup`` is Toil's CPU time over Shoal's; ``cost ratio`` is Shoal's $/h over Toil's. The JSON line gives each
plan's ``fingerprint``: compare them before and after a change to the packing to see whether any plan changed.
The header and each row print the machine's 1-minute load average: on a shared machine, read the times with it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
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

from benchmarks.queues import ALL, Queue, trace_queues  # noqa: E402
from shared.domain.catalog import DEFAULT_NODE_STORAGE  # noqa: E402
from shared.domain.jobs import Job, histogram, parse_job  # noqa: E402
from shared.domain.node_types import Offer, build_offers, parse_node_types  # noqa: E402
from shared.domain.packing import Plan, plan  # noqa: E402

TARGET_TIME = 1800.0
REGION = "us-east-1"


def shoal_plan(jobs: list[Job], offers: list[Offer]) -> Plan:
    return plan(histogram(jobs), offers, target_time=TARGET_TIME)


def fingerprint(result: Plan) -> str:
    """A digest of everything a plan says (groups, lanes, runs, what is left out, the reasons): equal digests
    before and after a change to the packing mean it changed no plan."""
    digest = hashlib.sha256()
    for group in result.groups:
        lanes = [(lane.reserved, lane.end, [(run.shape, run.count) for run in lane.runs]) for lane in group.load.lanes]
        digest.update(repr((group.offer.key, group.count, group.load.free, lanes)).encode())
    digest.update(repr((result.unplaceable, result.deferred, result.reasons)).encode())
    return digest.hexdigest()[:16]


def measure_shoal(jobs: list[Job], offers: list[Offer], repeat: int) -> dict[str, object]:
    times, cpu_times = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = shoal_plan(jobs, offers)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
    tracemalloc.start()
    shoal_plan(jobs, offers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu_times),
        "peak_mb": peak / 2**20,
        "hourly_cost": result.hourly_cost,
        "nodes": {k: v for k, v in result.node_counts().items() if v},
        "placed": result.placed_jobs,
        "fingerprint": fingerprint(result),
        "unplaceable": sum(u.count for u in result.unplaceable),
    }


def measure_cli(name: str, raw: list[dict[str, object]], node_types: str, tmp: Path, repeat: int) -> dict[str, float]:
    """The whole command as a user runs it: read JSONL, parse, plan, print JSON; wall time and peak RSS."""
    path = tmp / f"{name.replace(':', '-')}-{len(raw)}.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in raw))
    command = [sys.executable, "-c", _REPORT_PEAK, "plan", "--jobs", str(path), "--node-types", node_types,
               "--region", REGION, "--json"]  # fmt: skip
    walls, cpus, rss = [], [], 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert child.stderr is not None
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"shoal plan failed with status {os.waitstatus_to_exitcode(status)}: {err}")
        rss = max(rss, float(err.rsplit("peak-kB ", 1)[1].split()[0]) / 1024)
    return {"wall_seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus), "peak_rss_mb": rss}


# `shoal plan` run as `python -m shared.cli.main` does, printing the process's own peak RSS (VmHWM) at exit:
# ru_maxrss of a child starts at its parent's peak (Linux records the forked copy's), which is this bench's.
_REPORT_PEAK = """
import runpy, sys
sys.argv = ["shoal", *sys.argv[1:]]
try:
    runpy.run_module("shared.cli.main", run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"peak-kB {peak}\\n")
"""


class ToilTimeoutError(Exception):
    """Toil took longer than --toil-timeout."""


def run_toil(toil_python: str, jobs: list[Job], offers: list[Offer], timeout: float) -> dict[str, object]:
    """Toil on the same jobs and capacities; accelerator jobs only on accelerator types (Toil has no GPUs)."""
    gpu_offers = [o for o in offers if o.usable.accelerators]
    parts = [([j for j in jobs if not j.shape.resources.accelerators], offers)]
    if gpu_offers:
        parts.append(([j for j in jobs if j.shape.resources.accelerators], gpu_offers))
    total: dict[str, object] = {"counts": {}, "seconds": 0.0, "cpu_seconds": 0.0, "could_not_fit": 0}
    for part_jobs, part_offers in parts:
        if not part_jobs:
            continue
        out = _toil_once(toil_python, part_jobs, part_offers, timeout)
        counts = total["counts"]
        assert isinstance(counts, dict)
        for key, n in out["counts"].items():  # type: ignore[attr-defined]
            counts[key] = counts.get(key, 0) + n
        total["seconds"] = float(total["seconds"]) + float(out["seconds"])  # type: ignore[arg-type]
        total["cpu_seconds"] = float(total["cpu_seconds"]) + float(out["cpu_seconds"])  # type: ignore[arg-type]
        total["could_not_fit"] = int(total["could_not_fit"]) + int(out["could_not_fit"])  # type: ignore[call-overload]
    price = {o.key: o.hourly_price for o in offers}
    counts = total["counts"]
    assert isinstance(counts, dict)
    total["hourly_cost"] = sum(price[k] * n for k, n in counts.items())
    total["counts"] = {k: n for k, n in counts.items() if n}
    return total


def _toil_once(toil_python: str, jobs: list[Job], offers: list[Offer], timeout: float) -> dict[str, object]:
    counts: dict[tuple[float, int, int, float, bool], int] = {}
    for job in jobs:
        r = job.shape.resources
        key = (r.cores, r.memory, r.disk, job.shape.wall_time, job.shape.preemptible)
        counts[key] = counts.get(key, 0) + 1
    spec = {
        "target_time": TARGET_TIME,
        "node_types": [
            {"key": o.key, "cores": o.usable.cores, "memory": o.usable.memory, "disk": o.usable.disk,
             "preemptible": o.spot}
            for o in offers
        ],
        "jobs": [[*key, n] for key, n in counts.items()],
    }  # fmt: skip
    try:
        child = subprocess.run(
            [toil_python, str(ROOT / "benchmarks" / "toil_estimate.py")],
            input=json.dumps(spec), capture_output=True, text=True, check=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ToilTimeoutError from None
    out: dict[str, object] = json.loads(child.stdout.strip().splitlines()[-1])
    return out


def find_toil_python(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("TOIL_PYTHON"), str(ROOT / ".venv-toil" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            return candidate
    if importlib.util.find_spec("toil") is not None:
        return sys.executable
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queues", default="mixed,gpu,on-demand,too-big,few-shapes,traces")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli-repeat", type=int, default=3, help="shoal plan subprocess runs per row (0: skip)")
    parser.add_argument("--toil-max-jobs", type=int, default=100_000, help="skip Toil on larger queues")
    parser.add_argument("--toil-timeout", type=float, default=900.0, help="wall seconds Toil may take per row")
    parser.add_argument("--toil-python")
    parser.add_argument("--no-toil", action="store_true")
    args = parser.parse_args()
    toil_python = None if args.no_toil else find_toil_python(args.toil_python)
    wanted = [q.strip() for q in args.queues.split(",") if q.strip()]
    queues: list[Queue] = []
    for name in wanted:
        if name == "traces":
            queues.extend(trace_queues())
        elif name in ALL:
            queues.append(ALL[name])
        else:
            raise SystemExit(f"--queues: unknown queue {name!r}; known: {', '.join([*ALL, 'traces'])}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"target time {TARGET_TIME:g} s, node storage {DEFAULT_NODE_STORAGE / 2**30:g} GiB, {REGION}; "
          f"Shoal: median of {args.repeat}; CLI: median of {args.cli_repeat}; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"Toil: {toil_python or 'not installed (make toil-env), skipped'}")
    header = (
        f"{'queue':<22} {'jobs':>7} {'shapes':>6} {'cpu s':>7} {'wall s':>7} {'peak MB':>7} {'cli cpu':>7} "
        f"{'cli wall':>8} {'cli MB':>6} {'shoal $/h':>10} {'nodes':>6}"
    )
    if toil_python:
        header += (
            f" {'toil cpu':>8} {'toil wall':>9} {'toil $/h':>9} {'toil nodes':>10} {'speedup':>8} {'cost ratio':>10}"
        )
    header += f" {'load':>5}"
    print(header)
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    for queue in queues:
        offers = build_offers(parse_node_types(queue.node_types), region=REGION)
        for size in sizes if queue.sized else [0]:
            raw = queue.jobs(size)
            jobs = [parse_job(j) for j in raw]
            shoal = measure_shoal(jobs, offers, args.repeat)
            cli = measure_cli(queue.name, raw, queue.node_types, tmp, args.cli_repeat) if args.cli_repeat else {}
            nodes = sum(shoal["nodes"].values())  # type: ignore[attr-defined]
            nan = float("nan")
            line = (
                f"{queue.name:<22} {len(jobs):>7} {len(histogram(jobs)):>6} {shoal['cpu_seconds']:>7.3f} "
                f"{shoal['seconds']:>7.3f} {shoal['peak_mb']:>7.1f} {cli.get('cpu_seconds', nan):>7.2f} "
                f"{cli.get('wall_seconds', nan):>8.2f} {cli.get('peak_rss_mb', nan):>6.0f} "
                f"{shoal['hourly_cost']:>10.2f} {nodes:>6}"
            )
            row: dict[str, object] = {"queue": queue.name, "node_types": queue.node_types, "jobs": len(jobs),
                                      "shoal": shoal, "cli": cli}  # fmt: skip
            toil: dict[str, object] | None = None
            toil_timed_out = False
            if toil_python and len(jobs) <= args.toil_max_jobs:
                try:
                    toil = run_toil(toil_python, jobs, offers, args.toil_timeout)
                except ToilTimeoutError:
                    toil_timed_out = True
            if toil_timed_out:
                line += f" {'toil > ' + format(args.toil_timeout, 'g') + 's (stopped)':>61}"
                row["toil"] = {"timeout_seconds": args.toil_timeout}
            elif toil is not None:
                toil_nodes = sum(toil["counts"].values())  # type: ignore[attr-defined]
                speedup = float(toil["cpu_seconds"]) / float(shoal["cpu_seconds"])  # type: ignore[arg-type]
                ratio = float(shoal["hourly_cost"]) / float(toil["hourly_cost"])  # type: ignore[arg-type]
                line += (
                    f" {toil['cpu_seconds']:>8.3f} {toil['seconds']:>9.3f} {toil['hourly_cost']:>9.2f} "
                    f"{toil_nodes:>10} {speedup:>7.1f}× {ratio:>10.3f}"
                )
                row["toil"] = toil
            line += f" {os.getloadavg()[0]:>5.1f}"
            print(line, flush=True)
            results.append(row)
    print(json.dumps({"benchmark": "plan", "results": results}, default=float))


if __name__ == "__main__":
    main()
