"""bench_demo_workload replays the demo's own workload file as the demo submits it: its bursts, their gap."""

from __future__ import annotations

from benchmarks.bench_demo_workload import demo_trace
from shared.cli.jobs_file import read_jobs
from shared.local.demo_defaults import DEFAULT_WORKLOAD
from shared.local.demo_setup import DemoOptions, split_bursts


def test_the_demo_workload_is_replayed_in_the_demos_bursts() -> None:
    demo = DemoOptions(jobs=(), bursts=3, burst_gap=600.0)
    trace = demo_trace(DEFAULT_WORKLOAD, demo)
    jobs = read_jobs(DEFAULT_WORKLOAD)
    # every job of the file, once, in order, each at the start of its burst as the demo splits them
    assert [t.job for t in trace] == jobs
    expected = [index * 600.0 for index, burst in enumerate(split_bursts(jobs, 3)) for _ in burst]
    assert [t.submit for t in trace] == expected and len(set(expected)) == 3
    # the scaler may be told the runtimes: the trace keeps each job's declared wall time
    assert all(t.wall_time == t.job.shape.wall_time > 0 for t in trace)
