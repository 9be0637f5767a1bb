"""What-if replays behind ``docs/simulate.md``'s "Session 9": Shoal's policy with one rule changed, over seeds.

    python benchmarks/bench_policy_variants.py [--only NAME] [--variants V,V,..] [--seeds 0,1,2] [--toil]
                                               [--node-storage GIB]

Each variant changes one rule (or what the scaler knows) for the length of a run by patching it, and is reported
beside Shoal as it is, seed by seed, with the median. One was kept (``overrun-2``, now Shoal's rule, so ``as-is``);
the others were not: a kept change is code, not a patch.

- ``as-is``: Shoal as it is.
- ``cap-N``: spot c5.4xlarge/c5a.4xlarge only, at most N nodes (a fleet that cannot surge; nf-chipseq runs on
  nothing else, uncapped it is ``as-is`` to the cent).
- ``oracle`` / ``oracle-T``: the scaler knows each job name's true mean runtime from the start (``-T``: and plans
  for a target of T seconds; the waits are still judged against 30 minutes). ``target-T``: Shoal as it is,
  planning for a target of T seconds. ``stretch-S``: the plan packs every shape on time within S
  target times, and a shape whose oldest job has waited past the grace (of 30 minutes) within what is left of 30
  minutes (session 22).
- ``triage`` / ``triage-X``: a shape whose oldest job already waited the whole target (``-X``: X times it) is
  planned with the whole target again, instead of the tightest plan (money is not spent on jobs late anyway).
- ``overrun-F``: a running job is an outlier once it has run F times its expected runtime (Shoal: 2, kept this
  session, ``demand.OVERRUN_FACTOR``): from then on its node is expected to empty when it has run as long again,
  not at once. ``overrun-inf``: never, as before this session.
- ``longest-first`` / ``late-first-F``: the agents start the queued jobs expected to run longest first (by the
  runtimes learned per name, as the scaler sees them), instead of the oldest first (``-F``: except that jobs of a
  name whose oldest queued job has waited F times the target go first, oldest first). Session 10.
- ``no-spot-consolidation``: busy surplus spot nodes are never drained (on-demand ones still are). Session 10.
- ``any-node``: a job starts on any node with room, in the agents' random order, as before session 11 (Shoal's
  agents now leave a young job to cheaper node types: ``shared.domain.cheaper_first``). ``hold-off-S``: they leave
  it for S seconds instead of ``cheaper_first.HOLD_OFF``.
- ``consolidate-S``: busy surplus on-demand nodes are drained when their jobs are expected to end within S seconds
  (``inf``: whenever), not ``scaling_changes.CONSOLIDATE_WITHIN``; spot ones as before. ``beta-X``: the
  ``beta_inertia`` setting is X (Shoal's and Toil's default: 0.1; higher keeps nodes longer on the way down).
  Session 12.
- ``consolidate-fewest``: busy surplus on-demand nodes are drained whenever the plan wants fewer, those running the
  fewest jobs first (Toil's scale-in choice), however long their jobs are expected to run. Session 13.
- ``records-at-heartbeat``: the scaler sees each node's jobs as its agent reported them at its last heartbeat (every
  30 s), as a deployed round sees node records, not the moment a job starts or ends (and when a node empties from
  the jobs its record lists that still run); ``deployed-records``: the same, except that a node whose last job
  ended is seen idle at once, as an agent reporting within a second of it would (tried at 9d2524b, reverted).
  ``records-with-markers``, ``deployed-with-markers``: the same two, except that a node about to be drained because
  it empties soon is looked at again with all its running jobs, as a round reading its start markers does (Shoal
  deployed is ``records-with-markers``). Session 13.
- ``jobs-up-to-S``: a busy node is drained as emptying soon only if none of its jobs is expected to run longer
  than S seconds (``inf``: whatever its jobs, as before session 13), not ``demand.CONSOLIDATE_JOBS_UP_TO``.
  Session 13.
- ``undrain-overrun``: a busy draining on-demand node whose jobs are now expected to run on past the consolidation
  window (they overran what drained it) takes work again. Session 13.
- ``busy-first-at-once``, ``fullest-first``, ``emptiest-busy-first``, ``latest-first``: the agents take jobs in
  this order of nodes instead of the queue's random one, with no hold-off (no queue can rank its pollers so: what
  an order could give at best): nodes running jobs before idle ones; the fullest first (by the largest share
  used); busy ones first, the emptiest of them first; busy ones first, the one whose jobs are expected to end
  latest first. The rule an agent could follow, an idle node leaving a young job to busy nodes for 2 s, was
  measured at ecff1f5 and reverted. Session 13.
- ``fill-first-F`` (``-kN``, ``-cN``): each node in the agents' order takes, among the queued jobs that fit it, the
  one that leaves it fullest (by the largest share used), a job that has waited F × the target first, oldest first
  (``-kN``: seeing only the N oldest queued jobs that fit it, as an agent sees a batch of messages; ``-cN``: by the
  job's own share of the node cut into N classes, largest class first and oldest first within it, as queues per
  size class would give; ``-s``: spot nodes only, on-demand ones take the oldest job that fits). What choosing from
  the whole queue is worth: one SQS queue shows an agent only a batch. Session 17.
- ``tail-X``: the packing counts a node that holds n jobs at 1 + X × (H(n) − 1) its price per job when it buys
  one (``packing_tail.TAIL_SHARE``, Shoal: 0.3, session 18); ``tail-0``: at its price per job, as before.

``--node-storage GIB`` gives every node that root volume (default: Toil's 50 GiB), for every variant; Shoal's rounds
may grow it up to ``--max-node-storage GIB`` (default 1024: ``shared.domain.volumes``; give the same as
``--node-storage`` to keep every volume at that size). Toil's nodes keep ``--node-storage``.

With ``--toil``, Toil 9.6's scaler (``bench_simulate.ToilSimulation``) runs under each variant too, with the same
agents, and each row is followed by Toil's and by the median of Shoal's cost over Toil's per seed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import heapq
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from unittest import mock

from benchmarks.bench_simulate import (
    NODE_TYPES,
    TRACES,
    ToilSimulation,
    median,
    node_storage,
    parse_seeds,
    quiet_logs,
)
from shared.domain import cheaper_first, demand, packing_tail, policy, scaling, scaling_changes
from shared.domain.catalog import DEFAULT_MAX_NODE_STORAGE, DEFAULT_NODE_STORAGE
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.decision import Undrain
from shared.domain.demand import expected_end
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.runtimes import Runtimes
from shared.domain.settings import ClusterSettings
from shared.sim import jobs
from shared.sim.engine import SimOptions, Simulation
from shared.sim.fleet import Fleet
from shared.sim.jobs import JobFlow
from shared.sim.model import HEARTBEAT_INTERVAL, SimNode
from shared.sim.trace import TraceJob, read_trace

SPOT_C5 = "c5.4xlarge/c5a.4xlarge:0.30"
DEFAULT_VARIANTS = (
    "as-is,cap-30,cap-34,oracle,oracle-2600,triage,overrun-inf,overrun-1,overrun-1.5,longest-first,late-first-0.5,"
    "no-spot-consolidation,any-node,hold-off-30,busy-first-at-once,fullest-first,latest-first,consolidate-fewest,"
    "jobs-up-to-inf,jobs-up-to-14400,"
    "undrain-overrun,records-at-heartbeat,deployed-records,records-with-markers,deployed-with-markers"
)

Patch = Callable[[Sequence[TraceJob]], contextlib.AbstractContextManager[Any]]


def _nothing(trace: Sequence[TraceJob]) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@contextlib.contextmanager
def _oracle(trace: Sequence[TraceJob]) -> Iterator[None]:
    totals: dict[str | None, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for job in trace:
        totals[job.job.name][0] += 1
        totals[job.job.name][1] += job.wall_time

    def expected(self: Runtimes, name: str | None, submitted: float, running: tuple[int, float] = (0, 0.0)) -> float:
        count, seconds = totals.get(name, (0, 0.0))
        return seconds / count if count else submitted

    with mock.patch.object(Runtimes, "expected", expected):
        yield


def _triage(late: float) -> Patch:
    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        tightest = policy.remaining_target

        def remaining_target(target_time: float, waited: float) -> float:
            return target_time if waited >= target_time * late else tightest(target_time, waited)

        with mock.patch.object(scaling, "remaining_target", remaining_target):
            yield

    return patch


def _stretch(stretch: float) -> Patch:
    """With ``target_time`` × ``stretch`` as the settings' target: a shape whose oldest job has waited past the grace
    of the real target is planned within what is left of that one."""

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        def remaining_target(target_time: float, waited: float) -> float:
            real = target_time / stretch
            if waited <= real * policy.WAIT_GRACE_FRACTION:
                return target_time
            return policy.remaining_target(real, waited)

        with mock.patch.object(scaling, "remaining_target", remaining_target):
            yield

    return patch


def _demand_rule(name: str, value: float) -> Patch:
    """``shared.domain.demand``'s constant ``name`` is ``value`` for the run."""

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        with mock.patch.object(demand, name, value):
            yield

    return patch


def _longest_first(late: float) -> Patch:
    """Agents that take the queued jobs with the longest expected runtime first; a key whose oldest queued job has
    waited ``late`` × the target goes before them all, oldest first (``math.inf``: never)."""

    def dispatch(self: JobFlow) -> None:
        accepting = sorted(
            (n for n in self.nodes.values() if n.state is NodeState.ACTIVE and n.free.cores > 1e-9),
            key=lambda n: n.priority,
        )
        if not self.queued or not accepting:
            return
        overdue = self.now - late * self.settings.target_time

        def order(key: tuple[Shape, str | None]) -> tuple[int, float, int]:
            head = self.queues[key][0]
            if self.jobs[head].queued_at <= overdue:
                return (0, 0.0, head)
            return (1, -self.runtimes.expected(key[1], key[0].wall_time), head)

        stuck: set[Shape] = set()
        for key in sorted((k for k, q in self.queues.items() if q), key=order):
            queue = self.queues[key]
            while queue and accepting and key[0] not in stuck:
                node_id = self._place(self.jobs[queue[0]], accepting)
                if node_id is None:
                    stuck.add(key[0])
                    break
                self._start(self.jobs[queue.popleft()], node_id)
                accepting = [n for n in accepting if n.free.cores > 1e-9]

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        with mock.patch.object(JobFlow, "_dispatch", dispatch):
            yield

    return patch


@contextlib.contextmanager
def _no_spot_consolidation(trace: Sequence[TraceJob]) -> Iterator[None]:
    consolidate = scaling_changes.Changes._stragglers

    def stragglers(self: scaling_changes.Changes, have: Any, offer: Offer | None, count: int) -> list[Any]:
        return [] if offer is not None and offer.spot else consolidate(self, have, offer, count)

    with mock.patch.object(scaling_changes.Changes, "_stragglers", stragglers):
        yield


def _hold_off(seconds: float) -> Patch:
    """The agents leave a young job to cheaper node types for ``seconds`` (0: never)."""

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        with mock.patch.object(cheaper_first, "HOLD_OFF", seconds), mock.patch.object(jobs, "HOLD_OFF", seconds):
            yield

    return patch


def _consolidate_within(seconds: float) -> Patch:
    """Busy surplus on-demand nodes drained when their jobs are expected to end within ``seconds``."""

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        consolidate = scaling_changes.Changes._stragglers

        def stragglers(self: scaling_changes.Changes, have: Any, offer: Offer | None, count: int) -> list[Any]:
            if offer is not None and offer.spot:
                return consolidate(self, have, offer, count)
            with mock.patch.object(scaling_changes, "CONSOLIDATE_WITHIN", seconds):
                return consolidate(self, have, offer, count)

        with mock.patch.object(scaling_changes.Changes, "_stragglers", stragglers):
            yield

    return patch


@contextlib.contextmanager
def _consolidate_fewest(trace: Sequence[TraceJob]) -> Iterator[None]:
    """Busy surplus on-demand nodes drained whenever the plan wants fewer, those running the fewest jobs first
    (Toil's scale-in choice), not only those expected to empty soon; spot ones as before."""
    consolidate = scaling_changes.Changes._stragglers

    def stragglers(self: scaling_changes.Changes, have: Any, offer: Offer | None, count: int) -> list[Any]:
        if (offer is not None and offer.spot) or count <= 0:
            return consolidate(self, have, offer, count)
        busy = [n for n in have if n.busy and not n.static]
        busy.sort(key=lambda n: (len(n.running_jobs), self.empties_at.get(n.instance_id, math.inf), n.instance_id))
        return busy[:count]

    with mock.patch.object(scaling_changes.Changes, "_stragglers", stragglers):
        yield


@contextlib.contextmanager
def _undrain_overrun(trace: Sequence[TraceJob]) -> Iterator[None]:
    """A busy draining on-demand node whose jobs are now expected to run on past the consolidation window (they
    overran what drained it) takes work again: it stays up for them anyway, and its room is paid for."""
    resize = scaling_changes.Changes.resize

    def patched_resize(self: scaling_changes.Changes, key: str) -> None:
        resize(self, key)
        offer = self.target.offers.get(key)
        if offer is None or offer.spot:
            return
        late = tuple(
            n.instance_id
            for n in self.fleet.draining.get(key, [])
            if n.busy and not n.static and n.instance_id not in self.undrained
            and self.empties_at.get(n.instance_id, -math.inf) - self.now > scaling_changes.CONSOLIDATE_WITHIN
        )  # fmt: skip
        if late:
            self.undrained.update(late)
            self.actions.append(Undrain(offer_key=key, instance_ids=late, reason=f"{key}: jobs overran the drain"))

    def empties_at(self: Simulation) -> dict[str, float]:
        draining = [n for n in self.nodes.values() if n.state is NodeState.DRAINING and n.running]
        for node in draining:
            node.state = NodeState.ACTIVE
        try:
            return original_empties(self)
        finally:
            for node in draining:
                node.state = NodeState.DRAINING

    original_empties = Simulation._empties_at
    with (
        mock.patch.object(scaling_changes.Changes, "resize", patched_resize),
        mock.patch.object(Simulation, "_empties_at", empties_at),
    ):
        yield


def _records_at_heartbeat(idle_at_once: bool, markers: bool = False) -> Patch:
    """The scaler sees each node's jobs and free room as its agent last reported them, at its heartbeat (every 30 s),
    as a deployed round does, not the moment a job starts or ends; the rest of a record (state, drain) is the
    control plane's own and stays current. ``idle_at_once``: except that a node whose last job ended is seen idle
    at once (as an agent reporting within a second of it would: tried at 9d2524b, reverted). ``markers``: a node
    that would be drained for emptying soon is looked at again, all its running jobs (as a round reading the
    node's start markers would find them)."""
    return functools.partial(_lagged_records, idle_at_once=idle_at_once, markers=markers)


@contextlib.contextmanager
def _lagged_records(trace: Sequence[TraceJob], *, idle_at_once: bool, markers: bool) -> Iterator[None]:
    ended: dict[str, list[tuple[int, float, float]]] = {}  # node -> (job, started, ended) of runs ended lately
    job_ended, requeue, records = JobFlow._job_ended, JobFlow._requeue_jobs, Fleet._records

    def note_end(self: JobFlow, node_id: str, indices: Iterable[int]) -> None:
        recent = [e for e in ended.get(node_id, []) if e[2] > self.now - 2 * HEARTBEAT_INTERVAL]
        recent += [(i, self.jobs[i].started_at, self.now) for i in indices]
        ended[node_id] = recent

    def patched_job_ended(self: JobFlow, index: int, attempt: int, node_id: str) -> None:
        job = self.jobs[index]
        if job.attempt == attempt and job.node == node_id:
            note_end(self, node_id, [index])
        job_ended(self, index, attempt, node_id)

    def patched_requeue(self: JobFlow, node: SimNode) -> int:
        note_end(self, node.id, list(node.running))
        return requeue(self, node)

    def last_beat(node: SimNode, now: float) -> float:
        return node.ready_at + math.floor((now - node.ready_at) / HEARTBEAT_INTERVAL) * HEARTBEAT_INTERVAL

    def patched_records(self: Fleet) -> list[NodeRecord]:
        out = []
        for record in records(self):
            node = self.nodes[record.instance_id]
            if self.now < node.ready_at:
                out.append(record)
                continue
            beat = last_beat(node, self.now)
            seen = [i for i in node.running if self.jobs[i].started_at <= beat]
            if node.running or not idle_at_once:  # what ended since the last report is still on it
                seen += [i for i, started, end in ended.get(node.id, []) if started <= beat < end]
            free = node.capacity
            for i in seen:
                free = free - self.jobs[i].resources
            out.append(
                replace(
                    record, free=free, heartbeat_at=beat, running_jobs=MappingProxyType({str(i): str(i) for i in seen})
                )
            )
        return out

    def patched_empties_at(self: Simulation) -> dict[str, float]:
        """A deployed round reads the records of the jobs its node records list, and keeps those still running
        there: a job started since the node's last report is not among them, nor is a node none of whose listed
        jobs still runs."""
        out = {}
        full = empties_at(self)
        for node_id in full:
            node = self.nodes[node_id]
            beat = last_beat(node, self.now)
            listed = [j for j in self._on(node) if j.started_at <= beat]
            if listed:
                out[node_id] = max(
                    self.now, *(expected_end(j.key, j.started_at, self._shape_of, self.now) for j in listed)
                )
                if markers and out[node_id] - self.now <= scaling_changes.CONSOLIDATE_WITHIN:
                    out[node_id] = full[node_id]
        return out

    empties_at = Simulation._empties_at
    with (
        mock.patch.object(Simulation, "_empties_at", patched_empties_at),
        mock.patch.object(JobFlow, "_job_ended", patched_job_ended),
        mock.patch.object(JobFlow, "_requeue_jobs", patched_requeue),
        mock.patch.object(Fleet, "_records", patched_records),
    ):
        yield


def _node_order(key: Callable[[JobFlow, SimNode], Any]) -> Patch:
    """The agents take jobs in the order ``key`` sorts the accepting nodes (not each node's random priority)."""

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        original = JobFlow._dispatch

        def dispatch(self: JobFlow) -> None:
            drawn = {node_id: node.priority for node_id, node in self.nodes.items()}
            for node in self.nodes.values():
                node.priority = key(self, node)
            try:
                original(self)
            finally:
                for node_id, node in self.nodes.items():
                    node.priority = drawn.get(node_id, node.priority)

        with mock.patch.object(JobFlow, "_dispatch", dispatch):
            yield

    return patch


def _used_share(node: SimNode) -> float:
    return (node.capacity - node.free).share_of(node.capacity)


def _fill_first(late: float, seen: float = math.inf, classes: int = 0, spot_only: bool = False) -> Patch:
    """Each node in the agents' order takes the queued job that fills it most, a job that waited ``late`` × the
    target first; ``seen``: of the N oldest queued jobs that fit it only; ``classes``: by the job's own share of the
    node cut into that many classes (0: by how full the node is with it); ``spot_only``: on-demand nodes take the
    oldest job that fits, as they do today."""

    def score(flow: JobFlow, node: SimNode, index: int, overdue: float) -> tuple[float, ...]:
        job = flow.jobs[index]
        if job.queued_at <= overdue:
            return (0, job.queued_at, index)
        if classes:
            fill = float(min(int(job.resources.share_of(node.capacity) * classes), classes - 1))
        else:
            fill = (node.capacity - node.free + job.resources).share_of(node.capacity)
        return (1, -fill, job.queued_at, index)

    def oldest(flow: JobFlow, key: tuple[Shape, str | None]) -> Iterator[tuple[float, int, tuple[Shape, str | None]]]:
        return ((flow.jobs[index].queued_at, index, key) for index in flow.queues[key])

    def dispatch(self: JobFlow) -> None:
        if not self.queued:
            return
        accepting = sorted(
            (n for n in self.nodes.values() if n.state is NodeState.ACTIVE and n.free.cores > 1e-9),
            key=lambda n: n.priority,
        )
        overdue = self.now - late * self.settings.target_time
        for node in accepting:
            oldest_first = spot_only and node.market is not Market.SPOT
            refused: set[tuple[Shape, str | None]] = set()  # keys the agent's rule would not start here
            while self.queued and node.free.cores > 1e-9:
                keys = [
                    key
                    for key, queue in self.queues.items()
                    if queue and key not in refused and self.jobs[queue[0]].resources.fits_in(node.free)
                ]
                if seen < math.inf:
                    window = itertools.islice(heapq.merge(*(oldest(self, key) for key in keys)), int(seen))
                    shown = {key for _, _, key in window}
                    keys = [key for key in keys if key in shown]
                if not keys:
                    break
                due = math.inf if oldest_first else overdue
                key = min(keys, key=lambda k: score(self, node, self.queues[k][0], due))
                job = self.jobs[self.queues[key][0]]
                if self._place(job, [node]) is None:
                    refused.add(key)
                    continue
                self.queues[key].popleft()
                self._start(job, node.id)

    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        with mock.patch.object(JobFlow, "_dispatch", dispatch):
            yield

    return patch


def _fill_first_variant(options: str) -> Patch:
    """``F[-kN][-cN][-s]`` → the ``fill-first`` patch."""
    late, *rest = options.split("-")
    try:
        seen = next((float(o[1:]) for o in rest if o.startswith("k")), math.inf)
        classes = next((int(o[1:]) for o in rest if o.startswith("c")), 0)
        if any(o[:1] not in ("k", "c") and o != "s" for o in rest):
            raise ValueError(options)
        return _fill_first(float(late), seen, classes, spot_only="s" in rest)
    except ValueError:
        raise ValueError(
            f"variant 'fill-first-{options}': give F, then -kN and -cN if wanted, e.g. fill-first-0.6-k10"
        ) from None


def _tail_share(share: float) -> Patch:
    @contextlib.contextmanager
    def patch(trace: Sequence[TraceJob]) -> Iterator[None]:
        with mock.patch.object(packing_tail, "TAIL_SHARE", share):
            yield

    return patch


def variant(name: str) -> tuple[Patch, dict[str, object]]:
    """The patch and the settings overrides of the variant called ``name``."""
    if name == "as-is":
        return _nothing, {}
    if name.startswith("cap-"):
        return _nothing, {"node_types": SPOT_C5, "max_nodes": (int(name[4:]),)}
    if name == "oracle":
        return _oracle, {}
    if name.startswith("oracle-"):
        return _oracle, {"target_time": float(name[7:])}
    if name.startswith("stretch-"):
        return _stretch(float(name[8:])), {"target_time": 1800.0 * float(name[8:])}
    if name.startswith("target-"):
        return _nothing, {"target_time": float(name[7:])}
    if name == "triage":
        return _triage(1.0), {}
    if name.startswith("triage-"):
        return _triage(float(name[7:])), {}
    if name.startswith("overrun-"):
        return _demand_rule("OVERRUN_FACTOR", float(name[8:])), {}
    if name == "no-spot-consolidation":
        return _no_spot_consolidation, {}
    if name == "any-node":
        return _hold_off(0.0), {}
    if name.startswith("hold-off-"):
        return _hold_off(float(name[9:])), {}
    if name == "records-at-heartbeat":
        return _records_at_heartbeat(idle_at_once=False), {}
    if name == "deployed-records":
        return _records_at_heartbeat(idle_at_once=True), {}
    if name == "records-with-markers":
        return _records_at_heartbeat(idle_at_once=False, markers=True), {}
    if name == "deployed-with-markers":
        return _records_at_heartbeat(idle_at_once=True, markers=True), {}
    if name == "undrain-overrun":
        return _undrain_overrun, {}
    if name.startswith("jobs-up-to-"):
        return _demand_rule("CONSOLIDATE_JOBS_UP_TO", float(name[11:])), {}
    if name == "consolidate-fewest":
        return _consolidate_fewest, {}
    if name.startswith("consolidate-"):
        return _consolidate_within(float(name[12:])), {}
    if name.startswith("beta-"):
        return _nothing, {"beta_inertia": float(name[5:])}
    if name == "busy-first-at-once":
        return _node_order(lambda f, n: (not n.running, n.priority)), {}
    if name == "fullest-first":
        return _node_order(lambda f, n: (-_used_share(n), n.priority)), {}
    if name == "emptiest-busy-first":
        return _node_order(lambda f, n: (not n.running, _used_share(n), n.priority)), {}
    if name == "latest-first":
        return _node_order(lambda f, n: (not n.running, -f._latest_end(n)[0] if n.running else 0.0, n.priority)), {}
    if name == "longest-first":
        return _longest_first(math.inf), {}
    if name.startswith("late-first-"):
        return _longest_first(float(name[11:])), {}
    if name.startswith("fill-first-"):
        return _fill_first_variant(name[11:]), {}
    if name.startswith("tail-"):
        return _tail_share(float(name[5:])), {}
    raise ValueError(
        f"variant {name!r}: use one of {DEFAULT_VARIANTS} "
        "(or cap-N, oracle-T, target-T, stretch-S, triage-X, overrun-F, late-first-F, hold-off-S, consolidate-S, "
        "beta-X, jobs-up-to-S, "
        "busy-first-at-once, fullest-first, emptiest-busy-first, latest-first, consolidate-fewest, "
        "fill-first-F[-kN][-cN][-s], tail-X, "
        "undrain-overrun, records-at-heartbeat, deployed-records, records-with-markers, deployed-with-markers)"
    )


def run(
    path: Path,
    name: str,
    seed: int,
    *,
    toil: bool = False,
    node_storage: int = DEFAULT_NODE_STORAGE,
    max_node_storage: int = DEFAULT_MAX_NODE_STORAGE,
) -> dict[str, Any]:
    """One run of the variant; ``toil``: Toil's scaler in Shoal's place, under the same patch."""
    patch, overrides = variant(name)
    values: dict[str, object] = {
        "name": "bench", "node_types": NODE_TYPES, "node_storage": node_storage, "max_node_storage": max_node_storage,
        **overrides,
    }  # fmt: skip
    settings = ClusterSettings(**values).validate()  # type: ignore[arg-type]
    trace = read_trace(path)
    kind = ToilSimulation if toil else Simulation
    with patch(trace):
        return dict(kind(trace, SimOptions(settings=settings, boot_delay=90.0, seed=seed)).run().report)


def _line(trace: str, name: str, reports: Sequence[dict[str, Any]]) -> str:
    costs = [float(r["cost"]) for r in reports]
    bad = sum(int(r["lost"]) + int(r["run_twice"]) + int(r["killed_by_scale_in"]) for r in reports)
    return (
        f"{trace[:17]:<18}{name[:23]:<24}" + "".join(f"{c:>13.2f}" for c in costs)
        + f"{median(costs):>11.2f}{max(float(r['wait_p95_seconds']) for r in reports):>22.0f}{bad:>19}"
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    with quiet_logs():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--only", help="only traces whose file name contains this")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2])
    parser.add_argument("--toil", action="store_true", help="run Toil's scaler under each variant too")
    parser.add_argument("--node-storage", type=node_storage, default=DEFAULT_NODE_STORAGE, help="GiB of root volume")
    parser.add_argument(
        "--max-node-storage", type=node_storage, default=DEFAULT_MAX_NODE_STORAGE,
        help="the largest root volume Shoal may give a node, GiB",
    )  # fmt: skip
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    for name in names:
        try:
            variant(name)
        except ValueError as error:
            parser.error(str(error))
    volumes = {"node_storage": args.node_storage, "max_node_storage": args.max_node_storage}
    print(f"{'trace':<18}{'variant':<24}" + "".join(f"{'$ seed ' + str(s):>13}" for s in args.seeds)
          + f"{'median $':>11}{'p95 s (max of seeds)':>22}{'lost+twice+killed':>19}")  # fmt: skip
    for path in sorted(args.traces.glob("*.jsonl")):
        if args.only and args.only not in path.name:
            continue
        for name in names:
            reports = [run(path, name, seed, **volumes) for seed in args.seeds]
            print(_line(path.stem, name, reports), flush=True)
            if args.toil:
                toil = [run(path, name, seed, toil=True, **volumes) for seed in args.seeds]
                print(_line(path.stem, "  Toil, same agents", toil), flush=True)
                ratios = [float(s["cost"]) / float(t["cost"]) for s, t in zip(reports, toil, strict=True)]
                print(f"{'':<18}{'  Shoal / Toil':<24}" + "".join(f"{r:>13.4f}" for r in ratios)
                      + f"{median(ratios):>11.4f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
