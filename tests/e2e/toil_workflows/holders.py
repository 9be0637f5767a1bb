"""A Toil workflow for the kill and restart test: HOLDERS jobs that each wait for a release file.

Each job writes ``started-{i}-{pid}`` in ``--markers`` as it starts, waits until ``release`` exists there,
then writes ``done-{i}-{pid}`` and returns ``i``; a follow-on adds them up into ``--out``. Run as
``python holders.py JOBSTORE --batchSystem shoal --markers DIR --out FILE [--restart]``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from toil.common import Toil
from toil.job import Job, Promise

RESOURCES = {"cores": 1, "memory": "128M", "disk": "16M"}
HOLD_LIMIT = 600.0  # seconds a job waits for its release before giving up (failing)


def hold(job: Job, index: int, markers: str) -> int:
    folder = Path(markers)
    (folder / f"started-{index}-{os.getpid()}").touch()
    deadline = time.monotonic() + HOLD_LIMIT
    while not (folder / "release").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("never released")
        time.sleep(0.2)
    (folder / f"done-{index}-{os.getpid()}").touch()
    return index


def add_up(job: Job, values: list[int]) -> int:
    return sum(values)


def fan_out(job: Job, holders: int, markers: str) -> Promise:
    values = [job.addChildJobFn(hold, i, markers, **RESOURCES).rv() for i in range(1, holders + 1)]
    return job.addFollowOnJobFn(add_up, values, **RESOURCES).rv()


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--holders", type=int, default=3)
    parser.add_argument("--markers", required=True)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    with Toil(options) as workflow:
        if options.restart:
            total = workflow.restart()
        else:
            total = workflow.start(Job.wrapJobFn(fan_out, options.holders, options.markers, **RESOURCES))
    options.out.write_text(f"{total}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
