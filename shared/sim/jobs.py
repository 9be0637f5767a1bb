"""Jobs on the simulated fleet: the queue, the agents' admission (oldest job first), starts, ends, requeues."""

from __future__ import annotations

import heapq
from collections import deque

from shared.domain.admission import admit
from shared.domain.cheaper_first import HOLD_OFF
from shared.domain.cluster_state import JobRecord, JobStatus, Market, NodeState
from shared.domain.jobs import Shape
from shared.sim.model import END, WAKE, SimJob, SimNode
from shared.sim.state import SimState


class JobFlow(SimState):
    def _enqueue(self, index: int) -> None:
        job = self.jobs[index]
        job.queued_at = self.now
        job.node = None
        self.queues.setdefault(job.key, deque()).append(index)
        self.enqueued[job.key] = (self.enqueued.get(job.key, (0, 0.0))[0] + 1, self.now)  # as the state table does
        self.queued += 1
        self._counter(job)[0] += 1

    def _dispatch(self) -> None:
        """Each ready node takes the oldest queued jobs that the agent's rule lets it start."""
        if not self.queued:
            return  # most calls (a job ended, nothing waits): no node list to build
        accepting = sorted(
            (n for n in self.nodes.values() if n.state is NodeState.ACTIVE and n.free.cores > 1e-9),
            key=lambda n: n.priority,
        )
        if not accepting or not self.queued:
            return
        heads = [(q[0], key) for key, q in self.queues.items() if q]
        heapq.heapify(heads)
        stuck: set[Shape] = set()  # requested shapes that fit no accepting node (free room only shrinks here)
        while heads and accepting:
            _, key = heapq.heappop(heads)
            queue = self.queues[key]
            if key[0] in stuck:
                continue
            while queue:
                index = queue[0]
                job = self.jobs[index]
                node_id = self._place(job, accepting)
                if node_id is None:
                    stuck.add(key[0])
                    break  # nothing of this shape fits anywhere now
                queue.popleft()
                self._start(job, node_id)
                accepting = [n for n in accepting if n.free.cores > 1e-9]
                if queue and heads and queue[0] > heads[0][0]:
                    heapq.heappush(heads, (queue[0], key))
                    break

    def _place(self, job: SimJob, accepting: list[SimNode]) -> str | None:
        need = job.resources
        waited = self.now - job.queued_at
        left = False
        for node in accepting:
            if job.spot is False and node.market is Market.SPOT:
                continue
            if not need.fits_in(node.free):  # cheap pre-check; the agent's rule decides
                continue
            node_id = node.id
            leave = None
            if waited < HOLD_OFF and self.options.cheaper_first:
                leave = self.cheaper.leave(need, job.spot, waited=waited, price=node.price, usable=node.capacity)
            record = JobRecord(job=job.trace.job, status=JobStatus.QUEUED, preemptions=job.preemptions)
            verdict = admit(
                job.trace.job, free=node.free, capacity=node.capacity, record=record, draining=False, node_id=node_id,
                spot_node=node.market is Market.SPOT, max_preemptions=self.settings.max_preemptions, leave=leave,
            )  # fmt: skip
            if verdict.starts:
                return node_id
            left = left or leave is not None
        wake = job.queued_at + HOLD_OFF
        if left and wake not in self.wakes:  # no cheaper node took it: once its hold-off is over, any node may
            self.wakes.add(wake)
            self._push(wake, WAKE)
        return None

    def _start(self, job: SimJob, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.idle_since is not None:
            self.idle_seconds += self.now - max(node.idle_since, node.charged_from)
            node.idle_since = None
        job.attempt += 1
        job.starts += 1
        job.wait += self.now - job.queued_at
        job.node = node_id
        node.free = node.free - job.resources
        end = self.now + job.wall
        node.running[job.index] = end
        node.empties = None
        node.record = None
        self.queued -= 1
        self.running += 1
        counter = self._counter(job)
        counter[0] -= 1
        counter[1] += 1
        started = self.started.setdefault(job.name, [0, 0.0])
        started[0] += 1
        started[1] += self.now
        job.started_at = self.now
        self._push(end, END, (job.index, job.attempt, node_id))

    def _job_ended(self, index: int, attempt: int, node_id: str) -> None:
        job = self.jobs[index]
        if job.attempt != attempt or job.node != node_id:
            return  # this run was cut short (interruption, scale-in) and the job went back to the queue
        node = self.nodes[node_id]
        del node.running[index]
        node.empties = None
        node.free = node.free + job.resources
        node.record = None
        if not node.running:
            node.idle_since = self.now
        job.node = None
        job.done += 1
        if job.done > 1:
            self.run_twice += 1
        self.running -= 1
        self.completed += 1
        self._counter(job)[1] -= 1
        self._stopped_running(job)
        self.job_finished(job.name, job.wall)
        self.last_end = self.now
        self._dispatch()

    def _stopped_running(self, job: SimJob) -> None:
        started = self.started[job.name]
        started[0] -= 1
        started[1] -= job.started_at

    def _requeue_jobs(self, node: SimNode) -> int:
        count = 0
        for index in list(node.running):
            job = self.jobs[index]
            node.free = node.free + job.resources
            job.node = None
            self.running -= 1
            self._counter(job)[1] -= 1
            self._stopped_running(job)
            self._enqueue(index)
            count += 1
        node.running.clear()
        node.empties = None
        node.record = None
        if node.idle_since is None:
            node.idle_since = self.now
        return count

    def job_finished(self, name: str | None, seconds: float) -> None:
        """A job ran to its end: what the agents record (per job name) for the scaler."""
        self.runtimes = self.runtimes.add(name, seconds)
