"""The keeper: the agent's timed work, in its own thread (tests call ``tick`` with an injected clock).

Each tick does what is due: watch for an interruption (and evacuate), extend the visibility of the
messages of running jobs, look for cancelled jobs, heartbeat the node (whose answer says "draining"),
send learned runtimes, delete the messages of settled jobs. An evacuation gives every running job back to
the queue, but only once its whole process tree is gone: a copy started elsewhere must never overlap it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from shared.domain.cluster_state import NodeState
from shared.domain.preemption import is_reclaim
from shared.worker.agent_state import AgentState, Claim, Held, guarded
from shared.worker.runner import SETTLE_SECONDS, RunResult
from shared.worker.settler import Settler

log = logging.getLogger(__name__)


class Keeper:
    def __init__(
        self, state: AgentState, settler: Settler, *, interruption_check: Callable[[], str | None] | None = None
    ) -> None:
        self._state = state
        self._settler = settler
        self._interruption_check = interruption_check
        self._thread: threading.Thread | None = None
        self._next_visibility = 0.0
        self._next_heartbeat = 0.0
        self._next_cancel_check = 0.0
        self._next_interruption_check = 0.0
        self._warned_no_node_record = False
        self._ticking = threading.Lock()  # held for a whole tick: the due times move before the work is done
        self._stopped = False  # stopped, or its thread has ended

    def tick(self, now: float | None = None) -> None:
        """Do whatever timed work is due at ``now``: evacuate, watch for interruption, heartbeats, deletes."""
        with self._ticking:
            self._tick(now)

    def done_through(self, now: float) -> bool:
        """Whether the timed work due at ``now`` is done: no tick is under way and nothing is due by then."""
        if not self._ticking.acquire(blocking=False):
            return False
        try:
            return min(self._next_heartbeat, self._next_visibility, self._next_cancel_check) > now
        finally:
            self._ticking.release()

    def keeping(self) -> bool:
        """Whether the keeper does timed work, or is about to: not stopped, the node not evacuated, and its thread,
        once started, alive (an agent started a moment ago may not have started its keeper yet)."""
        if self._stopped or self._state.evacuated.is_set():
            return False
        thread = self._thread
        return thread is None or thread.is_alive()

    def _tick(self, now: float | None) -> None:
        state = self._state
        now = state.clock() if now is None else now
        if state.evacuated.is_set() or state.abandoned:
            return
        if state.interrupt_reason is not None:
            self.evacuate(state.interrupt_reason)
            return
        if self._interruption_check is not None and now >= self._next_interruption_check:
            self._next_interruption_check = now + state.settings.interruption_poll_interval
            reason = guarded("checking for interruption", self._interruption_check)
            if reason:
                self.evacuate(reason)
                return
        if now >= self._next_visibility:
            self._next_visibility = now + state.settings.visibility_timeout / 3
            guarded("extending visibility", self._extend_visibility)
        if now >= self._next_cancel_check:
            self._next_cancel_check = now + (state.settings.cancel_check_interval or state.settings.heartbeat_interval)
            guarded("checking for cancelled jobs", self._settler.end_cancelled)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + state.settings.heartbeat_interval
            guarded("heartbeating the node", lambda: self.report(now))
            guarded("recording runtimes", state.send_runtimes)
        guarded("deleting messages", state.flush_deletes)

    # ── evacuation ──────────────────────────────────────────────────────────────────────────────

    def evacuate(self, reason: str) -> None:
        """Stop taking jobs and give every running and held job back to the queue at once."""
        state = self._state
        if not state.evacuation.acquire(blocking=False):
            return  # another thread evacuates (or has)
        state.interrupt_reason = reason
        with state.dispatch_lock:
            state.stopping.set()
        with state.lock:
            victims = [held for held in state.running.values() if held.claim is None]
            for held in victims:
                held.claim = Claim.EVACUATION
        log.warning("evacuating %d job(s): %s", len(victims), reason)
        for held in victims:
            held.process.cancel()
        now, requeued = state.clock(), []
        for held in self._wait_gone(victims):
            result = held.process.result
            if result is not None and result.exit_code == 0 and not result.timed_out:
                if self._settle_success(held, result):  # it ended by itself, successfully, as the evacuation began
                    state.tidy(held)
                continue
            requeued.append(held)
            try:
                state.jobs.requeue_job(
                    held.job.id,
                    state.node_id,
                    reason=reason,
                    now=now,
                    preempted=is_reclaim(reason),
                    max_preemptions=state.settings.max_preemptions,
                )
            except Exception:
                log.exception("requeueing job %s failed; the scaler requeues the jobs of a lost node", held.job.id)
            state.tidy(held)  # its run was ended: nothing of it is left to adopt
        receipts = [held.message.receipt_handle for held in requeued]
        if receipts:
            failed = guarded("returning messages", lambda: state.queue.change_visibility(receipts, 0))
            if failed:
                log.warning("%d message(s) could not be returned; they reappear after their timeout", len(failed))
        guarded("deleting messages", state.flush_deletes)
        guarded("marking the node", lambda: state.nodes.mark_state(state.node_id, NodeState.INTERRUPTED, now))
        state.evacuated.set()
        with state.settled:
            state.settled.notify_all()

    def _wait_gone(self, victims: list[Held]) -> list[Held]:
        """The victims whose whole process tree is gone; a job goes back to the queue only then."""
        deadline = time.monotonic() + self._state.settings.kill_grace + SETTLE_SECONDS + 1
        gone = []
        for held in victims:
            if held.process.wait_ended(timeout=max(0.0, deadline - time.monotonic())):
                gone.append(held)
            else:
                log.error("job %s: its processes would not die; leaving it RUNNING here (the scaler requeues the "
                          "jobs of a lost node)", held.job.id)  # fmt: skip
        return gone

    def _settle_success(self, held: Held, result: RunResult) -> bool:
        """Settle a job that ended by itself as the evacuation began: never run it again. False if the store
        failed: its ticket and exit file stay, for an agent restarted on this node to adopt."""
        try:
            self._settler.settle(held, dataclasses.replace(result, cancelled=False))
        except Exception:
            log.exception("settling job %s failed; its message will come back", held.job.id)
            return False
        return True

    # ── the keeper thread ───────────────────────────────────────────────────────────────────────

    def start(self) -> None:
        self._thread = threading.Thread(target=self._keep, name="shoal-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._state.wake.set()
            thread.join(timeout=5)

    def _keep(self) -> None:
        state = self._state
        try:
            while not state.evacuated.is_set() and self._thread is not None and not state.abandoned:
                state.wake.clear()
                self.tick()
                state.wake.wait(timeout=self._seconds_to_next_due())
        finally:
            self._stopped = True

    def _seconds_to_next_due(self) -> float:
        due = [self._next_visibility, self._next_heartbeat, self._next_cancel_check]
        if self._interruption_check is not None:
            due.append(self._next_interruption_check)
        # Deletes that the receive loop has not flushed (it may sit in a long poll) go within a second.
        return max(0.01, min(min(due) - self._state.clock(), 1.0))

    # ── heartbeats ──────────────────────────────────────────────────────────────────────────────

    def _extend_visibility(self) -> None:
        state = self._state
        with state.lock:
            receipts = [held.message.receipt_handle for held in state.running.values() if held.claim is None]
        if receipts:
            failed = state.queue.change_visibility(receipts, state.settings.visibility_timeout)
            if failed:
                log.warning("could not extend %d message(s); another worker may receive them", len(failed))

    def report(self, now: float) -> None:
        """Heartbeat the node record: what is free, which jobs run, whether a drain is acknowledged."""
        # All under the dispatch lock, so no start interleaves: a job whose start is committed is in the
        # report, and a report that acknowledges the drain is sent only once starting has stopped. Only
        # such a report with no jobs lets the scaler terminate the node.
        state = self._state
        with state.dispatch_lock:
            for _ in range(2):  # on learning of a drain, acknowledge it at once rather than a heartbeat later
                with state.lock:
                    free = state.ledger.free()
                    running = {
                        job_id: held.message.receipt_handle
                        for job_id, held in state.running.items()
                        if held.claim is None
                    }
                acknowledged = state.draining
                record = state.nodes.heartbeat(
                    state.node_id, free=free, running_jobs=running, now=now, draining=acknowledged
                )
                if record is None:
                    if not self._warned_no_node_record:
                        log.warning("node %s has no record in the state table; taking jobs anyway", state.node_id)
                        self._warned_no_node_record = True
                    return
                draining = record.state == NodeState.DRAINING
                if draining != state.draining:
                    log.info(
                        "node %s %s", state.node_id, "is draining: no new jobs" if draining else "takes jobs again"
                    )
                    state.draining = draining
                if draining == acknowledged:
                    return
