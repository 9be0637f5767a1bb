"""Seeded mixed workloads shaped like a genomics pipeline: many small jobs, some big ones, a few GPU jobs."""

from __future__ import annotations

import random

GiB = 2**30

# (weight, cores, memory GiB, disk GiB, accelerators, wall time s, preemptible)
SHAPES = [
    (40, 1, 2, 4, 0, 120, True),  # alignment chunks
    (20, 2, 4, 10, 0, 600, True),
    (12, 4, 16, 20, 0, 900, True),  # variant calling
    (8, 8, 30, 50, 0, 1800, False),  # joint genotyping: must not be interrupted
    (6, 16, 60, 100, 0, 3600, False),
    (6, 4, 8, 10, 0, 300, False),
    (4, 2, 28, 8, 0, 1200, True),  # memory-heavy
    (3, 4, 12, 30, 1, 900, True),  # GPU basecalling
    (1, 0.5, 1, 1, 0, 30, True),
]


def mixed_jobs(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    weights = [s[0] for s in SHAPES]
    jobs = []
    for index in range(count):
        _, cores, memory, disk, acc, wall, preemptible = rng.choices(SHAPES, weights)[0]
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
