"""Seeded mixed workloads shaped like a genomics pipeline: many small jobs, some big ones, a few GPU jobs."""

from __future__ import annotations

import random

GiB = 2**30

# (weight, cores, memory GiB, disk GiB, accelerators, wall time s, preemptible)
SHAPES = [
    (40, 1, 2, 4, 0, 120, True),  # alignment chunks
    (20, 2, 4, 10, 0, 600, True),
    (12, 4, 16, 20, 0, 900, True),  # variant calling
    (8, 8, 30, 32, 0, 1800, False),  # joint genotyping: must not be interrupted
    (6, 16, 60, 40, 0, 3600, False),
    (6, 4, 8, 10, 0, 300, False),
    (4, 2, 28, 8, 0, 1200, True),  # memory-heavy
    (3, 4, 12, 30, 1, 900, True),  # GPU basecalling
    (1, 0.5, 1, 1, 0, 30, True),
]


def mixed_jobs(count: int, seed: int = 7, *, include_gpu: bool = True) -> list[dict[str, object]]:
    rng = random.Random(seed)
    shapes = [s for s in SHAPES if include_gpu or not s[4]]
    weights = [s[0] for s in shapes]
    jobs = []
    for index in range(count):
        _, cores, memory, disk, acc, wall, preemptible = rng.choices(shapes, weights)[0]
        jobs.append(
            {
                "id": f"job-{index:06d}",
                "cores": cores,
                "memory": f"{memory}GiB",
                "disk": f"{disk}GiB",
                "accelerators": acc,
                "preemptible": preemptible,
                "wall_time": wall,
            }
        )
    return jobs
