"""The Shoal agent: takes the jobs that fit from the queue, runs them, and settles each one.

"Never lose a job" rests on one order of operations: a message is deleted only after the job store
has recorded the job's end (success, or failure sent to the dead-letter queue). Whatever crashes in
between, the message comes back, and the job record decides: a settled job's duplicate is deleted, a
queued one runs, one still running elsewhere waits.

"Never twice at once" rests on two more: a job goes back to the queue (evacuation) only once its whole
process tree is gone (``JobProcess.wait_ended``), and an agent, before it takes any job, ends whatever an
earlier agent of its node left running and settles those jobs (``recover``): a finished run's exit status
is adopted, an unfinished one is ended and its job requeued. Every start has its own number.

Threads: the caller's thread runs ``run()`` (receive → decide → start); each job runs in its own
thread that waits on its process and settles it; a keeper thread does the timed work (``tick``):
visibility heartbeat, node heartbeat, interruption watch, evacuation. Tests drive ``step`` and
``tick`` directly instead, with an injected clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from shared.domain.cluster_state import JobStatus, NodeState
from shared.domain.jobs import Job
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS, is_reclaim
from shared.domain.resources import Resources
from shared.services.ports import JobStore, NodeStore, ReceivedMessage, RuntimeRecorder, WorkerQueue
from shared.worker import process_tree
from shared.worker.capacity import CapacityLedger, Fit, shortfall
from shared.worker.runner import SETTLE_SECONDS, JobProcess, RunResult, Ticket, read_tickets
from shared.worker.runtime_tally import RuntimeTally

log = logging.getLogger(__name__)
T = TypeVar("T")

INTENT_PREFIX = ".intent-"  # work-root files: a job this agent is starting or running, and its message's receipt
MAX_VISIBILITY_TIMEOUT = 43200  # SQS's limit: 12 hours
MAX_RECEIVE_BATCH = 10


# Well under the queue's maxReceiveCount (cdk/constants.py), which is only the backstop for poison messages.
RECYCLE_AFTER_RECEIVES = 100


class AgentSettingsError(ValueError):
    """An agent setting out of range; names the setting."""


class AgentRecoveryError(RuntimeError):
    """What an earlier agent of this node left running could not be ended; taking jobs could run them twice."""


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


class Outcome(enum.Enum):
    STARTED = "started"
    DECLINED = "declined"  # does not fit now (or ever, on this node): visible again at once
    RETURNED = "returned"  # the agent is stopping or draining: visible again at once
    DUPLICATE = "duplicate"  # the job is settled (message deleted) or runs elsewhere (message hidden a while)
    INVALID = "invalid"  # not a job: dead-lettered with the error


@dataclass(slots=True)
class _Held:
    job: Job
    message: ReceivedMessage
    attempt: int
    process: JobProcess
    # Who settles it: "agent" when its process ended, "evacuation" on interruption, "cancel" when its
    # submitter withdrew it (the record says CANCELLED).
    claim: str | None = None


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        queue: WorkerQueue,
        jobs: JobStore,
        nodes: NodeStore,
        decode: Callable[[str], Job],
        runtimes: RuntimeRecorder | None = None,
        interruption_check: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        base_env: Mapping[str, str] | None = None,
        run_as: Callable[[Job], Job] | None = None,
        docker: str = "docker",
    ) -> None:
        """``decode`` turns a message body into a ``Job`` or raises ``ValueError`` saying why it cannot.

        ``interruption_check`` returns a reason when the instance is about to go (a spot notice), else None.
        ``run_as`` gives what to execute for a job (the local cloud simulates durations); the job store
        always sees the job itself.
        """
        self.settings = settings
        self.node_id = settings.node_id
        self._queue = queue
        self._jobs = jobs
        self._nodes = nodes
        self._decode = decode
        self._runtimes = runtimes
        self._interruption_check = interruption_check
        self._clock = clock
        self._base_env = base_env
        self._run_as = run_as
        self._docker = docker
        # Every job this node's agents start carries this in its token: how a successor finds what we leave.
        self._owner = process_tree.owner_of(settings.node_id, settings.work_root)

        self._ledger = CapacityLedger(settings.capacity)
        self._running: dict[str, _Held] = {}
        self._threads: set[threading.Thread] = set()
        self._pending_deletes: list[str] = []
        self._learned = RuntimeTally()  # sent with each node heartbeat
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified whenever a job leaves ``_running``
        # Held while one message goes from "may I start it?" to "registered as running", so an
        # evacuation never misses a job that was being started.
        self._dispatch_lock = threading.Lock()

        self._stopping = threading.Event()  # take no new jobs; set by stop() and by an evacuation
        self._evacuated = threading.Event()
        self._evacuation = threading.Lock()  # taken once, by whichever thread evacuates, never released
        self._interrupt_reason: str | None = None  # set from a signal handler: no locks on that path
        self._draining = False
        self._wake = threading.Event()  # only the keeper thread waits on it
        self._keeper: threading.Thread | None = None
        self._next_visibility = 0.0
        self._next_heartbeat = 0.0
        self._next_cancel_check = 0.0
        self._next_interruption_check = 0.0
        self._warned_no_node_record = False
        self._abandoned = False

    # ── what callers see ────────────────────────────────────────────────────────────────────────

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def evacuated(self) -> bool:
        return self._evacuated.is_set()

    def running_job_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def free(self) -> Resources:
        with self._lock:
            return self._ledger.free()

    def run(self) -> None:
        """Take and run jobs until ``stop()`` (running jobs finish first) or an interruption (they go back).

        First ``recover()``: nothing an earlier agent of this node left behind may run beside our jobs.
        """
        self.recover()
        self.tick()
        self._keeper = threading.Thread(target=self._keep, name="shoal-keeper", daemon=True)
        self._keeper.start()
        try:
            while not self._stopping.is_set():
                if self._draining or self._interrupt_reason is not None:
                    self._stopping.wait(timeout=min(1.0, self.settings.heartbeat_interval))
                    continue
                try:
                    self.step()
                except Exception:
                    log.exception("receiving jobs failed; trying again shortly")
                    self._stopping.wait(timeout=1.0)
        finally:
            if self._abandoned:
                self._stop_keeper()
                return  # noqa: B012 (a crash: nothing more is done, whatever was raised)
            reason = self._interrupt_reason
            if reason is not None:
                self._wake.set()
                if not self._evacuated.wait(timeout=self.settings.kill_grace + SETTLE_SECONDS + 10):
                    self.evacuate(reason)  # the keeper is stuck (a hung call): do it from here
            self.wait_idle()
            self._flush_deletes()
            _guarded("recording runtimes", self._send_runtimes)
            self._report(self._clock())
            self._stop_keeper()

    def stop(self) -> None:
        """Take no new jobs; ``run()`` returns once the running ones are settled."""
        self._stopping.set()
        with self._settled:
            self._settled.notify_all()

    def abandon(self) -> None:
        """Stop dead, as the process would on ``kill -9``: no settling, no messages returned, no heartbeat, and
        the jobs' processes left running with their tickets. For chaos runs in the local cloud, whose agents are
        threads; the next agent of the node must then ``recover`` exactly as after a real crash."""
        self._abandoned = True
        self._stopping.set()
        with self._settled:
            for held in self._running.values():
                held.process.abandon()
            self._settled.notify_all()
        self._wake.set()

    def recover(self) -> None:
        """Before taking any job: end what an earlier agent of this node left running, and settle its jobs.

        Its processes (found by their token) and containers (by label) are ended first, so nothing of it runs
        on. Then each run it left a ticket for, if its record still says it runs here in that start: a run that
        finished by itself (its exit file) is settled with that status, one that did not is requeued (the
        start still counts in ``starts``); the messages the predecessor held are made visible again at once.
        Raises ``AgentRecoveryError`` if some process would not die.
        """
        left = process_tree.end_matching(
            process_tree.owned_by(self._owner), grace=self.settings.kill_grace, settle=SETTLE_SECONDS
        )
        if left:
            raise AgentRecoveryError(
                f"{left} process(es) left by an earlier agent of node {self.node_id} would not die; "
                "taking jobs now could run them twice"
            )
        if shutil.which(self._docker):
            removed = process_tree.remove_containers(self._owner, label=process_tree.OWNER_LABEL, docker=self._docker)
            if removed:
                log.warning("removed %d container(s) an earlier agent of node %s left running", removed, self.node_id)
        tickets = read_tickets(self.settings.work_root)
        intents = self._read_intents()
        if not tickets and not intents:
            return
        settled = [ticket.job_id for ticket in tickets if self._settle_predecessors(ticket)]
        now = self._clock()
        for job_id in intents:
            # Taken, but its process never started (no ticket): the record may still say it runs here.
            record = self._jobs.get_job(job_id)
            if record is not None and record.status is JobStatus.RUNNING and record.node == self.node_id:
                log.warning("job %s was being started when the agent stopped; requeueing it", job_id)
                if self._jobs.requeue_job(job_id, self.node_id, reason="the agent stopped as it started it", now=now):
                    settled.append(job_id)
            self._intent_path(job_id).unlink(missing_ok=True)
        node = _guarded("reading the node record", lambda: self._nodes.get_node(self.node_id))
        held = {} if node is None else dict(node.running_jobs)
        held.update(intents)
        receipts = sorted({held[job_id] for job_id in settled if job_id in held})
        if receipts:
            _guarded("returning messages", lambda: self._queue.change_visibility(receipts, 0))

    def _intent_path(self, job_id: str) -> Path:
        return self.settings.work_root / f"{INTENT_PREFIX}{hashlib.sha256(job_id.encode()).hexdigest()[:32]}"

    def _read_intents(self) -> dict[str, str]:
        """Job id → receipt handle, of every job an earlier agent was starting or running here."""
        intents: dict[str, str] = {}
        for path in self.settings.work_root.glob(f"{INTENT_PREFIX}*"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(path.read_text(encoding="utf-8"))
                intents[str(data["job_id"])] = str(data["receipt"])
        return intents

    def _settle_predecessors(self, ticket: Ticket) -> bool:
        """Settle one run an earlier agent left; True if its record changed."""
        work_root, now = self.settings.work_root, self._clock()
        try:
            record = self._jobs.get_job(ticket.job_id)
            if (
                record is None
                or record.status is not JobStatus.RUNNING
                or record.node != self.node_id
                or record.starts != ticket.attempt
            ):
                return False
            status = ticket.exit_status(work_root)
            job, tail = record.job, ticket.output_tail(work_root)
            if status == 0:
                log.warning("job %s finished (attempt %d) while no agent watched it; adopting its success",
                            job.id, ticket.attempt)  # fmt: skip
                return self._jobs.finish_job(
                    job, self.node_id, attempt=ticket.attempt, exit_code=0, output_tail=tail, now=now
                )
            if status is not None:
                reason = f"exit code {status} (it ended while no agent watched it)"
                log.warning("job %s failed (attempt %d) while no agent watched it: %s", job.id, ticket.attempt, reason)
                return self._jobs.fail_job(
                    job, self.node_id, attempt=ticket.attempt, reason=reason, exit_code=status, output_tail=tail,
                    now=now,
                ) is not None  # fmt: skip
            log.warning("job %s (attempt %d) was running when the agent stopped; its run was ended, requeueing it",
                        job.id, ticket.attempt)  # fmt: skip
            return self._jobs.requeue_job(
                job.id, self.node_id, reason="the agent restarted while it ran; that run was ended", now=now
            )
        finally:
            ticket.forget(work_root)

    def request_interrupt(self, reason: str) -> None:
        """Ask for an evacuation (SIGTERM, spot notice). Safe in a signal handler: it takes no lock."""
        self._interrupt_reason = reason
        self._wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs (each has been settled or evacuated). False on timeout."""
        with self._settled:
            idle = self._settled.wait_for(lambda: not self._running, timeout=timeout)
        for thread in list(self._threads):
            thread.join(timeout=timeout)
        return idle

    # ── one pass of the receive loop ────────────────────────────────────────────────────────────

    def step(self, wait_seconds: int | None = None) -> list[Outcome | None]:
        """Receive one batch and decide each message; returns what became of each."""
        self._flush_deletes()
        wait = self.settings.poll_wait if wait_seconds is None else wait_seconds
        if self._stopping.is_set() or self._draining:
            return []
        with self._settled:
            if self._ledger.is_full():
                # Nothing can start until a job ends; wait for that instead of receiving to give back.
                self._settled.wait(timeout=max(wait, 0.05))
                return []
        messages = self._queue.receive(
            max_messages=self.settings.receive_batch,
            wait_seconds=wait,
            visibility_timeout=self.settings.visibility_timeout,
        )
        if not messages and wait == 0:
            self._stopping.wait(timeout=self.settings.empty_poll_pause)
        outcomes = [self._take_guarded(message) for message in messages]
        if outcomes and Outcome.STARTED not in outcomes and Outcome.DECLINED in outcomes:
            # Everything here waits for room: give running jobs a moment instead of spinning on the queue.
            with self._settled:
                self._settled.wait(timeout=self.settings.declined_backoff)
        return outcomes

    def _take_guarded(self, message: ReceivedMessage) -> Outcome | None:
        try:
            return self._take(message)
        except Exception:
            # The record may or may not say RUNNING here; either way the message's return settles it.
            log.exception("taking message %s failed; returning it to the queue", message.message_id)
            _guarded("returning a message", lambda: self._queue.change_visibility([message.receipt_handle], 0))
            return None

    def _take(self, message: ReceivedMessage) -> Outcome:
        try:
            job = self._decode(message.body)
        except ValueError as error:
            log.warning("message %s is not a valid job, dead-lettering it: %s", message.message_id, error)
            self._queue.dead_letter(message.body, reason=f"not a valid job message: {error}", job_id=None)
            self._delete_now(message.receipt_handle)
            return Outcome.INVALID
        need = job.shape.resources
        with self._dispatch_lock:
            if self._stopping.is_set() or self._draining or self._interrupt_reason is not None:
                self._queue.change_visibility([message.receipt_handle], 0)
                return Outcome.RETURNED
            with self._lock:
                already_here = job.id in self._running
                fit = Fit.LATER if already_here else self._ledger.fit(need)
                if fit is Fit.NOW:
                    self._ledger.reserve(job.id, need)
                free = self._ledger.free()
            if already_here:
                # A second copy of a message whose job runs here now: look again once this run is settled.
                self._queue.change_visibility([message.receipt_handle], self.settings.busy_delay)
                return Outcome.DUPLICATE
            if fit is not Fit.NOW:
                log.info("job %s does not fit %s (%s), returning it", job.id, fit.value, shortfall(need, free))
                if message.receive_count >= RECYCLE_AFTER_RECEIVES:
                    # Every look by a node too small counts a receive; long before the queue's redrive
                    # limit would dead-letter a job that only waits for a big node, swap in a fresh copy.
                    self._queue.send_jobs([job])
                    self._delete_now(message.receipt_handle)
                else:
                    self._queue.change_visibility([message.receipt_handle], 0)
                return Outcome.DECLINED
            # Written before the record says RUNNING here: a crash from now on leaves a trace for ``recover``.
            intent = self._intent_path(job.id)
            intent.parent.mkdir(parents=True, exist_ok=True)
            intent.write_text(json.dumps({"job_id": job.id, "receipt": message.receipt_handle}), encoding="utf-8")
            try:
                attempt = self._start(job, message)
            except Exception:
                with self._lock:
                    self._ledger.release(job.id)
                intent.unlink(missing_ok=True)
                raise
            if attempt is None:
                with self._lock:
                    self._ledger.release(job.id)
                intent.unlink(missing_ok=True)
                return Outcome.DUPLICATE
            process = JobProcess(
                job if self._run_as is None else self._run_as(job),
                attempt=attempt,
                work_root=self.settings.work_root,
                base_env=self._base_env,
                enforce_memory=self.settings.enforce_memory,
                kill_grace=self.settings.kill_grace,
                keep_work_dir=self.settings.keep_work_dirs,
                docker=self._docker,
                owner=self._owner,
            )
            held = _Held(job=job, message=message, attempt=attempt, process=process)
            thread = threading.Thread(target=self._run_job, args=(held,), name=f"job-{job.id}", daemon=True)
            with self._lock:
                self._running[job.id] = held
                self._threads.add(thread)
            thread.start()
        # The demo's witness of how often a job really started reads this line (shared/local/report.py).
        log.info("job %s started (attempt %d)", job.id, attempt)
        return Outcome.STARTED

    def _start(self, job: Job, message: ReceivedMessage) -> int | None:
        """Mark the job RUNNING here (the attempt number), or settle the message when the job record says it
        is not ours to run (None)."""
        now = self._clock()
        attempt = self._jobs.start_job(job, self.node_id, now)
        if attempt is not None:
            return attempt
        existing = self._jobs.get_job(job.id)
        if existing is None:
            # A message without a record (written straight to the queue): record it so the scaler counts it.
            self._jobs.put_jobs([job], now)
            attempt = self._jobs.start_job(job, self.node_id, now)
        elif (
            existing.status is JobStatus.RUNNING
            and existing.node == self.node_id
            # An earlier agent on this node (crashed, restarted) left it RUNNING; nobody runs it now.
            and self._jobs.requeue_job(job.id, self.node_id, reason="the agent restarted while it ran", now=now)
        ):
            attempt = self._jobs.start_job(job, self.node_id, now)
        if attempt is not None:
            return attempt
        existing = self._jobs.get_job(job.id)
        if existing is not None and existing.job != job:
            # Not the job its id was recorded with (hand-written, or an older resubmission): running it would
            # run something nobody counted. The record's own message, if any, is unaffected.
            why = f"message for job {job.id} does not match the job recorded under that id; resubmit it with a new id"
            log.warning("%s; dead-lettering it", why)
            self._queue.dead_letter(message.body, reason=why, job_id=job.id)
            self._delete_now(message.receipt_handle)
        elif existing is not None and existing.status is JobStatus.CANCELLED:
            log.info("job %s was cancelled; deleting its message", job.id)
            self._delete_now(message.receipt_handle)
        elif existing is not None and existing.status is JobStatus.SUCCEEDED:
            log.info("job %s has already succeeded; deleting a duplicate message", job.id)
            self._delete_now(message.receipt_handle)
        elif existing is not None and existing.status is JobStatus.FAILED:
            # Its dead-lettering may be what failed last time: rather two copies in the DLQ than none.
            log.info("job %s has already failed; dead-lettering a duplicate message", job.id)
            why = f"job {job.id} had already failed {existing.attempts} time(s); last: {existing.reason}"
            self._queue.dead_letter(message.body, reason=why, job_id=job.id)
            self._delete_now(message.receipt_handle)
        elif existing is not None and existing.status is JobStatus.QUEUED and existing.on_demand_only:
            log.info("job %s is past its preemption budget: it starts only on on-demand nodes; returning it", job.id)
            self._queue.change_visibility([message.receipt_handle], 0)
        elif existing is not None and existing.status is JobStatus.QUEUED:
            # Nobody runs it: the store refused because this node is draining (or not ready). Take no more
            # work until a heartbeat says otherwise, and let another node have this job now.
            log.info("job %s refused here: node %s is draining; returning it", job.id, self.node_id)
            self._draining = True
            self._queue.change_visibility([message.receipt_handle], 0)
        else:
            where = existing.node if existing is not None else None
            log.info("job %s is taken (running on %s); looking again in %ds", job.id, where, self.settings.busy_delay)
            self._queue.change_visibility([message.receipt_handle], self.settings.busy_delay)
        return None

    # ── a job's own thread ──────────────────────────────────────────────────────────────────────

    def _run_job(self, held: _Held) -> None:
        try:
            result = held.process.run()
            with self._lock:
                if self._abandoned:
                    return  # a simulated crash: nobody settles anything
                claim = held.claim
                if claim is None:
                    held.claim = "agent"
            if claim == "cancel":
                self._settle_cancelled(held)
                return
            if claim is not None:
                return  # evacuated: the job went back to the queue; its end here means nothing
            self._settle(held, result)
        except Exception:
            # Leave the message alone: it reappears after its visibility timeout and the record decides.
            log.exception("settling job %s failed; its message will come back", held.job.id)
        finally:
            if not self._abandoned:
                self._intent_path(held.job.id).unlink(missing_ok=True)
            with self._settled:
                self._running.pop(held.job.id, None)
                self._ledger.release(held.job.id)
                self._threads.discard(threading.current_thread())
                self._settled.notify_all()

    def _settle(self, held: _Held, result: RunResult) -> None:
        job, receipt, now = held.job, held.message.receipt_handle, self._clock()
        if result.succeeded:
            finished = self._jobs.finish_job(
                job, self.node_id, attempt=held.attempt, exit_code=0, output_tail=result.output_tail, now=now
            )
            if finished:
                self._queue_delete(receipt)
                if job.name:
                    self._learned.add(job.name, result.duration)
                log.info("job %s succeeded in %.2fs", job.id, result.duration)
            else:
                log.warning("job %s succeeded, but its record is no longer ours; leaving its message", job.id)
            return
        reason = result.reason()
        status = self._jobs.fail_job(
            job,
            self.node_id,
            attempt=held.attempt,
            reason=reason,
            exit_code=result.exit_code,
            output_tail=result.output_tail,
            now=now,
        )
        if status is JobStatus.QUEUED:
            delay = self.settings.retry_visibility(held.attempt)
            log.info(
                "job %s failed (%s), attempt %d of %d; retry in %ds",
                job.id,
                reason,
                held.attempt,
                job.max_attempts,
                delay,
            )
            self._queue.change_visibility([receipt], delay)
        elif status is JobStatus.FAILED:
            why = f"job {job.id} failed {held.attempt} time(s), the limit; last: {reason}"
            log.warning("%s; dead-lettering it", why)
            self._queue.dead_letter(held.message.body, reason=why, job_id=job.id)
            self._delete_now(receipt)
        else:
            log.warning("job %s failed (%s), but its record is no longer ours; leaving its message", job.id, reason)

    # ── timed work: the keeper ──────────────────────────────────────────────────────────────────

    def tick(self, now: float | None = None) -> None:
        """Do whatever timed work is due at ``now``: evacuate, watch for interruption, heartbeats, deletes."""
        now = self._clock() if now is None else now
        if self._evacuated.is_set() or self._abandoned:
            return
        if self._interrupt_reason is not None:
            self.evacuate(self._interrupt_reason)
            return
        if self._interruption_check is not None and now >= self._next_interruption_check:
            self._next_interruption_check = now + self.settings.interruption_poll_interval
            reason = _guarded("checking for interruption", self._interruption_check)
            if reason:
                self.evacuate(reason)
                return
        if now >= self._next_visibility:
            self._next_visibility = now + self.settings.visibility_timeout / 3
            _guarded("extending visibility", self._extend_visibility)
        if now >= self._next_cancel_check:
            self._next_cancel_check = now + (self.settings.cancel_check_interval or self.settings.heartbeat_interval)
            _guarded("checking for cancelled jobs", self._end_cancelled)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.settings.heartbeat_interval
            _guarded("heartbeating the node", lambda: self._report(now))
            _guarded("recording runtimes", self._send_runtimes)
        _guarded("deleting messages", self._flush_deletes)

    def evacuate(self, reason: str) -> None:
        """Stop taking jobs and give every running and held job back to the queue at once."""
        if not self._evacuation.acquire(blocking=False):
            return  # another thread evacuates (or has)
        self._interrupt_reason = reason
        with self._dispatch_lock:
            self._stopping.set()
        with self._lock:
            victims = [held for held in self._running.values() if held.claim is None]
            for held in victims:
                held.claim = "evacuation"
        log.warning("evacuating %d job(s): %s", len(victims), reason)
        for held in victims:
            held.process.cancel()
        # A job goes back only once its whole tree is gone: a copy started elsewhere must never overlap it.
        deadline = time.monotonic() + self.settings.kill_grace + SETTLE_SECONDS + 1
        gone = []
        for held in victims:
            if held.process.wait_ended(timeout=max(0.0, deadline - time.monotonic())):
                gone.append(held)
            else:
                log.error("job %s: its processes would not die; leaving it RUNNING here (the scaler requeues the "
                          "jobs of a lost node)", held.job.id)  # fmt: skip
        now = self._clock()
        requeued = []
        for held in gone:
            result = held.process.result
            if result is not None and result.exit_code == 0 and not result.timed_out:
                # It ended by itself, successfully, just as the evacuation began: settle it, never run it again.
                try:
                    self._settle(held, dataclasses.replace(result, cancelled=False))
                except Exception:
                    log.exception("settling job %s failed; its message will come back", held.job.id)
                continue
            requeued.append(held)
            try:
                self._jobs.requeue_job(
                    held.job.id,
                    self.node_id,
                    reason=reason,
                    now=now,
                    preempted=is_reclaim(reason),
                    max_preemptions=self.settings.max_preemptions,
                )
            except Exception:
                log.exception("requeueing job %s failed; the scaler requeues the jobs of a lost node", held.job.id)
        receipts = [held.message.receipt_handle for held in requeued]
        if receipts:
            failed = _guarded("returning messages", lambda: self._queue.change_visibility(receipts, 0))
            if failed:
                log.warning("%d message(s) could not be returned; they reappear after their timeout", len(failed))
        _guarded("deleting messages", self._flush_deletes)
        _guarded("marking the node", lambda: self._nodes.mark_state(self.node_id, NodeState.INTERRUPTED, now))
        self._evacuated.set()
        with self._settled:
            self._settled.notify_all()

    def _keep(self) -> None:
        while not self._evacuated.is_set() and self._keeper is not None and not self._abandoned:
            self._wake.clear()
            self.tick()
            self._wake.wait(timeout=self._seconds_to_next_due())

    def _stop_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            self._wake.set()
            keeper.join(timeout=5)

    def _seconds_to_next_due(self) -> float:
        due = [self._next_visibility, self._next_heartbeat, self._next_cancel_check]
        if self._interruption_check is not None:
            due.append(self._next_interruption_check)
        # Deletes that the receive loop has not flushed (it may sit in a long poll) go within a second.
        return max(0.01, min(min(due) - self._clock(), 1.0))

    def _extend_visibility(self) -> None:
        with self._lock:
            receipts = [held.message.receipt_handle for held in self._running.values() if held.claim is None]
        if receipts:
            failed = self._queue.change_visibility(receipts, self.settings.visibility_timeout)
            if failed:
                log.warning("could not extend %d message(s); another worker may receive them", len(failed))

    def _report(self, now: float) -> None:
        # All under the dispatch lock, so no start interleaves: a job whose start is committed is in the
        # report, and a report that acknowledges the drain is sent only once starting has stopped. Only
        # such a report with no jobs lets the scaler terminate the node.
        with self._dispatch_lock:
            for _ in range(2):  # on learning of a drain, acknowledge it at once rather than a heartbeat later
                with self._lock:
                    free = self._ledger.free()
                    running = {
                        job_id: held.message.receipt_handle
                        for job_id, held in self._running.items()
                        if held.claim is None
                    }
                acknowledged = self._draining
                record = self._nodes.heartbeat(
                    self.node_id, free=free, running_jobs=running, now=now, draining=acknowledged
                )
                if record is None:
                    if not self._warned_no_node_record:
                        log.warning("node %s has no record in the state table; taking jobs anyway", self.node_id)
                        self._warned_no_node_record = True
                    return
                draining = record.state == NodeState.DRAINING
                if draining != self._draining:
                    log.info("node %s %s", self.node_id, "is draining: no new jobs" if draining else "takes jobs again")
                    self._draining = draining
                if draining == acknowledged:
                    return

    # ── cancelled jobs ──────────────────────────────────────────────────────────────────────────

    def _end_cancelled(self) -> None:
        """End the running jobs whose records say CANCELLED: one batched read for all of them."""
        with self._lock:
            ids = [job_id for job_id, held in self._running.items() if held.claim is None]
        if not ids:
            return
        cancelled = [i for i, (status, _) in self._jobs.statuses(ids).items() if status is JobStatus.CANCELLED]
        with self._lock:
            victims = [held for i in cancelled if (held := self._running.get(i)) is not None and held.claim is None]
            for held in victims:
                held.claim = "cancel"
        for held in victims:
            log.info("job %s was cancelled by its submitter; ending it", held.job.id)
            held.process.cancel()

    def _settle_cancelled(self, held: _Held) -> None:
        """Its process has ended: say so on the record (the submitter may wait for it), drop its message."""
        if not self._jobs.release_cancelled(held.job.id, self.node_id, now=self._clock()):
            log.warning("job %s was cancelled, but its record no longer names this node", held.job.id)
        self._queue_delete(held.message.receipt_handle)

    def _send_runtimes(self) -> None:
        if self._runtimes is not None:
            self._learned.send(self._runtimes)

    # ── message deletion ────────────────────────────────────────────────────────────────────────

    def _queue_delete(self, receipt: str) -> None:
        with self._lock:
            self._pending_deletes.append(receipt)
            flush_now = len(self._pending_deletes) >= MAX_RECEIVE_BATCH
        if flush_now:
            self._flush_deletes()

    def _flush_deletes(self) -> None:
        with self._lock:
            receipts, self._pending_deletes = self._pending_deletes, []
        if receipts:
            failed = self._queue.delete(receipts)
            if failed:
                log.warning(
                    "%d message(s) of settled jobs were not deleted; their duplicates are deleted on sight", len(failed)
                )

    def _delete_now(self, receipt: str) -> None:
        failed = self._queue.delete([receipt])
        if failed:
            log.warning("a settled message was not deleted; its duplicate is deleted on sight")


def _guarded(what: str, action: Callable[[], T]) -> T | None:
    """Run one piece of timed work; a failure is logged and retried next time, never fatal to the agent."""
    try:
        return action()
    except Exception:
        log.exception("%s failed", what)
        return None
