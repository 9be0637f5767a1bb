"""Shoal's policy and Toil 9.6's on the same simulated runs: cost and waits per trace, beside the lower bound.

    python benchmarks/bench_simulate.py [--traces DIR] [--only NAME] [--seed N | --seeds N,N,..]
                                        [--toil-targets SECONDS,..] [--toil-any-node] [--node-storage GIB]
                                        [--max-node-storage GIB]
                                        [--jobs N] [--json OUT]

``--jobs N`` runs N simulations side by side in processes (the RICC week's Toil run takes 4-8 minutes alone): the
reports are the same, in the same order; only each row's seconds (``sec``) grow with the load.

With ``--seeds``, each trace runs once per seed (the seed moves spot interruptions' and agents' draws, so one
seed's cost can sit 1-2 % from another's) and a ``median`` row per policy follows, with the per-seed ratio of
Shoal's cost to Toil's and how many seeds each policy was cheaper in: a policy change is judged on those, not on
one seed's figures.

With ``--toil-targets``, Toil also runs at each of those ``targetTime`` values (its own knob: how long it plans
for a queued job to wait), and two lines name the cheapest of them whose median waits (p95; p50 and p95) are
no longer than Shoal's: what Toil's policy costs when it waits no longer than Shoal does. At its default (the
same 30-minute target as Shoal's) Toil's p95 misses the target on the nf-core traces; this is the comparison at
equal waits.

``--node-storage GIB``: each node's EBS root volume, which is the jobs' disk on these node types (none has an
instance store). The default is Toil's ``--nodeStorage``, 50 GiB: there a node fits at most four of the traces' 10 GiB
jobs whatever its cores (the report's ``lower_bound_by`` says which resource bounds each trace). Both costs count
each node's root volume at gp3's price beside its instance's (``catalog.root_volume_price``; the lower bound's prices
too), so a larger volume is paid for.

Both run inside ``shared.sim`` (same trace, node types, boot delay, scale interval, agents admitting jobs
by ``shared.domain.admission``, EC2 model, cost accounting and report). Only the scaler differs, unless
``--toil-any-node`` (see Placement below).

What of Toil's loop is modelled (``toil.provisioners.clusterScaler``, imported from the installed Toil 9.6):

- ``ScalerThread.tryRun``'s round, once every ``scaleInterval`` and on nothing else: the shapes of all
  issued jobs (queued and running, as ``Leader.getJobs`` gives them) with ``getAverageRuntime`` as wall
  time (fed by ``addCompletedJob`` on every job end), ``getEstimatedNodeCounts`` (Toil's own
  ``binPacking`` with ``BinPackedFit``, its ``betaInertia`` smoothing in both directions, min/max) and
  ``updateClusterSize`` → ``setNodeCount`` → ``_addNodes`` / ``_removeNodes`` / ``_terminateIgnoredNodes``:
  Toil's own scale-in choice (fewest workers, least billing time left), ignoring (draining) nodes that
  still run jobs and terminating them once idle. A round whose ``binPacking`` fails its own assertion on float sums
  of wall times is packed again in whole seconds (``ToilSimulation._estimate``; the report's
  ``toil_rounds_in_whole_seconds`` counts them): real Toil would stop there.
- The provisioner and batch system Toil talks to are thin adapters onto the simulated fleet: nodes are
  reported to ``getNodes`` once their agent is up, ``ignoreNode`` stops a node taking jobs, a node's
  billing interval runs on the simulated clock.

Placement: by default Toil's nodes follow Shoal's agents' rule too (a young job is left to cheaper node types,
``shared.domain.cheaper_first``), so only the scaler differs. Toil's own batch systems (Mesos, Kubernetes,
Slurm without node weights) start a job on whichever node with room takes it: ``--toil-any-node`` places Toil's
jobs so (any node with room, in a random order per run), which compares the two as deployed.

Not modelled: Toil's leader, job store and batch-system scheduling beyond placement, Toil's own node overhead
estimate (both policies get the same usable node capacity: ``assume_zero_overhead``), equivalence classes
(Toil launches the class's first type, as Shoal does when nothing fails), the static-node and JobTooBig paths,
and preemptible compensation (0 for both).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.queues import TRACES
from shared.domain.catalog import DEFAULT_MAX_NODE_STORAGE, DEFAULT_NODE_STORAGE, parse_node_storage
from shared.domain.cluster_state import NodeState
from shared.domain.settings import ClusterSettings
from shared.domain.units import UnitError
from shared.sim.engine import SimOptions, Simulation
from shared.sim.trace import read_trace

NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.30,m5.2xlarge,r5.4xlarge,m5.24xlarge"
NODE_WALL_TIME = 3600  # what Toil's AWS provisioner gives a node shape
EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _toil() -> Any:
    from toil.batchSystems.abstractBatchSystem import AbstractScalableBatchSystem, NodeInfo
    from toil.provisioners.abstractProvisioner import Shape
    from toil.provisioners.clusterScaler import ClusterScaler
    from toil.provisioners.node import Node

    return SimpleNamespace(
        ClusterScaler=ClusterScaler,
        Scalable=AbstractScalableBatchSystem,
        NodeInfo=NodeInfo,
        Shape=Shape,
        Node=Node,
    )


def whole_seconds(toil: Any, shape: Any) -> Any:
    """``shape`` with its wall time rounded to the second (see ``ToilSimulation._estimate``)."""
    return toil.Shape(round(shape.wallTime), shape.memory, shape.cores, shape.disk, shape.preemptible)


class ToilSimulation(Simulation):
    """The simulator with Toil's ClusterScaler in place of Shoal's round."""

    def __init__(self, trace: Sequence[Any], options: SimOptions) -> None:
        super().__init__(trace, options)
        toil = _toil()
        self.toil = toil
        self.rounds_in_whole_seconds = 0
        sim = self

        class SimNode(toil.Node):  # type: ignore[misc, name-defined]
            def remainingBillingInterval(self) -> float:  # noqa: N802 - Toil's name
                node = sim.nodes.get(self.privateIP)
                launched = node.launched_at if node is not None else sim.now
                return 1 - (sim.now - launched) / 3600.0 % 1.0

        self._node_class = SimNode
        self._toil_nodes: dict[str, Any] = {}
        self.shape_of: dict[Any, str] = {}  # Toil node shape -> offer key
        shapes: dict[Any, str] = {}
        for offer in self.offers:
            u = offer.usable
            shape = toil.Shape(NODE_WALL_TIME, u.memory, u.cores, u.disk, offer.spot)
            shapes[shape] = offer.instance_types[0]
            self.shape_of[shape] = offer.key
        self.type_offer = {(o.instance_types[0], o.spot): o for o in self.offers}

        class Provisioner:
            retryPredicate = staticmethod(lambda error: False)  # noqa: N815 - Toil's name

            def getAutoscaledInstanceShapes(self) -> dict[Any, str]:  # noqa: N802
                return shapes

            def getProvisionedWorkers(  # noqa: N802
                self, instance_type: str | None = None, preemptible: bool | None = None
            ) -> list[Any]:
                return sim._workers(instance_type, preemptible)

            def addNodes(self, nodeTypes: set[str], numNodes: int, preemptible: bool) -> int:  # noqa: N802, N803
                (name,) = nodeTypes
                return len(sim.create_nodes(sim.type_offer[(name, preemptible)], name, numNodes))

            def terminateNodes(self, nodes: list[Any]) -> None:  # noqa: N802
                for node in nodes:
                    if node.privateIP in sim.nodes:
                        sim.killed_by_scale_in += sim.remove_node(node.privateIP)

        class BatchSystem:
            def getNodes(self, preemptible: bool | None = None, timeout: int = 600) -> dict[str, Any]:  # noqa: N802
                return {
                    node_id: toil.NodeInfo(
                        coresUsed=0.0,
                        memoryUsed=0.0,
                        coresTotal=node.capacity.cores,
                        memoryTotal=node.capacity.memory,
                        requestedCores=0.0,
                        requestedMemory=0,
                        workers=len(node.running),
                    )
                    for node_id, node in sim.nodes.items()
                    if sim.now >= node.ready_at and (preemptible is None or (node.market == "spot") == preemptible)
                }

            def nodeInUse(self, nodeIP: str) -> bool:  # noqa: N802, N803
                node = sim.nodes.get(nodeIP)
                return node is not None and bool(node.running)

            def ignoreNode(self, nodeAddress: str) -> None:  # noqa: N802, N803
                node = sim.nodes.get(nodeAddress)
                if node is not None and node.state in (NodeState.PENDING, NodeState.ACTIVE):
                    node.state = NodeState.DRAINING

            def unignoreNode(self, nodeAddress: str) -> None:  # noqa: N802, N803
                node = sim.nodes.get(nodeAddress)
                if node is not None and node.state is NodeState.DRAINING:
                    node.state = NodeState.ACTIVE if sim.now >= node.ready_at else NodeState.PENDING

        toil.Scalable.register(BatchSystem)
        self.leader = SimpleNamespace(
            batchSystem=BatchSystem(),
            provisioner=Provisioner(),
            toilState=SimpleNamespace(bus=SimpleNamespace(publish=lambda message: None)),
        )
        n = len(self.offers)
        config = SimpleNamespace(
            targetTime=self.settings.target_time,
            betaInertia=self.settings.beta_inertia,
            minNodes=[o.min_nodes for o in self.offers] or [0] * n,
            maxNodes=[min(o.max_nodes, 10**9) for o in self.offers],
            preemptibleCompensation=self.settings.preemptible_compensation,
            assume_zero_overhead=True,
        )
        self.scaler = toil.ClusterScaler(self.leader.provisioner, self.leader, config)

    def _workers(self, instance_type: str | None, preemptible: bool | None) -> list[Any]:
        out = []
        for node_id, node in self.nodes.items():
            if node.state is NodeState.STOPPED or node.state is NodeState.INTERRUPTED:
                continue
            spot = node.market == "spot"
            if (instance_type is not None and node.instance_type != instance_type) or (
                preemptible is not None and spot != preemptible
            ):
                continue
            toil_node = self._toil_nodes.get(node_id)
            if toil_node is None:
                launched = EPOCH + datetime.timedelta(seconds=node.launched_at)
                toil_node = self._node_class(node_id, node_id, node_id, launched, node.instance_type, spot)
                self._toil_nodes[node_id] = toil_node
            out.append(toil_node)
        return out

    def job_finished(self, name: str | None, seconds: float) -> None:
        super().job_finished(name, seconds)
        self.scaler.addCompletedJob(SimpleNamespace(jobName=name), seconds)

    def _estimate(self, job_shapes: list[Any], current: dict[Any, int]) -> dict[Any, int]:
        """Toil's ``getEstimatedNodeCounts``. Toil 9.6's ``binPacking`` asserts ``jobShape.wallTime - timeSlice <=
        startingReservation.shape.wallTime`` (``attemptToAddJob``) when float sums of wall times differ in the last
        bit, which stops a run (nf-chipseq at 200 GiB, seed 0). Such a round is packed again with the wall times in
        whole seconds, which sum exactly (nothing is changed before the packing fails); every other round is Toil's
        as it is. The report counts them (``toil_rounds_in_whole_seconds``)."""
        try:
            estimates, _ = self.scaler.getEstimatedNodeCounts(job_shapes, current)
        except AssertionError:
            self.rounds_in_whole_seconds += 1
            whole = [whole_seconds(self.toil, shape) for shape in job_shapes]
            estimates, _ = self.scaler.getEstimatedNodeCounts(whole, current)
        return dict(estimates)

    def _round(self, trigger: str) -> None:
        if trigger != "schedule":
            return  # Toil's scaler thread only wakes on its interval
        self.rounds += 1
        self.decide_calls += 1
        toil, scaler = self.toil, self.scaler
        job_shapes = []
        for (requested, name), (queued, running) in self.counters.items():
            if queued + running > 0:  # Leader.getJobs: every issued job, queued or running
                resources, spot = requested.resources, requested.preemptible
                shape = toil.Shape(scaler.getAverageRuntime(jobName=name), resources.memory, resources.cores,
                                   resources.disk, spot)  # fmt: skip
                job_shapes.extend([shape] * (queued + running))
        current = {
            shape: len(self._workers(type_name, shape.preemptible))
            for shape, type_name in scaler.nodeShapeToType.items()
        }
        estimates = self._estimate(job_shapes, current)
        scaler.updateClusterSize(estimates)
        self._dispatch()  # un-ignored nodes take work once the round is over


def run_one(
    path: Path, settings: ClusterSettings, *, seed: int, toil: bool, cheaper_first: bool = True
) -> dict[str, object]:
    """One run. ``cheaper_first``: the nodes leave young jobs to cheaper node types, as Shoal's agents do (off: a
    job starts on any node with room, as Toil's batch systems place jobs)."""
    trace = read_trace(path)
    options = SimOptions(settings=settings, boot_delay=90.0, seed=seed, cheaper_first=cheaper_first)
    simulation = ToilSimulation(trace, options) if toil else Simulation(trace, options)
    report = simulation.run().report
    if isinstance(simulation, ToilSimulation):
        report["toil_rounds_in_whole_seconds"] = simulation.rounds_in_whole_seconds
    return report


Task = tuple[Path, ClusterSettings, int, bool, bool]  # path, settings, seed, toil, cheaper_first


def _run_task(task: Task) -> tuple[dict[str, object], float]:
    path, settings, seed, toil, cheaper_first = task
    started = time.perf_counter()
    report = run_one(path, settings, seed=seed, toil=toil, cheaper_first=cheaper_first)
    return report, time.perf_counter() - started


def run_all(tasks: Sequence[Task], pool: Executor | None) -> Iterator[tuple[dict[str, object], float]]:
    """Each task's report and its seconds, in the tasks' order; with a pool, the runs go side by side (each run is
    deterministic, so only the seconds change)."""
    if pool is None:
        yield from map(_run_task, tasks)
        return
    yield from (future.result() for future in [pool.submit(_run_task, task) for task in tasks])


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


MEDIAN_KEYS = ("cost", "cost_over_lower_bound", "wait_p50_seconds", "wait_p95_seconds", "wait_max_seconds",
               "idle_node_hours", "peak_nodes", "lost", "killed_by_scale_in")  # fmt: skip


def over_seeds(shoal: Sequence[dict[str, Any]], toil: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per policy, the median of each figure over seeds; for Shoal also the median of its cost over Toil's on the
    same seed, and in how many seeds it cost less (the runs of one seed share their trace and their draws)."""
    if len(shoal) != len(toil) or not shoal:
        raise ValueError(f"one report per seed for each policy: got {len(shoal)} Shoal and {len(toil)} Toil")
    out = {name: {k: median([float(r[k]) for r in runs]) for k in MEDIAN_KEYS}
           for name, runs in (("shoal", shoal), ("toil", toil))}  # fmt: skip
    ratios = [float(s["cost"]) / float(t["cost"]) for s, t in zip(shoal, toil, strict=True)]
    out["shoal"]["cost_over_toil"] = median(ratios)
    out["shoal"]["cheaper_seeds"] = float(sum(ratio < 1.0 for ratio in ratios))
    out["shoal"]["p95_within_toil_seeds"] = float(
        sum(float(s["wait_p95_seconds"]) <= float(t["wait_p95_seconds"]) for s, t in zip(shoal, toil, strict=True))
    )
    return out


def _row(trace: str, policy: str, r: dict[str, Any], seconds: float | None) -> str:
    return (
        f"{trace:<22}{policy:<10}{r['cost']:>10.2f}{r['cost_over_lower_bound']:>9.3f}"
        f"{r['wait_p50_seconds']:>8.0f}{r['wait_p95_seconds']:>8.0f}{r['wait_max_seconds']:>8.0f}"
        f"{r['idle_node_hours']:>9.1f}{r['peak_nodes']:>6.0f}{r['lost']:>5.0f}{r['killed_by_scale_in']:>5.0f}"
        + (f"{seconds:>7.1f}" if seconds is not None else "")
    )


WAITS = {"p95": ("wait_p95_seconds",), "p50 and p95": ("wait_p50_seconds", "wait_p95_seconds")}


def waits_no_worse(
    shoal: Mapping[str, float], ladder: Mapping[float, Mapping[str, float]], waits: Sequence[str] = WAITS["p50 and p95"]
) -> tuple[float, Mapping[str, float]] | None:
    """The cheapest of Toil's runs (median figures per ``targetTime``) whose median ``waits`` are each no longer
    than Shoal's, as (targetTime, its medians); None if every run of the ladder waits longer somewhere."""
    matched = [(target, figures) for target, figures in ladder.items() if all(figures[k] <= shoal[k] for k in waits)]
    return min(matched, key=lambda item: (item[1]["cost"], -item[0]), default=None)


def parse_targets(text: str) -> list[float]:
    try:
        targets = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        targets = []
    if not targets or any(not 0 < t < 86400 for t in targets):
        raise argparse.ArgumentTypeError(f"{text!r}: give Toil targetTime values in seconds, e.g. 1500,1200,900")
    return targets


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give how many runs go side by side, a whole number from 1, e.g. 2")
    return int(text)


def node_storage(text: str) -> int:
    """``--node-storage``: GiB (a bare number) or a size with a unit, at least 10 GiB."""
    try:
        return parse_node_storage(text)
    except UnitError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one seed, e.g. 0,1,2")
    return seeds


def _compare(
    path: Path,
    settings: ClusterSettings,
    runs: list[int],
    *,
    seeded: bool,
    toil_targets: Sequence[float],
    toil_any_node: bool = False,
    pool: Executor | None = None,
) -> dict[str, object]:
    """Both policies on one trace, seed by seed; with ``toil_targets``, Toil at each of them too.
    ``toil_any_node``: Toil's nodes start a job wherever there is room (Shoal's leave it to cheaper types)."""
    reports: dict[str, list[dict[str, Any]]] = {"shoal": [], "toil": []}
    order = [(seed, policy) for seed in runs for policy in ("shoal", "toil")]
    tasks = [(path, settings, seed, p == "toil", not (p == "toil" and toil_any_node)) for seed, p in order]
    for (seed, policy), (r, seconds) in zip(order, run_all(tasks, pool), strict=True):
        reports[policy].append(r)
        print(_row(path.name, policy, r, seconds) + (f"  {seed:>4}" if seeded else ""), flush=True)
    print(f"{path.name:<22}{'bound':<10}{reports['shoal'][0]['lower_bound_cost']:>10.2f}", flush=True)
    summary = over_seeds(reports["shoal"], reports["toil"])
    if seeded:
        for policy in ("shoal", "toil"):
            print(_row(path.name, "median", summary[policy], None) + f"  {policy}", flush=True)
        mine = summary["shoal"]
        print(
            f"{path.name:<22}Shoal's cost over Toil's, median of {len(runs)} seeds: {mine['cost_over_toil']:.4f}; "
            f"cheaper in {mine['cheaper_seeds']:.0f}, p95 no longer than Toil's in {mine['p95_within_toil_seeds']:.0f}",
            flush=True,
        )
    row: dict[str, object] = {"seeds": runs, **reports, "median": summary} if seeded else {
        "shoal": reports["shoal"][0], "toil": reports["toil"][0]}  # fmt: skip
    if toil_targets:
        row["toil_targets"] = _toil_ladder(
            path, settings, runs, shoal=reports["shoal"], summary=summary, targets=toil_targets,
            cheaper_first=not toil_any_node, pool=pool,
        )  # fmt: skip
    return row


def _toil_ladder(
    path: Path,
    settings: ClusterSettings,
    runs: list[int],
    *,
    shoal: list[dict[str, Any]],
    summary: dict[str, dict[str, float]],
    targets: Sequence[float],
    cheaper_first: bool = True,
    pool: Executor | None = None,
) -> dict[str, object]:
    """Toil at each ``targetTime`` of ``targets``, and the cheapest of them (or its default) waiting no longer."""
    ladder: dict[float, Mapping[str, float]] = {settings.target_time: summary["toil"]}
    reports: dict[str, object] = {}
    order = [(target, seed) for target in targets for seed in runs]
    tasks = [(path, replace(settings, target_time=t).validate(), seed, True, cheaper_first) for t, seed in order]
    done = run_all(tasks, pool)
    for target in targets:
        runs_at = []
        for seed in runs:
            r, seconds = next(done)
            runs_at.append(r)
            print(_row(path.name, f"toil@{target:g}", r, seconds) + f"  {seed:>4}", flush=True)
        at = over_seeds(shoal, runs_at)
        ladder[target] = {**at["toil"], "shoal_cost_over": at["shoal"]["cost_over_toil"]}
        reports[f"{target:g}"] = runs_at
    matched: dict[str, object] = {}
    for label, waits in WAITS.items():
        match = waits_no_worse(summary["shoal"], ladder, waits)
        if match is None:
            print(f"{path.name:<22}every Toil targetTime tried waits longer than Shoal ({label}, median)", flush=True)
            matched[label] = None
            continue
        target, figures = match
        ratio = figures.get("shoal_cost_over", summary["shoal"]["cost_over_toil"])
        print(
            f"{path.name:<22}Toil waiting no longer than Shoal ({label}, median): targetTime {target:g} s, "
            f"${figures['cost']:.2f}; Shoal's cost over it, median of seeds: {ratio:.4f}",
            flush=True,
        )
        matched[label] = {"target_time": target, **figures, "shoal_cost_over": ratio}
    return {"reports": reports, "matched": matched}


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The rounds' logs are not a benchmark's output; a caller in the same process (a test) gets its logging back."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    with quiet_logs():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--only", help="only traces whose file name contains this")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0)
    seeds.add_argument("--seeds", type=parse_seeds, help="several seeds, comma-separated: adds a median row per policy")
    parser.add_argument("--toil-targets", type=parse_targets, default=[], help="Toil's targetTime values to try too")
    parser.add_argument("--toil-any-node", action="store_true", help="Toil's nodes start a job wherever there is room")
    parser.add_argument("--node-storage", type=node_storage, default=DEFAULT_NODE_STORAGE, help="GiB of root volume")
    parser.add_argument(
        "--max-node-storage", type=node_storage, default=DEFAULT_MAX_NODE_STORAGE,
        help="the largest root volume Shoal may give a node, GiB (Toil's stay at --node-storage)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every report here")
    parser.add_argument(
        "--jobs", type=_jobs, default=1, help="runs side by side (processes); the reports do not change, only `sec`"
    )
    args = parser.parse_args(argv)
    settings = ClusterSettings(
        name="bench", node_types=NODE_TYPES, node_storage=args.node_storage, max_node_storage=args.max_node_storage
    ).validate()
    runs = args.seeds or [args.seed]
    rows: dict[str, dict[str, object]] = {}
    print(f"{'trace':<22}{'policy':<10}{'cost $':>10}{'× bound':>9}{'p50 s':>8}{'p95 s':>8}{'max s':>8}"
          f"{'idle nh':>9}{'peak':>6}{'lost':>5}{'kill':>5}{'sec':>7}" + ("  seed" if args.seeds else ""))  # fmt: skip
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        for path in sorted(args.traces.glob("*.jsonl")):
            if not args.only or args.only in path.name:
                rows[path.name] = _compare(
                    path, settings, runs, seeded=bool(args.seeds), toil_targets=args.toil_targets,
                    toil_any_node=args.toil_any_node, pool=pool,
                )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
