"""What the agent's parts share: its settings, its ports, the jobs it holds, and the locks around them.

The receiver (``receiver.py``) starts jobs, the settler (``settler.py``) settles them, the keeper
(``keeper.py``) does the timed work, recovery (``recovery.py``) adopts what an earlier agent left; the
``Agent`` (``agent.py``) wires them to one ``AgentState``. Locks: ``lock`` guards ``running``, the ledger
and the pending deletes; ``dispatch_lock`` is held while one message goes from "may it start?" to
"registered as running", so an evacuation or a heartbeat never misses a job being started.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from shared.domain.cheaper_first import NodeCost
from shared.domain.jobs import Job
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.domain.resources import Resources
from shared.services.ports import JobStore, NodeStore, Now
from shared.services.worker_ports import ReceivedMessage, RuntimeRecorder, WorkerQueue
from shared.worker import process_tree
from shared.worker.capacity import CapacityLedger
from shared.worker.runner import JobProcess
from shared.worker.runtime_tally import RuntimeTally

log = logging.getLogger(__name__)
T = TypeVar("T")

INTENT_PREFIX = ".intent-"  # work-root files: a job this agent is starting or running, and its message's receipt
MAX_VISIBILITY_TIMEOUT = 43200  # SQS's limit: 12 hours
MAX_RECEIVE_BATCH = 10


class AgentSettingsError(ValueError):
    """An agent setting out of range; names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    node_id: str
    capacity: Resources
    work_root: Path
    visibility_timeout: int = 120  # seconds a taken message stays hidden; renewed every third of it while it runs
    poll_wait: int = 20  # SQS long poll, seconds
    receive_batch: int = MAX_RECEIVE_BATCH
    heartbeat_interval: float = 30.0  # node record: free resources, running jobs; the answer says "draining"
    # One batched read of the running jobs' records (any CANCELLED?) this often; None: with each node heartbeat.
    cancel_check_interval: float | None = None
    interruption_poll_interval: float = 5.0  # IMDS spot/instance-action; EC2 gives two minutes' notice
    retry_delay: float = 10.0  # a failed job is retried after this, doubling per attempt
    max_retry_delay: float = 600.0
    busy_delay: int = 60  # a duplicate message of a job running elsewhere is looked at again after this
    declined_backoff: float = 1.0  # pause after a receive that brought only jobs this node cannot take now
    empty_poll_pause: float = 0.05  # pause after an empty short poll (poll_wait 0: tests against moto)
    kill_grace: float = 5.0  # SIGTERM, then SIGKILL after this
    enforce_memory: bool = True
    keep_work_dirs: bool = False
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS  # the cluster's budget (a job's own max_preemptions wins)
    cheaper_first: NodeCost | None = None  # leave young jobs to cheaper node types (None: take any job that fits)

    def __post_init__(self) -> None:
        if not 1 <= self.visibility_timeout <= MAX_VISIBILITY_TIMEOUT:
            raise AgentSettingsError(
                f"visibility_timeout must be 1..{MAX_VISIBILITY_TIMEOUT} s, got {self.visibility_timeout}"
            )
        if not 0 <= self.poll_wait <= 20:
            raise AgentSettingsError(f"poll_wait must be 0..20 s (the SQS long-poll limit), got {self.poll_wait}")
        if not 1 <= self.receive_batch <= MAX_RECEIVE_BATCH:
            raise AgentSettingsError(f"receive_batch must be 1..{MAX_RECEIVE_BATCH}, got {self.receive_batch}")
        if not 0 <= self.busy_delay <= MAX_VISIBILITY_TIMEOUT:
            raise AgentSettingsError(f"busy_delay must be 0..{MAX_VISIBILITY_TIMEOUT} s, got {self.busy_delay}")

    def retry_visibility(self, attempt: int) -> int:
        """How long a failed job stays hidden before its next attempt: exponential backoff, capped."""
        delay = min(self.retry_delay * 2 ** max(0, attempt - 1), self.max_retry_delay, MAX_VISIBILITY_TIMEOUT)
        return int(delay)


class Claim(enum.StrEnum):
    """Who settles a running job: its own thread once its process ended, an evacuation, or a cancellation."""

    AGENT = "agent"
    EVACUATION = "evacuation"
    CANCEL = "cancel"  # its submitter withdrew it (the record says CANCELLED)


@dataclass(slots=True)
class Held:
    job: Job
    message: ReceivedMessage
    attempt: int
    process: JobProcess
    claim: Claim | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ports:
    queue: WorkerQueue
    jobs: JobStore
    nodes: NodeStore
    runtimes: RuntimeRecorder | None = None


class AgentState:
    """The mutable state of one agent, shared by its parts (each takes the locks described above)."""

    def __init__(self, settings: AgentSettings, ports: Ports, *, clock: Now, docker: str) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.queue, self.jobs, self.nodes, self.runtimes = ports.queue, ports.jobs, ports.nodes, ports.runtimes
        self.clock = clock
        self.docker = docker
        # Every job this node's agents start carries this in its token: how a successor finds what we leave.
        self.owner = process_tree.owner_of(settings.node_id, settings.work_root)
        self.ledger = CapacityLedger(settings.capacity)
        self.running: dict[str, Held] = {}
        self.threads: set[threading.Thread] = set()
        self.pending_deletes: list[str] = []
        self.learned = RuntimeTally()  # sent with each node heartbeat
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)  # notified whenever a job leaves ``running``
        self.dispatch_lock = threading.Lock()
        self.stopping = threading.Event()  # take no new jobs; set by stop() and by an evacuation
        self.evacuated = threading.Event()
        self.evacuation = threading.Lock()  # taken once, by whichever thread evacuates, never released
        self.interrupt_reason: str | None = None  # set from a signal handler: no locks on that path
        self.draining = False
        self.wake = threading.Event()  # only the keeper thread waits on it
        self.gone = threading.Event()  # set by ``abandon`` (a simulated crash); waits that must end with it use it

    @property
    def abandoned(self) -> bool:
        return self.gone.is_set()

    def takes_no_work(self) -> bool:
        return self.stopping.is_set() or self.draining or self.interrupt_reason is not None

    # ── intents: what recovery finds of a job being started ─────────────────────────────────────

    def intent_path(self, job_id: str) -> Path:
        return self.settings.work_root / f"{INTENT_PREFIX}{hashlib.sha256(job_id.encode()).hexdigest()[:32]}"

    def write_intent(self, job_id: str, receipt: str) -> Path:
        intent = self.intent_path(job_id)
        intent.parent.mkdir(parents=True, exist_ok=True)
        intent.write_text(json.dumps({"job_id": job_id, "receipt": receipt}), encoding="utf-8")
        return intent

    def tidy(self, held: Held) -> None:
        """Remove a settled run's ticket, exit file and intent: its end is on the record (or it went back)."""
        held.process.forget()
        self.intent_path(held.job.id).unlink(missing_ok=True)

    # ── message deletion ────────────────────────────────────────────────────────────────────────

    def queue_delete(self, receipt: str) -> None:
        with self.lock:
            self.pending_deletes.append(receipt)
            flush_now = len(self.pending_deletes) >= MAX_RECEIVE_BATCH
        if flush_now:
            self.flush_deletes()

    def flush_deletes(self) -> None:
        with self.lock:
            receipts, self.pending_deletes = self.pending_deletes, []
        if receipts:
            failed = self.queue.delete(receipts)
            if failed:
                log.warning(
                    "%d message(s) of settled jobs were not deleted; their duplicates are deleted on sight", len(failed)
                )

    def delete_now(self, receipt: str) -> None:
        failed = self.queue.delete([receipt])
        if failed:
            log.warning("a settled message was not deleted; its duplicate is deleted on sight")

    def send_runtimes(self) -> None:
        if self.runtimes is not None:
            self.learned.send(self.runtimes)


def guarded(what: str, action: Callable[[], T]) -> T | None:
    """Run one piece of timed work; a failure is logged and retried next time, never fatal to the agent."""
    try:
        return action()
    except Exception:
        log.exception("%s failed", what)
        return None
