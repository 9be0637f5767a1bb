"""A 32-job Toil workflow on ``shoal local run`` beside the same workflow on Toil's ``single_machine``.

The workflow is ``examples/toil/primes.py`` with 30 chunks (the root, 30 chunks, the sum: 32 jobs) of
small work, so Toil's and Shoal's overheads dominate. For each run it prints the workflow's wall time
(the Toil leader's, from start to its return value; the local cloud's deploy and teardown are not in it)
and, on Shoal, the per-job overhead:

- submit to start: from the leader's submission (the job record's ``submitted_at``) to the agent starting
  the job's process (``started_at``), real seconds;
- finish to leader: from the job's process ending (``finished_at``) to the leader's
  ``getUpdatedBatchJob`` returning it (recorded by a wrapper around the batch system in this script).

    python benchmarks/bench_toil_workflow.py [--repeats N] [--chunks 30] [--limit 30000]

Medians over the repeats; the machine is shared, so read the ratio rather than the absolute times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRIMES = REPO / "examples" / "toil" / "primes.py"


def leader(argv: list[str]) -> int:
    """COMMAND under ``shoal local run``: the primes workflow in this process, with the leader's learn times logged."""
    log_path = Path(argv[0])
    sys.path.insert(0, str(PRIMES.parent))
    import primes
    from toil.common import Toil
    from toil.job import Job

    from shared.toil.batch_system import ShoalBatchSystem

    learned: dict[str, float] = {}
    original = ShoalBatchSystem.getUpdatedBatchJob

    def recording(self: ShoalBatchSystem, maxWait: int) -> object:  # noqa: N803 - Toil's name
        update = original(self, maxWait)
        if update is not None and update.backing_id:
            learned[str(update.backing_id)] = time.time()
        return update

    ShoalBatchSystem.getUpdatedBatchJob = recording  # type: ignore[method-assign]
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--chunks", type=int, required=True)
    options = parser.parse_args(argv[1:])
    started = time.time()
    with Toil(options) as workflow:
        total = workflow.start(Job.wrapJobFn(primes.fan_out, options.limit, options.chunks, **primes.JOB_RESOURCES))
    wall = time.time() - started
    log_path.write_text(json.dumps({"wall_seconds": wall, "total": total, "learned": learned}), encoding="utf-8")
    return 0


def single_machine(work: Path, chunks: int, limit: int) -> float:
    """The same leader code (this script's ``--leader``) on Toil's own batch system: its wall time."""
    learned_path = work / "leader.json"
    subprocess.run(
        [sys.executable, __file__, "--leader", str(learned_path), f"file:{work / 'store'}",
         "--batchSystem", "single_machine", "--chunks", str(chunks), "--limit", str(limit), "--logLevel", "WARNING"],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    wall: float = json.loads(learned_path.read_text(encoding="utf-8"))["wall_seconds"]
    return wall


def on_shoal(work: Path, chunks: int, limit: int) -> dict[str, float]:
    learned_path = work / "leader.json"
    command = [sys.executable, "-m", "shared.cli.main", "local", "run", "--quiet", "--out", str(work / "run"),
               "--", sys.executable, __file__, "--leader", str(learned_path), f"file:{work / 'store'}",
               "--batchSystem", "shoal", "--chunks", str(chunks), "--limit", str(limit),
               "--logLevel", "WARNING"]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"shoal local run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    leader_side = json.loads(learned_path.read_text(encoding="utf-8"))
    report = json.loads((work / "run" / "report.json").read_text(encoding="utf-8"))
    times = report["job_times"]
    to_start = [t["started"] - t["submitted"] for t in times.values() if t["started"] is not None]
    to_leader = [
        leader_side["learned"][job_id] - t["finished"]
        for job_id, t in times.items()
        if t["finished"] is not None and job_id in leader_side["learned"]
    ]
    return {
        "wall_seconds": leader_side["wall_seconds"],
        "jobs": report["jobs_completed"],
        "max_nodes": report["max_nodes"],
        "submit_to_start_seconds": statistics.median(to_start),
        "finish_to_leader_seconds": statistics.median(to_leader),
    }


def main() -> int:
    if sys.argv[1:2] == ["--leader"]:
        return leader(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--limit", type=int, default=30_000)
    args = parser.parse_args()
    singles, shoals = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-toil-") as tmp:
            singles.append(single_machine(Path(tmp), args.chunks, args.limit))
        with tempfile.TemporaryDirectory(prefix="bench-toil-") as tmp:
            shoals.append(on_shoal(Path(tmp), args.chunks, args.limit))
        print(f"repeat {repeat + 1}: single_machine {singles[-1]:.1f}s, shoal {shoals[-1]}", flush=True)
    single = statistics.median(singles)
    shoal = {key: statistics.median(float(s[key]) for s in shoals) for key in shoals[0]}
    print(f"workflow: {args.chunks + 2} jobs (primes.py --chunks {args.chunks} --limit {args.limit}); "
          f"medians of {args.repeats}")  # fmt: skip
    print(f"  single_machine      wall {single:7.1f} s")
    print(f"  shoal local run     wall {shoal['wall_seconds']:7.1f} s  ({shoal['wall_seconds'] / single:.2f}x), "
          f"max {shoal['max_nodes']:.0f} nodes")  # fmt: skip
    print(f"  per job on shoal:   submit to start {shoal['submit_to_start_seconds']:.2f} s, "
          f"finish to leader {shoal['finish_to_leader_seconds']:.2f} s (medians)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
