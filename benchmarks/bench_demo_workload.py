"""``shoal demo``'s workload through ``shoal simulate``: the demo's scaling policy in a second, on any machine.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_demo_workload.py [--seeds 0,1,2] [--workload FILE]

The demo takes minutes and runs on a lockstep clock that keeps its waits from moving with the machine's load, but
not every detail of a run is fixed (moto's instance ids and the agents' threads differ between runs). Its waits
depend on the policy first: this replays the same jobs, in the demo's bursts, with the demo's node types, maximums,
target, boot delay and scale interval, through the simulator. The demo's jobs declare their wall times, which its
scaler sees (``--declared-runtimes``); the row without them is the scaler as it meets Toil's jobs.

Prints, for each seed, the p50, p95 and longest wait, the cost and the peak fleet, and then, per job name and burst,
how many jobs waited past the target time. Exit status 1 if a median p95 wait is over the target.
"""

from __future__ import annotations

import argparse
import collections
import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench_simulate import parse_seeds
from shared.cli.jobs_file import read_jobs
from shared.local.demo_defaults import DEFAULT_WORKLOAD
from shared.local.demo_setup import DemoOptions, cluster_settings, split_bursts
from shared.sim.engine import Simulation
from shared.sim.model import SimOptions
from shared.sim.trace import TraceJob


def demo_trace(workload: Path, options: DemoOptions) -> list[TraceJob]:
    """The workload as the demo submits it: in ``options.bursts`` bursts, ``options.burst_gap`` apart."""
    bursts = split_bursts(read_jobs(workload), options.bursts)
    return [TraceJob(job=job, submit=index * options.burst_gap) for index, burst in enumerate(bursts) for job in burst]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workload", type=Path, default=DEFAULT_WORKLOAD)
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2])
    args = parser.parse_args(argv)
    demo = DemoOptions(jobs=())
    settings = cluster_settings(demo)
    trace = demo_trace(args.workload, demo)
    print(f"{args.workload.name}: {len(trace)} jobs in {demo.bursts} bursts {demo.burst_gap:g} s apart; "
          f"{settings.node_types}, max {settings.max_nodes}, target {settings.target_time:g} s")  # fmt: skip
    missed = False
    for declared in (True, False):
        p95s = []
        late: collections.Counter[tuple[str, float]] = collections.Counter()
        for seed in args.seeds:
            options = SimOptions(settings=settings, boot_delay=demo.boot_delay, seed=seed, declared_runtimes=declared)
            sim = Simulation(trace, options)
            report = sim.run().report
            p95s.append(float(report["wait_p95_seconds"]))  # type: ignore[arg-type]
            late.update((j.name or "", j.trace.submit) for j in sim.jobs if j.wait > settings.target_time)
            print(
                f"{'declared' if declared else 'blind':>8} seed {seed}: wait p50 {report['wait_p50_seconds']:g} s, "
                f"p95 {report['wait_p95_seconds']:g} s, max {report['wait_max_seconds']:g} s; "
                f"${report['cost']:.2f}, peak {report['peak_nodes']} nodes; "
                f"lost {report['lost']}, run twice {report['run_twice']}, killed {report['killed_by_scale_in']}"
            )
        median = statistics.median(p95s)
        missed |= median > settings.target_time
        over = ", ".join(f"{name} (burst at {submit:g} s) {count}" for (name, submit), count in sorted(late.items()))
        print(f"{'declared' if declared else 'blind':>8}: median p95 {median:g} s; jobs past the target over "
              f"{len(args.seeds)} seeds: {over or 'none'}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
