"""The local cloud's worker nodes: a real Shoal agent for each running instance in the embedded EC2.

moto's instances are ``running`` at once and run nothing. Here each running instance of the cluster gets,
after a simulated boot delay, a ``shared.worker.Agent`` thread configured as the appliance would be on
that instance type: its capacity is the catalog's usable capacity, its node id the instance id, and it
talks to the deployed queue and table. Jobs run as real processes: ``sleep`` for their simulated
duration (``wall_time / speed``) on the accelerated clock, a wait for their simulated end on the lockstep
clock (``shared/local/lockstep.py``: the agents then receive once per step), or their own command with
``real=True``. Each successful execution
appends the job id to ``executions.log``, an independent witness of how often each job really ran, and
every run holds an ``flock`` on its job's lock file in all its processes; a copy that finds it taken (two
copies at once) appends the job id to ``overlaps.log``.
When the instance stops or terminates, the agent gets SIGTERM's treatment (``request_interrupt``): no
new jobs, running ones back to the queue, as the container would on shutdown. Then whatever still
carries the node's job token is recorded in ``left_behind`` and ended, as the instance's end would.
``crash_and_restart`` stops a node's agent as ``kill -9`` would and starts a new one on the node at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3

from shared.adapters.ec2_fleet import CLUSTER_TAG, MARKET_TAG, NODE_STORAGE_TAG, node_storage_of_tag
from shared.domain.catalog import instance_type
from shared.domain.cheaper_first import NodeCost
from shared.domain.cluster_state import Market
from shared.domain.jobs import Job
from shared.domain.node_types import Offer
from shared.local.clock import Clock
from shared.local.lockstep import JobTimer, StepGate, SteppedAgent, wait_settled
from shared.services.job_message import decode_job_message
from shared.services.worker_ports import RuntimeRecorder
from shared.wiring.agent import build_agent_ports
from shared.worker import process_tree
from shared.worker.agent import Agent, AgentSettings

log = logging.getLogger(__name__)

LIVE = ("pending", "running")
AGENT_VISIBILITY_TIMEOUT = 300  # real seconds (moto's SQS runs on real time); renewed while a job runs
AGENT_HEARTBEAT = 60.0  # simulated seconds between node heartbeats
EMPTY_POLL_PAUSE = 0.25  # real seconds between short polls of an empty queue (moto serves one request at a time)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceView:
    instance_id: str
    instance_type: str
    state: str
    cluster: str | None
    tags: Mapping[str, str]


def describe_instances(region: str, client: Any = None, *, states: Sequence[str] = ()) -> list[InstanceView]:
    """Every instance in the region (one paginated DescribeInstances), or only those in ``states``."""
    ec2 = client if client is not None else boto3.client("ec2", region_name=region)
    views = []
    filters: list[Any] = [{"Name": "instance-state-name", "Values": list(states)}] if states else []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
                views.append(
                    InstanceView(
                        instance_id=raw["InstanceId"],
                        instance_type=raw["InstanceType"],
                        state=raw["State"]["Name"],
                        cluster=tags.get(CLUSTER_TAG),
                        tags=tags,
                    )
                )
    return views


class _ScaledRuntimes:
    """Learned runtimes in simulated seconds (the agent measures real ones)."""

    def __init__(self, store: RuntimeRecorder, speed: float) -> None:
        self._store, self._speed = store, speed

    def record_runtime(self, name: str, seconds: float, count: int = 1) -> None:
        self._store.record_runtime(name, seconds * self._speed, count)


class _TimedRuntimes:
    """Learned runtimes in simulated seconds, as the lockstep's job timer ended them."""

    def __init__(self, store: RuntimeRecorder, timer: JobTimer) -> None:
        self._store, self._timer = store, timer

    def record_runtime(self, name: str, seconds: float, count: int = 1) -> None:
        self._timer.record_runtime(self._store, name, count)


@dataclass(frozen=True, slots=True)
class Lockstep:
    """The lockstep clock's parts the nodes take part in: the agents' gate and the jobs' timer."""

    gate: StepGate
    timer: JobTimer


@dataclass(slots=True)
class _Node:
    instance_id: str
    instance_type: str
    ready_at: float  # simulated time the agent starts (boot delay)
    spot: bool = False
    node_storage: int | None = None  # a root volume its launch sized (the shoal:node-storage tag); None: the cluster's
    agent: Agent | None = None
    thread: threading.Thread | None = None
    owner: str = ""  # its agents' job-token prefix


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEndpoints:
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    region: str


class LocalNodes:
    """Starts and stops one agent per running cluster instance, following what EC2 says each tick."""

    def __init__(
        self,
        *,
        cluster: str,
        endpoints: NodeEndpoints,
        clock: Clock,
        boot_delay: float,
        node_storage: int,
        work_root: Path,
        real: bool = False,
        enforce_memory: bool | None = None,
        job_env: Mapping[str, str] | None = None,
        lockstep: Lockstep | None = None,
        offers: Sequence[Offer] = (),
    ) -> None:
        self.cluster = cluster
        # the cluster's node types, as a deployed worker reads them (SHOAL_NODE_TYPES): each agent leaves young jobs
        # to cheaper types (``shared.domain.cheaper_first``); none: agents take any job that fits
        self.offers = list(offers)
        self.endpoints = endpoints
        self.clock = clock
        self.boot_delay = boot_delay
        self.node_storage = node_storage
        self.work_root = work_root
        self.real = real
        # An address-space limit at a job's memory crashes some real programs (CWL tools mapping segments).
        self.enforce_memory = real if enforce_memory is None else enforce_memory
        self.job_env = dict(job_env or {})  # added to every job's environment (e.g. PATH for Toil's workers)
        self.executions_log = work_root / "executions.log"
        self.executions_log.touch()
        self.overlaps_log = work_root / "overlaps.log"
        self.completions_log = work_root / "completions.log"  # job id, work dir (under the node's), real time
        self.overlaps_log.touch()
        self._locks = work_root / "locks"
        self._locks.mkdir(exist_ok=True)
        self._flock = shutil.which("flock")
        self.left_behind: list[str] = []  # "instance: N process(es)" still running after its agent stopped
        self.owners: set[str] = set()
        self.busy_terminations: list[str] = []  # "instance: jobs" for every node that went away with jobs running
        self.agents_started = 0
        self._nodes: dict[str, _Node] = {}
        ports = build_agent_ports(
            queue_url=endpoints.queue_url,
            dead_letter_queue_url=endpoints.dead_letter_queue_url,
            table_name=endpoints.table_name,
            region=endpoints.region,
        )
        self._jobs, self._node_store, self._queue = ports.jobs, ports.nodes, ports.queue
        self.lockstep = lockstep
        self._runtimes: RuntimeRecorder = (
            _ScaledRuntimes(ports.runtimes, clock.speed)
            if lockstep is None
            else _TimedRuntimes(ports.runtimes, lockstep.timer)
        )

    def tick(self, instances: Sequence[InstanceView]) -> None:
        now = self.clock.now()
        seen: set[str] = set()
        for view in instances:
            if view.cluster != self.cluster:
                continue
            if view.state in LIVE:
                seen.add(view.instance_id)
                node = self._nodes.get(view.instance_id)
                if node is None:
                    spot = view.tags.get(MARKET_TAG) == Market.SPOT
                    storage = node_storage_of_tag(view.tags.get(NODE_STORAGE_TAG))
                    node = _Node(
                        view.instance_id, view.instance_type, ready_at=now + self.boot_delay, spot=spot,
                        node_storage=storage,
                    )  # fmt: skip
                    self._nodes[view.instance_id] = node
                if node.agent is None and now >= node.ready_at:
                    self._start(node)
        for instance_id in [i for i in self._nodes if i not in seen]:
            self._shut_down(self._nodes.pop(instance_id), "the instance is shutting down")

    def booting(self) -> int:
        return sum(1 for n in self._nodes.values() if n.agent is None)

    def busy_jobs(self) -> int:
        return sum(len(n.agent.running_job_ids()) for n in self._nodes.values() if n.agent is not None)

    def running_on(self, instance_id: str) -> list[str]:
        """The jobs the node's agent runs now (none if it has no agent)."""
        node = self._nodes.get(instance_id)
        return [] if node is None or node.agent is None else node.agent.running_job_ids()

    def stepped_agents(self) -> list[SteppedAgent]:
        return [n.agent for n in self._nodes.values() if isinstance(n.agent, SteppedAgent)]

    def end_due_jobs(self) -> bool:
        """Lockstep: end the jobs whose simulated end has come, and wait until their agents settled them."""
        if self.lockstep is None:
            return True
        ended = self.lockstep.timer.end_due(self.running_on)
        return wait_settled(ended, self.running_on)

    def timed_work(self) -> bool:
        """Lockstep: let every agent whose keeper runs do its timed work due now, before the step's rounds."""
        if self.lockstep is None:
            return True
        return self.lockstep.gate.timed_work(self.stepped_agents(), self.clock.now())

    def receive_round(self, *, messages_waiting: bool = True) -> bool:
        """Lockstep: let every agent that takes work receive (when messages wait) and do its timed work due now."""
        if self.lockstep is None:
            return True
        return self.lockstep.gate.run_step(self.stepped_agents(), self.clock.now(), receive=messages_waiting)

    def busy_agents(self) -> list[str]:
        """The instances whose agent runs jobs now."""
        return sorted(i for i, n in self._nodes.items() if n.agent is not None and n.agent.running_job_ids())

    def crash_and_restart(self, instance_id: str) -> int:
        """Stop the node's agent dead, as ``kill -9`` would, and start a new one on it at once; how many jobs the
        dead agent was running (its processes live on, for the new agent to find)."""
        node = self._nodes.get(instance_id)
        if node is None or node.agent is None:
            return 0
        running = len(node.agent.running_job_ids())
        node.agent.abandon()
        if node.thread is not None:
            node.thread.join(timeout=15)  # its receive loop has stopped: nothing more starts from it
        self._start(node)
        return running

    def power_off(self, instance_id: str) -> None:
        """The instance dies at once (its termination, seen from inside): the agent stops dead, and every
        process on it with it, before EC2 reports it gone and the scaler returns its jobs to the queue."""
        node = self._nodes.get(instance_id)
        if node is None or node.agent is None:
            return
        node.agent.abandon()
        if node.thread is not None:
            node.thread.join(timeout=15)
        process_tree.end_matching(process_tree.owned_by(node.owner), grace=0.0)

    def interrupt(self, instance_id: str, reason: str) -> bool:
        """Tell the node's agent what its spot watch would; False if it has no agent."""
        node = self._nodes.get(instance_id)
        if node is None or node.agent is None:
            return False
        node.agent.request_interrupt(reason)
        return True

    def stop_all(self) -> None:
        for node in list(self._nodes.values()):
            self._shut_down(node, "the local cloud is stopping", record=False)
        self._nodes.clear()

    # ---- one node ----------------------------------------------------------------------------------

    def agent_settings(
        self, instance_id: str, type_name: str, *, spot: bool, work: Path, node_storage: int | None = None
    ) -> AgentSettings:
        """What a deployed worker's agent would be given on this node (its capacity, its side of cheaper-first); its
        disk is its root volume's (a deployed agent sees the grown filesystem's free space)."""
        return AgentSettings(
            node_id=instance_id,
            capacity=instance_type(type_name).usable(node_storage or self.node_storage),
            work_root=work,
            visibility_timeout=AGENT_VISIBILITY_TIMEOUT,
            poll_wait=0,
            heartbeat_interval=AGENT_HEARTBEAT,
            # In lockstep the gate paces the receives: no pause inside one.
            empty_poll_pause=EMPTY_POLL_PAUSE if self.lockstep is None else 0.0,
            declined_backoff=0.5 if self.lockstep is None else 0.0,
            kill_grace=1.0,
            enforce_memory=self.enforce_memory,
            cheaper_first=NodeCost.of(self.offers, type_name, spot=spot) if self.offers else None,
        )

    def _start(self, node: _Node) -> None:
        work = self.work_root / node.instance_id
        work.mkdir(parents=True, exist_ok=True)
        node.owner = process_tree.owner_of(node.instance_id, work)
        self.owners.add(node.owner)
        settings = self.agent_settings(
            node.instance_id, node.instance_type, spot=node.spot, work=work, node_storage=node.node_storage
        )
        stepped: dict[str, Any] = {} if self.lockstep is None else {"gate": self.lockstep.gate}
        agent = (Agent if self.lockstep is None else SteppedAgent)(
            settings,
            queue=self._queue,
            jobs=self._jobs,
            nodes=self._node_store,
            decode=decode_job_message,
            run_as=lambda job: self._as_simulated(job, node.instance_id),
            runtimes=self._runtimes,
            clock=self.clock.now,
            base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), **self.job_env},
            **stepped,
        )
        thread = threading.Thread(target=agent.run, name=f"agent-{node.instance_id}", daemon=True)
        node.agent, node.thread = agent, thread
        self.agents_started += 1
        thread.start()

    def _shut_down(self, node: _Node, reason: str, *, record: bool = True) -> None:
        if node.agent is None:
            return
        running = node.agent.running_job_ids()
        if running and record:
            self.busy_terminations.append(f"{node.instance_id}: {', '.join(running)}")
        node.agent.request_interrupt(f"SIGTERM: {reason}")
        if node.thread is not None:
            node.thread.join(timeout=15)
        # The instance is gone, and so is every process on it; anything of its jobs still running is a leak.
        left = len(process_tree.scan(process_tree.owned_by(node.owner)))
        if left:
            self.left_behind.append(f"{node.instance_id}: {left} process(es)")
            process_tree.end_matching(process_tree.owned_by(node.owner), grace=0.0)

    def _as_simulated(self, job: Job, instance_id: str) -> Job:
        """The job as the appliance would run it: its simulated duration, or its own command with ``real``."""
        # The detail (where, when) says, of a job that completed twice, whether its node died before its end was
        # recorded (an at-least-once rerun no system can avoid) or Shoal ran it again.
        detail = f'"$SHOAL_JOB_ID $SHOAL_JOB_WORK_DIR $(date +%s.%N)" >> {shlex.quote(str(self.completions_log))}'
        witness = f'{{ echo "$SHOAL_JOB_ID" >> {shlex.quote(str(self.executions_log))}; echo {detail}; }}'
        lock = ""
        if self._flock is not None:
            # Every process of the run inherits fd 9, so the lock is held until the whole tree is gone.
            path = self._locks / hashlib.sha256(job.id.encode()).hexdigest()[:24]
            overlaps = shlex.quote(str(self.overlaps_log))
            lock = f'exec 9>>{shlex.quote(str(path))}; {self._flock} -n 9 || echo "$SHOAL_JOB_ID" >> {overlaps}; '
        if self.real and (job.command is not None or job.image is not None):
            command = f"{lock}( {job.command} ) && {witness}" if job.command is not None and job.image is None else None
            return job if command is None else replace(job, command=command)
        if self.lockstep is not None:
            wait = self.lockstep.timer.command(job, instance_id)
            return replace(job, command=f"{lock}{wait} && {witness}", image=None, timeout=None)
        seconds = self.clock.real_seconds(job.shape.wall_time)
        timeout = None if job.timeout is None else self.clock.real_seconds(job.timeout)
        return replace(job, command=f"{lock}sleep {seconds:.3f} && {witness}", image=None, timeout=timeout)
