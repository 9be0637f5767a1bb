"""Seeded queues for the plan benchmark: continuous shapes (nearly every job its own shape), few shapes,
and the job shapes of the real traces in ``../shared/traces/`` (their ``submit`` field dropped).

Continuous queues follow issue #10's "mixed" recipe: 60 % 1-core jobs with 0.25–3 GiB; 25 % 2/4/8 cores
with 2–24 GiB; 10 % 2/4/8 cores with 24–56 GiB; 5 % 16/32/48/64 cores with 60–300 GiB; disk uniform
1–30 GiB; wall times from {1m, 5m, 10m, 20m, 30m, 1h, 2h}; half preemptible; memory and disk drawn
continuously. Variants: ``gpu`` (10 % of jobs want one accelerator), ``on-demand`` (nothing
preemptible), ``too-big`` (2 % of jobs fit no offered node).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.workload import mixed_jobs

GiB = 2**30
WALLS = (60, 300, 600, 1200, 1800, 3600, 7200)
CONTINUOUS_NODE_TYPES = "c5.large,c5.4xlarge/c5a.4xlarge:0.30,r5.2xlarge,m5.24xlarge"
GPU_NODE_TYPES = CONTINUOUS_NODE_TYPES + ",g4dn.xlarge,g4dn.4xlarge"
FEW_SHAPE_NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,c5.4xlarge,m5.2xlarge,m5.8xlarge,r5.2xlarge,r5.4xlarge"


# Where the team's machines keep the shared folder, for a clone that is not beside it (CI clones elsewhere).
TEAM_TRACES = Path("/work/shared/traces")


def _traces_dir() -> Path:
    """``../shared/traces`` beside the repository (a git worktree sits one level deeper: look up from here), else
    the team's machines' shared folder."""
    here = [parent / "shared" / "traces" for parent in Path(__file__).resolve().parents[1:4]]
    for candidate in [*here, TEAM_TRACES]:
        if candidate.is_dir() and any(candidate.glob("*.jsonl")):
            return candidate
    return here[1]


TRACES = Path(os.environ.get("SHOAL_TRACES", "")) if os.environ.get("SHOAL_TRACES") else _traces_dir()


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    name: str
    node_types: str
    jobs: Callable[[int], list[dict[str, object]]]  # size → job objects in the `shoal plan` format
    sized: bool = True  # False: a fixed queue (a trace); the size is ignored


def _continuous(
    count: int, *, seed: int = 10, gpu: float = 0.0, preemptible: float = 0.5, too_big: float = 0.0
) -> list[dict[str, object]]:
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        draw = rng.random()
        accelerators = 0
        if draw < too_big:
            cores, memory = rng.choice([(128, rng.uniform(8, 64)), (8, rng.uniform(400, 600))])
        elif draw < too_big + gpu:
            cores, memory, accelerators = rng.choice([2, 4]), rng.uniform(4, 14), 1
        else:
            kind = rng.random()
            if kind < 0.60:
                cores, memory = 1, rng.uniform(0.25, 3)
            elif kind < 0.85:
                cores, memory = rng.choice([2, 4, 8]), rng.uniform(2, 24)
            elif kind < 0.95:
                cores, memory = rng.choice([2, 4, 8]), rng.uniform(24, 56)
            else:
                cores, memory = rng.choice([16, 32, 48, 64]), rng.uniform(60, 300)
        jobs.append(
            {
                "id": f"job-{index:06d}",
                "cores": cores,
                "memory": int(memory * GiB),
                "disk": int(rng.uniform(1, 30) * GiB),
                "accelerators": accelerators,
                "preemptible": rng.random() < preemptible,
                "wall_time": rng.choice(WALLS),
            }
        )
    return jobs


def trace_jobs(path: Path) -> list[dict[str, object]]:
    """A trace as one queue: every job at once, its ``submit`` time ignored."""
    jobs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            job = json.loads(line)
            job.pop("submit", None)
            jobs.append(job)
    return jobs


CONTINUOUS = (
    Queue(name="mixed", node_types=CONTINUOUS_NODE_TYPES, jobs=_continuous),
    Queue(name="gpu", node_types=GPU_NODE_TYPES, jobs=lambda n: _continuous(n, gpu=0.1)),
    Queue(name="on-demand", node_types=CONTINUOUS_NODE_TYPES, jobs=lambda n: _continuous(n, preemptible=0.0)),
    Queue(name="too-big", node_types=CONTINUOUS_NODE_TYPES, jobs=lambda n: _continuous(n, too_big=0.02)),
)
FEW_SHAPES = (
    Queue(name="few-shapes", node_types=FEW_SHAPE_NODE_TYPES, jobs=lambda n: mixed_jobs(n, include_gpu=False)),
)


def trace_queues() -> tuple[Queue, ...]:
    return tuple(
        Queue(
            name=f"trace:{path.stem}",
            node_types=CONTINUOUS_NODE_TYPES,
            jobs=lambda _, path=path: trace_jobs(path),  # type: ignore[misc]
            sized=False,
        )
        for path in sorted(TRACES.glob("*.jsonl"))
    )


ALL = {q.name: q for q in (*CONTINUOUS, *FEW_SHAPES)}
