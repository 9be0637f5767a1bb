"""The receiver: takes messages from the queue and starts the jobs the admission rule admits.

Whether a job starts is decided in one place, ``shared.domain.admission``: the node's own checks
(``admit_here``: stopping or draining, already running here, room) before its resources are reserved, and
the job record's (``admit_record``) only when the job store's start transaction refused the job. This
module carries out each verdict: start, give back, hide a while, delete, or dead-letter.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping

from shared.domain.admission import Admission, Verdict, admit_here, admit_record
from shared.domain.jobs import Job
from shared.domain.resources import Resources
from shared.services.worker_ports import ReceivedMessage
from shared.worker.agent_state import AgentState, Held, guarded
from shared.worker.capacity import shortfall
from shared.worker.runner import JobProcess

log = logging.getLogger(__name__)

# Well under the queue's maxReceiveCount (cdk/constants.py), which is only the backstop for poison messages.
RECYCLE_AFTER_RECEIVES = 100


class Outcome(enum.Enum):
    STARTED = "started"
    DECLINED = "declined"  # does not fit now (or ever, on this node): visible again at once
    RETURNED = "returned"  # the agent is stopping or draining: visible again at once
    DUPLICATE = "duplicate"  # the job is settled (message deleted) or runs elsewhere (message hidden a while)
    INVALID = "invalid"  # not a job: dead-lettered with the error


class Receiver:
    def __init__(
        self,
        state: AgentState,
        *,
        decode: Callable[[str], Job],
        run_job: Callable[[Held], None],
        base_env: Mapping[str, str] | None = None,
        run_as: Callable[[Job], Job] | None = None,
    ) -> None:
        """``run_job`` runs a started job's process to its end and settles it (the settler), in its own thread."""
        self._state = state
        self._decode = decode
        self._run_job = run_job
        self._base_env = base_env
        self._run_as = run_as

    def step(self, wait_seconds: int | None = None) -> list[Outcome | None]:
        """Receive one batch and decide each message; returns what became of each."""
        state = self._state
        state.flush_deletes()
        wait = state.settings.poll_wait if wait_seconds is None else wait_seconds
        if state.stopping.is_set() or state.draining:
            return []
        with state.settled:
            if state.ledger.is_full():
                # Nothing can start until a job ends; wait for that instead of receiving to give back.
                state.settled.wait(timeout=max(wait, 0.05))
                return []
        messages = state.queue.receive(
            max_messages=state.settings.receive_batch,
            wait_seconds=wait,
            visibility_timeout=state.settings.visibility_timeout,
        )
        if not messages and wait == 0:
            state.stopping.wait(timeout=state.settings.empty_poll_pause)
        outcomes = [self._take_guarded(message) for message in messages]
        if outcomes and Outcome.STARTED not in outcomes and Outcome.DECLINED in outcomes:
            # Everything here waits for room: give running jobs a moment instead of spinning on the queue.
            with state.settled:
                state.settled.wait(timeout=state.settings.declined_backoff)
        return outcomes

    def _take_guarded(self, message: ReceivedMessage) -> Outcome | None:
        try:
            return self._take(message)
        except Exception:
            # The record may or may not say RUNNING here; either way the message's return settles it.
            log.exception("taking message %s failed; returning it to the queue", message.message_id)
            guarded("returning a message", lambda: self._state.queue.change_visibility([message.receipt_handle], 0))
            return None

    def _take(self, message: ReceivedMessage) -> Outcome:
        state = self._state
        try:
            job = self._decode(message.body)
        except ValueError as error:
            log.warning("message %s is not a valid job, dead-lettering it: %s", message.message_id, error)
            state.queue.dead_letter(message.body, reason=f"not a valid job message: {error}", job_id=None)
            state.delete_now(message.receipt_handle)
            return Outcome.INVALID
        with state.dispatch_lock:
            with state.lock:
                free = state.ledger.free()
                here = admit_here(
                    job,
                    free=free,
                    capacity=state.ledger.total,
                    draining=state.takes_no_work(),
                    node_id=state.node_id,
                    running_here=job.id in state.running,
                    leave=self._leave(job, message),
                )
                if here is None:
                    state.ledger.reserve(job.id, job.shape.resources)
            if here is not None:
                return self._give_back(job, message, here, free)
            attempt = self._start_reserved(job, message)
        if attempt is None:
            return Outcome.DUPLICATE
        # The demo's witness of how often a job really started reads this line (shared/local/report.py).
        log.info("job %s started (attempt %d)", job.id, attempt)
        return Outcome.STARTED

    def _leave(self, job: Job, message: ReceivedMessage) -> str | None:
        """Why a cheaper node type should take this job (``shared.domain.cheaper_first``), or None."""
        cost = self._state.settings.cheaper_first
        if cost is None or message.sent_at is None:
            return None
        waited = self._state.clock() - message.sent_at
        return cost.leave(job.shape.resources, job.shape.preemptible, waited=waited)

    def _give_back(self, job: Job, message: ReceivedMessage, admission: Admission, free: Resources) -> Outcome:
        """Carry out the node's own verdict on a job it does not start (nothing reserved, no record read)."""
        queue, receipt = self._state.queue, message.receipt_handle
        if admission.verdict is Verdict.RETURN:
            queue.change_visibility([receipt], 0)
            return Outcome.RETURNED
        if admission.verdict is Verdict.LEAVE:
            log.info("%s", admission.reason)
            queue.change_visibility([receipt], 0)
            return Outcome.DECLINED  # a receive of nothing but these backs off, so a cheaper node can take them
        if admission.verdict is Verdict.RUNNING_HERE:
            # A second copy of a message whose job runs here now: look again once this run is settled.
            queue.change_visibility([receipt], self._state.settings.busy_delay)
            return Outcome.DUPLICATE
        need = job.shape.resources
        fit = "never" if admission.verdict is Verdict.DECLINE_NEVER else "later"
        log.info("job %s does not fit %s (%s), returning it", job.id, fit, shortfall(need, free))
        if message.receive_count >= RECYCLE_AFTER_RECEIVES:
            # Every look by a node too small counts a receive; long before the queue's redrive
            # limit would dead-letter a job that only waits for a big node, swap in a fresh copy.
            queue.send_jobs([job])
            self._state.delete_now(receipt)
        else:
            queue.change_visibility([receipt], 0)
        return Outcome.DECLINED

    def _start_reserved(self, job: Job, message: ReceivedMessage) -> int | None:
        """Start a job whose resources are reserved (under the dispatch lock); None: the record said no."""
        state = self._state
        # Written before the record says RUNNING here: a crash from now on leaves a trace for ``recover``.
        intent = state.write_intent(job.id, message.receipt_handle)
        try:
            attempt = self._claim(job, message)
        except Exception:
            with state.lock:
                state.ledger.release(job.id)
            intent.unlink(missing_ok=True)
            raise
        if attempt is None:
            with state.lock:
                state.ledger.release(job.id)
            intent.unlink(missing_ok=True)
            return None
        process = JobProcess(
            job if self._run_as is None else self._run_as(job),
            attempt=attempt,
            work_root=state.settings.work_root,
            base_env=self._base_env,
            enforce_memory=state.settings.enforce_memory,
            kill_grace=state.settings.kill_grace,
            keep_work_dir=state.settings.keep_work_dirs,
            docker=state.docker,
            owner=state.owner,
        )
        held = Held(job=job, message=message, attempt=attempt, process=process)
        thread = threading.Thread(target=self._run_job, args=(held,), name=f"job-{job.id}", daemon=True)
        with state.lock:
            state.running[job.id] = held
            state.threads.add(thread)
        thread.start()
        return attempt

    def _claim(self, job: Job, message: ReceivedMessage) -> int | None:
        """Mark the job RUNNING here (the attempt number), or, when the store refuses, carry out what its record
        says (``admit_record``): record it or requeue what an earlier agent left, and try once more; else None."""
        state = self._state
        now = state.clock()
        attempt = state.jobs.start_job(job, state.node_id, now)
        if attempt is not None:
            return attempt
        admission = self._admit_record(job, retried=False)
        if admission.verdict is Verdict.RECORD_AND_START:
            # A message without a record (written straight to the queue): record it so the scaler counts it.
            state.jobs.put_jobs([job], now)
            attempt = state.jobs.start_job(job, state.node_id, now)
        elif admission.verdict is Verdict.RESTART_HERE:
            # An earlier agent on this node (crashed, restarted) left it RUNNING; nobody runs it now.
            if state.jobs.requeue_job(job.id, state.node_id, reason="the agent restarted while it ran", now=now):
                attempt = state.jobs.start_job(job, state.node_id, now)
        else:
            self._settle_message(job, message, admission)
            return None
        if attempt is not None:
            return attempt
        self._settle_message(job, message, self._admit_record(job, retried=True))
        return None

    def _admit_record(self, job: Job, *, retried: bool) -> Admission:
        state = self._state
        record = state.jobs.get_job(job.id)
        return admit_record(
            job,
            record=record,
            node_id=state.node_id,
            max_preemptions=state.settings.max_preemptions,
            refused=True,
            retried=retried,
        )

    def _settle_message(self, job: Job, message: ReceivedMessage, admission: Admission) -> None:
        """Carry out a record's verdict on a job this node does not start."""
        state, receipt, verdict = self._state, message.receipt_handle, admission.verdict
        if verdict is Verdict.DEAD_LETTER:
            log.warning("%s; dead-lettering it", admission.reason)
            state.queue.dead_letter(message.body, reason=admission.reason, job_id=job.id)
            state.delete_now(receipt)
        elif verdict is Verdict.DELETE_DUPLICATE:
            log.info("%s; deleting its message", admission.reason)
            state.delete_now(receipt)
        elif verdict is Verdict.REFUSED:
            # Nobody runs it: the store refused because this node is draining (or not ready). Take no more
            # work until a heartbeat says otherwise, and let another node have this job now.
            log.info("%s", admission.reason)
            state.draining = True
            state.queue.change_visibility([receipt], 0)
        elif verdict is Verdict.DECLINE_NEVER:
            log.info("%s; returning it", admission.reason)
            state.queue.change_visibility([receipt], 0)
        else:
            log.info("%s; looking again in %ds", admission.reason, state.settings.busy_delay)
            state.queue.change_visibility([receipt], state.settings.busy_delay)
