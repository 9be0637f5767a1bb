"""Run Toil's own ClusterScaler.getEstimatedNodeCounts on a workload; executed by Toil's Python.

This file imports nothing from Shoal: it runs in a side environment where ``pip install toil`` was
done. stdin: {"target_time", "node_types": [{"key", "cores", "memory", "disk", "preemptible"}],
"jobs": [[cores, memory, disk, wall_time, preemptible, count], ...]}. stdout: node counts per key,
seconds (wall and CPU) spent in getEstimatedNodeCounts, and how many shapes Toil could not fit.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from types import SimpleNamespace

from toil.provisioners.abstractProvisioner import Shape
from toil.provisioners.clusterScaler import ClusterScaler

NODE_WALL_TIME = 3600  # what Toil's AWS provisioner gives a node shape


class _Provisioner:
    def __init__(self, shapes: dict[Shape, str]) -> None:
        self._shapes = shapes

    def getAutoscaledInstanceShapes(self) -> dict[Shape, str]:  # noqa: N802 - Toil's name
        return self._shapes


def main() -> None:
    logging.disable(logging.CRITICAL)
    spec = json.load(sys.stdin)
    node_shapes = {
        Shape(NODE_WALL_TIME, n["memory"], n["cores"], n["disk"], n["preemptible"]): n["key"]
        for n in spec["node_types"]
    }
    config = SimpleNamespace(
        targetTime=spec["target_time"],
        betaInertia=0.0,  # no smoothing: compare packing with packing
        minNodes=[0] * len(node_shapes),
        maxNodes=[10**9] * len(node_shapes),
        preemptibleCompensation=0.0,
        assume_zero_overhead=True,  # both sides are given the same usable capacities
    )
    leader = SimpleNamespace(
        batchSystem=None, provisioner=None, toilState=SimpleNamespace(bus=SimpleNamespace(publish=lambda message: None))
    )
    scaler = ClusterScaler(_Provisioner(node_shapes), leader, config)  # type: ignore[arg-type]
    jobs = [
        Shape(wall, memory, cores, disk, preemptible)
        for cores, memory, disk, wall, preemptible, count in spec["jobs"]
        for _ in range(count)
    ]
    current = dict.fromkeys(node_shapes, 0)
    started, cpu = time.perf_counter(), time.process_time()
    counts, could_not_fit = scaler.getEstimatedNodeCounts(jobs, current)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    json.dump(
        {
            "counts": {node_shapes[s]: n for s, n in counts.items()},
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "could_not_fit": len(could_not_fit),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
