"""The Shoal agent: takes the jobs that fit from the queue, runs them, and settles each one.

It is four parts around one shared state (``agent_state.py``): the receiver starts what the admission
rule (``shared.domain.admission``) admits, the settler records each job's end before its message is
deleted, the keeper does the timed work (heartbeats, cancellations, evacuation), and recovery first ends
and settles whatever an earlier agent of this node left, so nothing runs twice at once.

Threads: the caller's thread runs ``run()`` (receive → decide → start); each job runs in its own thread
that waits on its process and settles it; the keeper's thread does the timed work (``tick``). Tests
drive ``step`` and ``tick`` directly instead, with an injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from shared.domain.jobs import Job
from shared.domain.resources import Resources
from shared.services.ports import JobStore, NodeStore, Now
from shared.services.worker_ports import RuntimeRecorder, WorkerQueue
from shared.worker import recovery
from shared.worker.agent_state import (
    INTENT_PREFIX,
    MAX_RECEIVE_BATCH,
    MAX_VISIBILITY_TIMEOUT,
    AgentSettings,
    AgentSettingsError,
    AgentState,
    Ports,
    guarded,
)
from shared.worker.keeper import Keeper
from shared.worker.receiver import RECYCLE_AFTER_RECEIVES, Outcome, Receiver
from shared.worker.recovery import AgentRecoveryError
from shared.worker.runner import SETTLE_SECONDS
from shared.worker.settler import Settler

__all__ = [
    "INTENT_PREFIX",
    "MAX_RECEIVE_BATCH",
    "MAX_VISIBILITY_TIMEOUT",
    "RECYCLE_AFTER_RECEIVES",
    "Agent",
    "AgentRecoveryError",
    "AgentSettings",
    "AgentSettingsError",
    "Outcome",
]

log = logging.getLogger(__name__)


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
        clock: Now = time.time,
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
        ports = Ports(queue=queue, jobs=jobs, nodes=nodes, runtimes=runtimes)
        self.state = AgentState(settings, ports, clock=clock, docker=docker)
        self._settler = Settler(self.state)
        self._receiver = Receiver(
            self.state, decode=decode, run_job=self._settler.run_job, base_env=base_env, run_as=run_as
        )
        self._keeper = Keeper(self.state, self._settler, interruption_check=interruption_check)

    # ── what callers see ────────────────────────────────────────────────────────────────────────

    @property
    def draining(self) -> bool:
        return self.state.draining

    @property
    def stopping(self) -> bool:
        return self.state.stopping.is_set()

    @property
    def evacuated(self) -> bool:
        return self.state.evacuated.is_set()

    def running_job_ids(self) -> list[str]:
        with self.state.lock:
            return sorted(self.state.running)

    def free(self) -> Resources:
        with self.state.lock:
            return self.state.ledger.free()

    def run(self) -> None:
        """Take and run jobs until ``stop()`` (running jobs finish first) or an interruption (they go back).

        First ``recover()``: nothing an earlier agent of this node left behind may run beside our jobs.
        """
        state = self.state
        self.recover()
        self.tick()
        self._keeper.start()
        try:
            while not state.stopping.is_set():
                if state.draining or state.interrupt_reason is not None:
                    state.stopping.wait(timeout=min(1.0, self.settings.heartbeat_interval))
                    continue
                try:
                    self.step()
                except Exception:
                    log.exception("receiving jobs failed; trying again shortly")
                    state.stopping.wait(timeout=1.0)
        finally:
            if state.abandoned:
                self._keeper.stop()
                return  # noqa: B012 (a crash: nothing more is done, whatever was raised)
            reason = state.interrupt_reason
            if reason is not None:
                state.wake.set()
                if not state.evacuated.wait(timeout=self.settings.kill_grace + SETTLE_SECONDS + 10):
                    self.evacuate(reason)  # the keeper is stuck (a hung call): do it from here
            self.wait_idle()
            state.flush_deletes()
            guarded("recording runtimes", state.send_runtimes)
            self._keeper.report(state.clock())
            self._keeper.stop()

    def stop(self) -> None:
        """Take no new jobs; ``run()`` returns once the running ones are settled."""
        self.state.stopping.set()
        with self.state.settled:
            self.state.settled.notify_all()

    def abandon(self) -> None:
        """Stop dead, as the process would on ``kill -9``: no settling, no messages returned, no heartbeat, and
        the jobs' processes left running with their tickets. For chaos runs in the local cloud, whose agents are
        threads; the next agent of the node must then ``recover`` exactly as after a real crash."""
        state = self.state
        state.gone.set()
        state.stopping.set()
        with state.settled:
            for held in state.running.values():
                held.process.abandon()
            state.settled.notify_all()
        state.wake.set()

    def recover(self) -> None:
        """Before taking any job: end what an earlier agent of this node left running, and settle its jobs
        (``shared.worker.recovery``). Raises ``AgentRecoveryError`` if some process would not die."""
        recovery.recover(self.state)

    def request_interrupt(self, reason: str) -> None:
        """Ask for an evacuation (SIGTERM, spot notice). Safe in a signal handler: it takes no lock."""
        self.state.interrupt_reason = reason
        self.state.wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs (each has been settled or evacuated). False on timeout."""
        state = self.state
        with state.settled:
            idle = state.settled.wait_for(lambda: not state.running, timeout=timeout)
        for thread in list(state.threads):
            thread.join(timeout=timeout)
        return idle

    def step(self, wait_seconds: int | None = None) -> list[Outcome | None]:
        """Receive one batch and decide each message; returns what became of each."""
        return self._receiver.step(wait_seconds)

    def tick(self, now: float | None = None) -> None:
        """Do whatever timed work is due at ``now``: evacuate, watch for interruption, heartbeats, deletes."""
        self._keeper.tick(now)

    def evacuate(self, reason: str) -> None:
        """Stop taking jobs and give every running and held job back to the queue at once."""
        self._keeper.evacuate(reason)
