"""A small Toil workflow: count the primes below LIMIT in CHUNKS parallel jobs, then add the counts up.

Runs on any Toil batch system; on a Shoal cluster on this machine (the fleet grows from zero nodes and back):

    shoal local run -- python examples/toil/primes.py file:/tmp/primes-store --batchSystem shoal --out primes.txt

``--out`` gets one line, ``primes below LIMIT: COUNT`` (there are 17984 below 200000). Each chunk is one Toil
job asking for 1 core and 256 MiB, so the scaler packs two on an m5.large.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from toil.common import Toil
from toil.job import Job, Promise

JOB_RESOURCES = {"cores": 1, "memory": "256M", "disk": "64M"}


def count_primes(job: Job, low: int, high: int) -> int:
    """Primes in [low, high), by trial division (slow on purpose: each chunk is a second or so of work)."""
    count = 0
    for n in range(max(low, 2), high):
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            count += 1
    job.log(f"{count} primes in [{low}, {high})")
    return count


def add_up(job: Job, counts: list[int]) -> int:
    return sum(counts)


def fan_out(job: Job, limit: int, chunks: int) -> Promise:
    bounds = [limit * i // chunks for i in range(chunks + 1)]
    counts = [job.addChildJobFn(count_primes, lo, hi, **JOB_RESOURCES).rv() for lo, hi in itertools.pairwise(bounds)]
    return job.addFollowOnJobFn(add_up, counts, **JOB_RESOURCES).rv()


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--limit", type=int, default=200_000, help="count the primes below this")
    parser.add_argument("--chunks", type=int, default=8, help="in this many parallel jobs")
    parser.add_argument("--out", type=Path, default=Path("primes.txt"), help="where the answer goes")
    options = parser.parse_args()
    with Toil(options) as workflow:
        if options.restart:
            total = workflow.restart()
        else:
            total = workflow.start(Job.wrapJobFn(fan_out, options.limit, options.chunks, **JOB_RESOURCES))
    options.out.write_text(f"primes below {options.limit}: {total}\n", encoding="utf-8")
    print(f"primes below {options.limit}: {total}")


if __name__ == "__main__":
    main()
