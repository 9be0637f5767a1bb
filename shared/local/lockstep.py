"""The demo's lockstep: simulated time moves on only once the control plane has done what was due.

On an accelerated wall clock, a busy machine lets simulated minutes pass while a scaling round or an
agent's poll is still running, so the same demo reported waits twice as long when the machine was loaded.
Here the demo's driver moves a ``LockstepClock`` one step at a time, and within a step:

1. the jobs whose simulated end has come end (``JobTimer``): each job's process waits on a FIFO of its own
   instead of sleeping, and the driver writes to it at the job's simulated end; the step waits until the
   job's agent has settled it;
2. every agent whose keeper runs, draining ones too, does its timed work due now (heartbeats, drain
   acknowledgements, cancellation checks: ``StepGate.timed_work``), so the rounds of this step read the same
   node records on any machine (a draining node's heartbeat racing the round decided when it was terminated);
3. the router fires what is due (scaling rounds run in the driver's thread, so they run to their end);
4. every agent that takes work receives, one after another (``StepGate.run_step``, ``SteppedAgent``): it
   receives again while it started something, so a node with room fills up within the step, as a real
   agent's receive loop would within seconds.

Only then does time move on. A step that waits longer than ``BARRIER_SECONDS`` real seconds for an agent
moves on anyway and is counted (``StepGate.overruns``): the report says so rather than hanging.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.domain.jobs import Job
from shared.local.clock import LockstepClock
from shared.services.worker_ports import RuntimeRecorder
from shared.worker.agent import Agent, Outcome

log = logging.getLogger(__name__)

BARRIER_SECONDS = 20.0  # real seconds a step waits for the agents before it moves on (counted as an overrun)
SETTLE_WAIT_SECONDS = 10.0  # real seconds a step waits for the agents to settle the jobs it ended
OPEN_RETRY_SECONDS = 2.0  # real seconds to wait for a just-started job's process to open its FIFO
MAX_PASSES = 20  # receives per agent per step (it stops earlier once a receive starts nothing)
_POLL = 0.005  # real seconds between checks while waiting


class StepGate:
    """Lets the agents receive once per step, one after another in a fixed order (the same jobs land on the
    same nodes on any machine), after each has done its timed work due at the step."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.step = 0
        self.receiving = True  # False while the queue shows no message: the agents then only do timed work
        self._turn: int | None = None  # id() of the agent whose turn it is to receive
        self._done: dict[int, int] = {}  # id(agent) -> the last step it has received in
        self.overruns = 0

    def wait_turn(self, agent: SteppedAgent) -> int | None:
        """Block until it is this agent's turn in a step it has not done; the step, or None once it takes no work."""
        with self._cond:
            while True:
                if not agent.takes_work():
                    return None
                if self._turn == id(agent) and self._done.get(id(agent), -1) < self.step:
                    return self.step
                self._cond.wait(timeout=0.05)

    def finish(self, agent: SteppedAgent, step: int) -> None:
        with self._cond:
            self._done[id(agent)] = step
            self._cond.notify_all()

    def timed_work(self, agents: list[SteppedAgent], now: float) -> bool:
        """Wait until every agent whose keeper runs has done its timed work due at ``now``. False (an overrun)
        if one kept the step waiting over ``BARRIER_SECONDS``."""
        deadline = time.monotonic() + BARRIER_SECONDS
        with self._cond:
            ok = self._wait(functools.partial(self._behind, agents, now), deadline)
        if not ok:
            self.overruns += 1
            log.warning("step %d: agents' timed work kept it waiting over %gs; moving on", self.step, BARRIER_SECONDS)
        return ok

    def run_step(self, agents: list[SteppedAgent], now: float, *, receive: bool) -> bool:
        """One step: every agent does its timed work due at ``now`` (agents started since ``timed_work``), then
        each that takes work receives in its turn (if ``receive``). False (an overrun) if an agent kept the step
        waiting over ``BARRIER_SECONDS``."""
        deadline = time.monotonic() + BARRIER_SECONDS
        with self._cond:
            self.step += 1
            self.receiving = receive
            ok = self._wait(functools.partial(self._behind, agents, now), deadline)
            for agent in agents:
                self._turn = id(agent)
                self._cond.notify_all()
                ok = self._wait(functools.partial(self._owes_turn, agent), deadline) and ok
            self._turn = None
        if not ok:
            self.overruns += 1
            log.warning("step %d: agents kept it waiting over %gs; moving on", self.step, BARRIER_SECONDS)
        return ok

    @staticmethod
    def _behind(agents: list[SteppedAgent], now: float) -> list[SteppedAgent]:
        return [a for a in agents if a.keeps_time() and not a.timed_work_done(now)]

    def _owes_turn(self, agent: SteppedAgent) -> list[SteppedAgent]:
        return [agent] if agent.takes_work() and self._done.get(id(agent), -1) < self.step else []

    def _wait(self, behind: Callable[[], list[SteppedAgent]], deadline: float) -> bool:
        while True:
            late = behind()
            if not late:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for agent in late:
                agent.state.wake.set()  # its keeper: the clock has moved
            self._cond.wait(timeout=min(left, 0.02))


class SteppedAgent(Agent):
    """The real agent, receiving once per step of the lockstep clock (``StepGate``) instead of in a loop."""

    def __init__(self, *args: Any, gate: StepGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = gate

    def takes_work(self) -> bool:
        state = self.state
        return not (state.stopping.is_set() or state.draining or state.interrupt_reason is not None or state.abandoned)

    def keeps_time(self) -> bool:
        """Whether the agent's keeper still does timed work (a draining node's does: it heartbeats)."""
        return self._keeper.keeping() and not self.state.abandoned

    def timed_work_done(self, now: float) -> bool:
        """Whether the keeper has done what was due at ``now`` (it reads the same clock)."""
        return self._keeper.done_through(now)

    def step(self, wait_seconds: int | None = None) -> list[Outcome | None]:
        step = self._gate.wait_turn(self)
        if step is None:
            return []
        outcomes: list[Outcome | None] = []
        try:
            for _ in range(MAX_PASSES):
                with self.state.lock:
                    full = self.state.ledger.is_full()
                if full or not self.takes_work() or not self._gate.receiving:
                    break
                passed = super().step(wait_seconds)
                outcomes += passed
                if Outcome.STARTED not in passed:
                    break
        finally:
            self._gate.finish(self, step)
        return outcomes


@dataclass(slots=True)
class _Timed:
    job_id: str
    name: str
    node: str
    fifo: Path
    started: float  # simulated seconds
    ends: float
    status: int  # 0, or 124 when the job's timeout comes first


class JobTimer:
    """Ends each simulated job at its simulated end: its process waits on a FIFO that the driver writes to."""

    def __init__(self, clock: LockstepClock, root: Path) -> None:
        self._clock = clock
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._timed: list[_Timed] = []
        self._serial = itertools.count()
        self._durations: dict[str, tuple[int, float]] = {}  # job name -> (jobs ended, simulated seconds in all)

    def command(self, job: Job, node: str) -> str:
        """A shell command that ends when the job's simulated wall time (or timeout) has passed."""
        fifo = self._root / f"{next(self._serial)}.fifo"
        os.mkfifo(fifo)
        started = self._clock.elapsed()
        wall = job.shape.wall_time
        timed_out = job.timeout is not None and job.timeout < wall
        ends = started + (job.timeout if timed_out and job.timeout is not None else wall)
        with self._lock:
            self._timed.append(_Timed(job.id, job.name or "", node, fifo, started, ends, 124 if timed_out else 0))
        return f'read -r s < {shlex.quote(str(fifo))} && [ "$s" = 0 ] || exit "${{s:-1}}"'

    def end_due(self, running: Callable[[str], list[str]]) -> list[tuple[str, str]]:
        """End every job whose simulated end has come; (node, job id) of each one ended.

        ``running(node)``: the jobs running on that node's agent now. A job that no longer runs there (its
        process was ended: evacuation, cancellation, the node's end) is forgotten.
        """
        now = self._clock.elapsed()
        with self._lock:
            due = [t for t in self._timed if t.ends <= now]
        ended: list[tuple[str, str]] = []
        deadline = time.monotonic() + OPEN_RETRY_SECONDS
        while due:
            waiting = []
            for timed in due:
                outcome = self._write(timed)
                if outcome is True:
                    ended.append((timed.node, timed.job_id))
                    self._forget(timed, ended_at=now)
                elif outcome is False and timed.job_id in running(timed.node):
                    waiting.append(timed)  # started, but its process has not opened the FIFO yet
                elif outcome is False or outcome is None:
                    self._forget(timed, ended_at=None)
            if not waiting or time.monotonic() > deadline:
                break
            due = waiting
            time.sleep(_POLL)
        return ended

    def record_runtime(self, store: RuntimeRecorder, name: str, count: int) -> None:
        """What the agent learned of ``count`` jobs named ``name``, in simulated seconds (it measures real ones)."""
        with self._lock:
            ended, seconds = self._durations.get(name, (0, 0.0))
        if ended:
            store.record_runtime(name, seconds / ended * count, count)

    def _write(self, timed: _Timed) -> bool | None:
        """True once written; False while nothing reads the FIFO; None if the FIFO is gone."""
        try:
            fd = os.open(timed.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ENXIO:
                return False
            raise
        try:
            os.write(fd, f"{timed.status}\n".encode())
        finally:
            os.close(fd)
        return True

    def _forget(self, timed: _Timed, *, ended_at: float | None) -> None:
        with self._lock:
            if timed in self._timed:
                self._timed.remove(timed)
            if ended_at is not None and timed.status == 0:
                count, seconds = self._durations.get(timed.name, (0, 0.0))
                self._durations[timed.name] = (count + 1, seconds + ended_at - timed.started)
        timed.fifo.unlink(missing_ok=True)


def wait_settled(ended: list[tuple[str, str]], running: Callable[[str], list[str]]) -> bool:
    """Wait until every ended job has been settled by its agent (no longer running there); False on timeout."""
    deadline = time.monotonic() + SETTLE_WAIT_SECONDS
    left = list(ended)
    while left:
        left = [(node, job_id) for node, job_id in left if job_id in running(node)]
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True
