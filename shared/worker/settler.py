"""The settler: waits on each started job's process in the job's own thread and records how it ended.

"Never lose a job" rests on one order of operations: a message is deleted only after the job store has
recorded the job's end (success, or failure sent to the dead-letter queue). Whatever crashes in between,
the message comes back, and the job record decides. A job its submitter cancelled is ended here too.

"Never twice" rests on the outcome outliving a failed write: once a job's process has ended, recording that
end is retried (backing off) until the store takes it, the job staying in ``running`` meanwhile (a copy of
its message is hidden, not started), and the run's ticket and exit file are removed only after. An agent
that crashes in between leaves them for its successor to adopt (``recovery``) instead of a job to run again.
"""

from __future__ import annotations

import logging
import threading

from shared.domain.cluster_state import JobStatus
from shared.worker.agent_state import AgentState, Claim, Held
from shared.worker.runner import RunResult

log = logging.getLogger(__name__)

SETTLE_RETRY_FIRST = 1.0  # seconds before recording a job's end is tried again, doubling
SETTLE_RETRY_MAX = 60.0


class Settler:
    def __init__(self, state: AgentState) -> None:
        self._state = state

    def run_job(self, held: Held) -> None:
        """Run ``held``'s process to its end and settle it, unless an evacuation or a cancellation claimed it."""
        state = self._state
        try:
            result = held.process.run()
            with state.lock:
                if state.abandoned:
                    return  # a simulated crash: nobody settles anything
                claim = held.claim
                if claim is None:
                    held.claim = Claim.AGENT
            if claim is Claim.CANCEL:
                self._settle_cancelled(held)
                return
            if claim is not None:
                return  # evacuated: the job went back to the queue; its end here means nothing
            self._settle_until_recorded(held, result)
        except Exception:
            # Leave the message alone: it reappears after its visibility timeout and the record decides.
            log.exception("settling job %s failed; its message will come back", held.job.id)
        finally:
            if not state.abandoned and held.claim is not Claim.EVACUATION:  # an evacuation tidies its own
                state.tidy(held)
            with state.settled:
                state.running.pop(held.job.id, None)
                state.ledger.release(held.job.id)
                state.threads.discard(threading.current_thread())
                state.settled.notify_all()

    def _settle_until_recorded(self, held: Held, result: RunResult) -> None:
        """``settle``, again and again (backing off) until the store takes it or the agent is gone: the job's
        outcome is known, and dropping it would run the job again."""
        state, delay = self._state, SETTLE_RETRY_FIRST
        while True:
            try:
                self.settle(held, result)
                return
            except Exception:
                log.exception("recording the end of job %s failed; trying again in %.0fs", held.job.id, delay)
            if state.gone.wait(delay):
                return  # a simulated crash: the ticket and exit file stay for the next agent
            delay = min(delay * 2, SETTLE_RETRY_MAX)

    def settle(self, held: Held, result: RunResult) -> None:
        """Record how ``held`` ended, then delete its message, hide it for a retry, or dead-letter it."""
        state = self._state
        job, receipt, now = held.job, held.message.receipt_handle, state.clock()
        if result.succeeded:
            finished = state.jobs.finish_job(
                job, state.node_id, attempt=held.attempt, exit_code=0, output_tail=result.output_tail, now=now
            )
            if finished:
                state.queue_delete(receipt)
                if job.name:
                    state.learned.add(job.name, result.duration)
                log.info("job %s succeeded in %.2fs", job.id, result.duration)
            else:
                log.warning("job %s succeeded, but its record is no longer ours; leaving its message", job.id)
            return
        reason = result.reason()
        status = state.jobs.fail_job(
            job,
            state.node_id,
            attempt=held.attempt,
            reason=reason,
            exit_code=result.exit_code,
            output_tail=result.output_tail,
            now=now,
        )
        if status is JobStatus.QUEUED:
            delay = state.settings.retry_visibility(held.attempt)
            log.info(
                "job %s failed (%s), attempt %d of %d; retry in %ds",
                job.id,
                reason,
                held.attempt,
                job.max_attempts,
                delay,
            )
            state.queue.change_visibility([receipt], delay)
        elif status is JobStatus.FAILED:
            why = f"job {job.id} failed {held.attempt} time(s), the limit; last: {reason}"
            log.warning("%s; dead-lettering it", why)
            state.queue.dead_letter(held.message.body, reason=why, job_id=job.id)
            state.delete_now(receipt)
        else:
            log.warning("job %s failed (%s), but its record is no longer ours; leaving its message", job.id, reason)

    def end_cancelled(self) -> None:
        """End the running jobs whose records say CANCELLED: one batched read for all of them."""
        state = self._state
        with state.lock:
            ids = [job_id for job_id, held in state.running.items() if held.claim is None]
        if not ids:
            return
        cancelled = [i for i, (status, _) in state.jobs.statuses(ids).items() if status is JobStatus.CANCELLED]
        with state.lock:
            victims = [held for i in cancelled if (held := state.running.get(i)) is not None and held.claim is None]
            for held in victims:
                held.claim = Claim.CANCEL
        for held in victims:
            log.info("job %s was cancelled by its submitter; ending it", held.job.id)
            held.process.cancel()

    def _settle_cancelled(self, held: Held) -> None:
        """Its process has ended: say so on the record (the submitter may wait for it), drop its message."""
        state = self._state
        if not state.jobs.release_cancelled(held.job.id, state.node_id, now=state.clock()):
            log.warning("job %s was cancelled, but its record no longer names this node", held.job.id)
        state.queue_delete(held.message.receipt_handle)
